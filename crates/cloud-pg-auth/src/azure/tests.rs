use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;
use crate::token::UsernameSource;

fn env(pairs: &[(&str, &str)]) -> Env {
    Env::from_pairs(pairs.iter().copied())
}

fn jwt(claims: &str) -> String {
    format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    )
}

fn check_cloud(input: &str, expected: Option<AzureCloud>) {
    assert_eq!(input.parse::<AzureCloud>().ok(), expected, "{input}");
}

#[test]
fn clouds_parse() {
    check_cloud("public", Some(AzureCloud::Public));
    check_cloud("AzureCloud", Some(AzureCloud::Public));
    check_cloud("usgov", Some(AzureCloud::UsGov));
    check_cloud("AzureUSGovernment", Some(AzureCloud::UsGov));
    check_cloud("us-gov", Some(AzureCloud::UsGov));
    check_cloud("china", Some(AzureCloud::China));
    check_cloud("AzureChinaCloud", Some(AzureCloud::China));
    check_cloud("germany", None);
    check_cloud("", None);
}

#[test]
fn cloud_constants_agree() {
    for cloud in AzureCloud::ALL {
        assert_eq!(cloud.scope(), format!("{}/.default", cloud.audience()));
        assert_eq!(cloud.as_str().parse::<AzureCloud>().unwrap(), cloud);
        assert!(cloud.authority_host().starts_with("https://login."));
        assert_eq!(AzureCloud::for_scope(cloud.scope()), Some(cloud));
        assert_eq!(
            AzureCloud::for_authority(cloud.authority_host()),
            Some(cloud)
        );
        assert_eq!(
            cloud_for_host(&format!("srv{}", cloud.host_suffix())),
            Some(cloud)
        );
    }
    assert_eq!(
        AzureCloud::UsGov.scope(),
        "https://ossrdbms-aad.database.usgovcloudapi.net/.default"
    );
    assert_eq!(
        AzureCloud::China.authority_host(),
        "https://login.chinacloudapi.cn"
    );
}

fn check_host_cloud(host: &str, expected: Option<AzureCloud>) {
    assert_eq!(cloud_for_host(host), expected, "{host}");
}

#[test]
fn hosts_map_to_clouds() {
    check_host_cloud("mydb.postgres.database.azure.com", Some(AzureCloud::Public));
    check_host_cloud(
        "MyDB.Postgres.Database.Azure.Com.",
        Some(AzureCloud::Public),
    );
    check_host_cloud(
        "mydb.privatelink.postgres.database.azure.com",
        Some(AzureCloud::Public),
    );
    check_host_cloud(
        "gov.postgres.database.usgovcloudapi.net",
        Some(AzureCloud::UsGov),
    );
    check_host_cloud(
        "cn.postgres.database.chinacloudapi.cn",
        Some(AzureCloud::China),
    );
    check_host_cloud(".postgres.database.azure.com", None);
    check_host_cloud("postgres.database.azure.com", None);
    check_host_cloud("localhost", None);
    check_host_cloud("db.rds.amazonaws.com", None);
    check_host_cloud("127.0.0.1", None);
}

fn check_kind(input: &str, expected: Option<AzureCredentialKind>) {
    assert_eq!(
        input.parse::<AzureCredentialKind>().ok(),
        expected,
        "{input}"
    );
}

#[test]
fn credential_kinds_parse() {
    check_kind("auto", Some(AzureCredentialKind::Auto));
    check_kind(
        "managed-identity",
        Some(AzureCredentialKind::ManagedIdentity),
    );
    check_kind(
        "managed_identity",
        Some(AzureCredentialKind::ManagedIdentity),
    );
    check_kind(
        "workload-identity",
        Some(AzureCredentialKind::WorkloadIdentity),
    );
    check_kind("client-secret", Some(AzureCredentialKind::ClientSecret));
    check_kind("CLI", Some(AzureCredentialKind::Cli));
    check_kind("certificate", None);
    for kind in [
        AzureCredentialKind::Auto,
        AzureCredentialKind::ManagedIdentity,
        AzureCredentialKind::WorkloadIdentity,
        AzureCredentialKind::ClientSecret,
        AzureCredentialKind::Cli,
    ] {
        assert_eq!(kind.as_str().parse::<AzureCredentialKind>().unwrap(), kind);
    }
}

/// `Ok(f)`: options are read and `f` checks them; `Err((setting, fragment))`: the error.
type FromEnvExpectation = Result<fn(&AzureOptions), (&'static str, &'static str)>;

fn check_from_env(pairs: &[(&str, &str)], expected: FromEnvExpectation) {
    let got = AzureOptions::from_env(&env(pairs));
    match (got, expected) {
        (Ok(options), Ok(verify)) => verify(&options),
        (Err(e), Err((setting, fragment))) => {
            assert_eq!(e.setting(), setting, "{pairs:?}: {e}");
            assert!(e.message().contains(fragment), "{pairs:?}: {e}");
        }
        (got, _) => panic!("{pairs:?}: unexpected {got:?}"),
    }
}

#[test]
fn options_from_env() {
    check_from_env(
        &[],
        Ok(|o| {
            assert_eq!(o.cloud, AzureCloud::Public);
            assert_eq!(o.credential, AzureCredentialKind::Auto);
            assert_eq!(o.effective_scope(), AzureCloud::Public.scope());
            assert_eq!(
                o.effective_authority_host(),
                "https://login.microsoftonline.com"
            );
            assert!(!o.managed_identity_opt_in);
            assert_eq!(o.timeout, DEFAULT_TIMEOUT);
        }),
    );
    check_from_env(
        &[("PGAUTH_AZURE_CLOUD", "usgov")],
        Ok(|o| {
            assert_eq!(o.effective_scope(), AzureCloud::UsGov.scope());
            assert_eq!(
                o.effective_authority_host(),
                "https://login.microsoftonline.us"
            );
        }),
    );
    check_from_env(
        &[
            ("PGAUTH_AZURE_CREDENTIAL", "managed-identity"),
            ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
        ],
        Ok(|o| {
            assert_eq!(
                o.managed_identity,
                Some(UserAssigned::ClientId(
                    "11111111-2222-3333-4444-555555555555".into()
                ))
            );
        }),
    );
    check_from_env(
        &[("AZURE_CLIENT_ID", "abc")],
        Ok(|o| {
            assert_eq!(o.managed_identity, None);
            assert_eq!(o.client_id.as_deref(), Some("abc"));
        }),
    );
    check_from_env(
        &[
            ("PGAUTH_AZURE_CREDENTIAL", "managed-identity"),
            ("AZURE_CLIENT_ID", "abc"),
            ("PGAUTH_AZURE_MI_OBJECT_ID", "oid-1"),
        ],
        Ok(|o| {
            assert_eq!(
                o.managed_identity,
                Some(UserAssigned::ObjectId("oid-1".into()))
            )
        }),
    );
    check_from_env(
        &[("PGAUTH_AZURE_MI_RESOURCE_ID", "/subscriptions/s/x/name")],
        Ok(|o| {
            assert_eq!(
                o.managed_identity,
                Some(UserAssigned::ResourceId("/subscriptions/s/x/name".into()))
            );
        }),
    );
    check_from_env(
        &[
            ("PGAUTH_AZURE_MI_RESOURCE_ID", "/r"),
            ("PGAUTH_AZURE_MI_OBJECT_ID", "o"),
        ],
        Err(("PGAUTH_AZURE_MI_RESOURCE_ID", "not both")),
    );
    check_from_env(
        &[
            ("PGAUTH_AZURE_MANAGED_IDENTITY", "1"),
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:41234/msi/token"),
            ("IDENTITY_HEADER", "hdr-secret"),
            ("AZURE_CLIENT_SECRET", "sp-secret"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"),
            ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.com/"),
            ("PGAUTH_AZURE_CA_FILE", "/tmp/ca.pem"),
            ("PATH", "/usr/bin"),
        ],
        Ok(|o| {
            assert!(o.managed_identity_opt_in);
            assert_eq!(
                o.identity_endpoint.as_deref(),
                Some("http://127.0.0.1:41234/msi/token")
            );
            assert_eq!(o.identity_header.as_ref().unwrap().expose(), "hdr-secret");
            assert_eq!(o.client_secret.as_ref().unwrap().expose(), "sp-secret");
            assert_eq!(
                o.federated_token_file.as_deref(),
                Some(Path::new("/var/run/token"))
            );
            assert_eq!(
                o.effective_authority_host(),
                "https://login.microsoftonline.com"
            );
            assert_eq!(o.ca_file.as_deref(), Some(Path::new("/tmp/ca.pem")));
            assert_eq!(
                o.cli_search_path.as_deref(),
                Some(std::ffi::OsStr::new("/usr/bin"))
            );
        }),
    );
    check_from_env(
        &[(
            "PGAUTH_AZURE_SCOPE",
            "https://ossrdbms-aad.database.windows.net",
        )],
        Ok(|o| assert_eq!(o.effective_scope(), AzureCloud::Public.scope())),
    );
    check_from_env(
        &[("PGAUTH_AZURE_CREDENTIAL", "kerberos")],
        Err(("PGAUTH_AZURE_CREDENTIAL", "use auto, managed-identity")),
    );
    check_from_env(
        &[("PGAUTH_AZURE_CLOUD", "mars")],
        Err(("PGAUTH_AZURE_CLOUD", "use public, usgov or china")),
    );
    check_from_env(
        &[("PGAUTH_AZURE_MANAGED_IDENTITY", "maybe")],
        Err(("PGAUTH_AZURE_MANAGED_IDENTITY", "not a boolean; use 1 or 0")),
    );
    check_from_env(
        &[("PGAUTH_AZURE_SCOPE", "https://a b/.default")],
        Err(("PGAUTH_AZURE_SCOPE", "not a valid scope")),
    );
    check_from_env(
        &[("PGAUTH_AZURE_SCOPE", AzureCloud::UsGov.scope())],
        Err(("PGAUTH_AZURE_SCOPE", "set PGAUTH_AZURE_CLOUD=usgov")),
    );
    check_from_env(
        &[("AZURE_AUTHORITY_HOST", "http://login.microsoftonline.com")],
        Err(("AZURE_AUTHORITY_HOST", "not an https url")),
    );
    check_from_env(
        &[
            ("PGAUTH_AZURE_CLOUD", "china"),
            ("AZURE_AUTHORITY_HOST", "https://login.microsoftonline.us"),
        ],
        Err(("AZURE_AUTHORITY_HOST", "set PGAUTH_AZURE_CLOUD=usgov")),
    );
    check_from_env(
        &[("IDENTITY_ENDPOINT", "localhost:8080")],
        Err(("IDENTITY_ENDPOINT", "not an http url")),
    );
    check_from_env(
        &[("AZURE_TENANT_ID", "contoso/../x")],
        Err(("AZURE_TENANT_ID", "not a tenant id")),
    );
}

fn check_host(cloud: &str, scope: Option<&str>, host: &str, expected: Result<(), (&str, &str)>) {
    let mut options = AzureOptions::from_env(&env(&[("PGAUTH_AZURE_CLOUD", cloud)])).unwrap();
    options.scope = scope.map(str::to_string);
    match (options.check_host(host), expected) {
        (Ok(()), Ok(())) => {}
        (Err(e), Err((setting, fragment))) => {
            assert_eq!(e.setting(), setting, "{host}: {e}");
            assert!(e.message().contains(fragment), "{host}: {e}");
        }
        (got, _) => panic!("{cloud} {scope:?} {host}: unexpected {got:?}"),
    }
}

#[test]
fn host_and_scope_must_agree_with_the_cloud() {
    check_host("public", None, "db.postgres.database.azure.com", Ok(()));
    check_host("public", None, "localhost", Ok(()));
    check_host(
        "usgov",
        None,
        "db.postgres.database.usgovcloudapi.net",
        Ok(()),
    );
    check_host(
        "public",
        None,
        "db.postgres.database.usgovcloudapi.net",
        Err(("PGAUTH_AZURE_CLOUD", "set PGAUTH_AZURE_CLOUD=usgov")),
    );
    check_host(
        "usgov",
        None,
        "db.postgres.database.chinacloudapi.cn",
        Err(("PGAUTH_AZURE_CLOUD", "set PGAUTH_AZURE_CLOUD=china")),
    );
    check_host(
        "china",
        None,
        "db.postgres.database.azure.com",
        Err(("PGAUTH_AZURE_CLOUD", "set PGAUTH_AZURE_CLOUD=public")),
    );
    check_host(
        "public",
        Some(AzureCloud::China.scope()),
        "db.postgres.database.azure.com",
        Err((
            "PGAUTH_AZURE_SCOPE",
            "set PGAUTH_AZURE_CLOUD=china or unset",
        )),
    );
    check_host(
        "public",
        Some(AzureCloud::Public.scope()),
        "127.0.0.1",
        Ok(()),
    );
}

/// The scopes of other services are refused when the settings are read, with a message that
/// says to unset the variable; the audience table itself is in `audience::tests`.
#[test]
fn scopes_of_other_services_are_refused_at_settings_time() {
    for scope in [
        "https://management.azure.com/.default",
        "https://graph.microsoft.com/.default",
        "https://database.windows.net/.default",
        "https://emulator.test/.default",
        "junk",
    ] {
        check_from_env(
            &[("PGAUTH_AZURE_SCOPE", scope)],
            Err(("PGAUTH_AZURE_SCOPE", "unset PGAUTH_AZURE_SCOPE")),
        );
    }
    check_from_env(
        &[("PGAUTH_AZURE_SCOPE", "https://graph.microsoft.com/.default")],
        Err((
            "PGAUTH_AZURE_SCOPE",
            "is not the azure database for postgresql audience",
        )),
    );
}

/// What `choose` should give: the kind, or the error's setting and a fragment of it.
type ChoiceExpectation = Result<AzureCredentialKind, (&'static str, &'static str)>;

fn check_choice(pairs: &[(&str, &str)], az: bool, expected: ChoiceExpectation) {
    let options = AzureOptions::from_env(&env(pairs)).unwrap();
    let az_path = az.then(|| PathBuf::from("/opt/az/bin/az"));
    match (options.choose(|| az_path), expected) {
        (Ok(choice), Ok(kind)) => assert_eq!(choice.kind(), kind, "{pairs:?}"),
        (Err(e), Err((setting, fragment))) => {
            assert_eq!(e.setting(), setting, "{pairs:?}: {e}");
            assert!(e.message().contains(fragment), "{pairs:?}: {e}");
        }
        (got, _) => panic!("{pairs:?} az={az}: unexpected {got:?}"),
    }
}

#[test]
fn the_auto_chain_is_deterministic() {
    use AzureCredentialKind::*;
    let wi = [
        ("AZURE_FEDERATED_TOKEN_FILE", "/t"),
        ("AZURE_CLIENT_ID", "c"),
        ("AZURE_TENANT_ID", "t"),
    ];
    let app_service = [
        ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/token"),
        ("IDENTITY_HEADER", "h"),
    ];
    let sp = [
        ("AZURE_CLIENT_SECRET", "s"),
        ("AZURE_CLIENT_ID", "c"),
        ("AZURE_TENANT_ID", "t"),
    ];
    // Each step, alone.
    check_choice(&wi, false, Ok(WorkloadIdentity));
    check_choice(&app_service, false, Ok(ManagedIdentity));
    check_choice(
        &[("PGAUTH_AZURE_MANAGED_IDENTITY", "1")],
        false,
        Ok(ManagedIdentity),
    );
    check_choice(&sp, false, Ok(ClientSecret));
    check_choice(&[], true, Ok(Cli));
    // Earlier steps win.
    let all: Vec<_> = wi.iter().chain(&app_service).chain(&sp).copied().collect();
    check_choice(&all, true, Ok(WorkloadIdentity));
    let mi_sp: Vec<_> = app_service.iter().chain(&sp).copied().collect();
    check_choice(&mi_sp, true, Ok(ManagedIdentity));
    check_choice(&sp, true, Ok(ClientSecret));
    // A half-configured step fails rather than falling through.
    check_choice(
        &[
            ("AZURE_FEDERATED_TOKEN_FILE", "/t"),
            ("AZURE_CLIENT_ID", "c"),
        ],
        true,
        Err(("AZURE_TENANT_ID", "workload identity needs")),
    );
    check_choice(
        &[("AZURE_CLIENT_SECRET", "s"), ("AZURE_TENANT_ID", "t")],
        true,
        Err(("AZURE_CLIENT_ID", "client secret credential needs")),
    );
    check_choice(
        &[("IDENTITY_ENDPOINT", "http://127.0.0.1:1/token")],
        true,
        Err(("IDENTITY_HEADER", "azure arc or service fabric")),
    );
    // Nothing: one error that lists every step.
    check_choice(
        &[],
        false,
        Err((
            "PGAUTH_AZURE_CREDENTIAL",
            "AZURE_FEDERATED_TOKEN_FILE is not set",
        )),
    );
    for fragment in [
        "IDENTITY_ENDPOINT is not set and PGAUTH_AZURE_MANAGED_IDENTITY is not 1",
        "AZURE_CLIENT_SECRET is not set",
        "az was not found on PATH",
        "run az login",
    ] {
        check_choice(&[], false, Err(("PGAUTH_AZURE_CREDENTIAL", fragment)));
    }
    check_choice(
        &[("AZURE_CLIENT_ID", "c"), ("AZURE_TENANT_ID", "t")],
        false,
        Err((
            "PGAUTH_AZURE_CREDENTIAL",
            "AZURE_TENANT_ID and AZURE_CLIENT_ID are set but AZURE_CLIENT_SECRET is not",
        )),
    );
    // Explicit kinds.
    check_choice(
        &[("PGAUTH_AZURE_CREDENTIAL", "managed-identity")],
        false,
        Ok(ManagedIdentity),
    );
    check_choice(&[("PGAUTH_AZURE_CREDENTIAL", "cli")], true, Ok(Cli));
    check_choice(
        &[("PGAUTH_AZURE_CREDENTIAL", "cli")],
        false,
        Err(("PGAUTH_AZURE_CREDENTIAL", "az) was not found on PATH")),
    );
    check_choice(
        &[("PGAUTH_AZURE_CREDENTIAL", "client-secret")],
        true,
        Err(("AZURE_TENANT_ID", "AZURE_TENANT_ID is not set")),
    );
    check_choice(
        &[("PGAUTH_AZURE_CREDENTIAL", "workload-identity")],
        true,
        Err((
            "AZURE_FEDERATED_TOKEN_FILE",
            "AZURE_FEDERATED_TOKEN_FILE is not set",
        )),
    );
}

#[test]
fn managed_identity_choices_carry_the_endpoint_and_id() {
    let options = AzureOptions::from_env(&env(&[
        ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/token"),
        ("IDENTITY_HEADER", "h"),
        ("AZURE_CLIENT_ID", "cid"),
    ]))
    .unwrap();
    assert_eq!(
        options.choose(|| None).unwrap(),
        Choice::ManagedIdentity {
            endpoint: ManagedIdentityEndpoint::AppService {
                url: "http://127.0.0.1:1/token".into(),
                header: Secret::new("h"),
            },
            user_assigned: Some(UserAssigned::ClientId("cid".into())),
        }
    );
    let options = AzureOptions {
        credential: AzureCredentialKind::ManagedIdentity,
        ..Default::default()
    };
    assert_eq!(
        options.choose(|| None).unwrap(),
        Choice::ManagedIdentity {
            endpoint: ManagedIdentityEndpoint::Imds,
            user_assigned: None,
        }
    );
}

#[test]
fn az_is_found_on_the_search_path_only() {
    let dir = std::env::temp_dir().join(format!("pgauth-az-find-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let az = dir.join("az");
    std::fs::write(&az, "#!/bin/sh\nexit 0\n").unwrap();
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let with = |path: &Path| AzureOptions {
        cli_search_path: Some(std::env::join_paths([empty.as_path(), path]).unwrap()),
        ..Default::default()
    };
    assert_eq!(with(&dir).find_az(), Some(az.clone()));
    assert_eq!(with(&empty).find_az(), None);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn debug_hides_secrets() {
    let options = AzureOptions::from_env(&env(&[
        ("AZURE_CLIENT_SECRET", "sp-secret-value"),
        ("IDENTITY_HEADER", "identity-header-value"),
        ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/token"),
        ("PATH", "/secret/looking/path"),
    ]))
    .unwrap();
    let printed = format!("{options:?} {options:#?}");
    for secret in [
        "sp-secret-value",
        "identity-header-value",
        "/secret/looking",
    ] {
        assert!(!printed.contains(secret), "{printed}");
    }
    assert!(printed.contains("<redacted>"));
    let choice = options.choose(|| None).unwrap();
    assert!(!format!("{choice:?}").contains("identity-header-value"));
}

fn check_claims(claims: &str, expected: TokenDetails) {
    let parsed = JwtClaims::parse(&jwt(claims)).expect(claims);
    assert_eq!(parsed.details(), expected, "{claims}");
}

fn details(identity: &str, username: Option<(&str, UsernameSource)>, ids: &[&str]) -> TokenDetails {
    TokenDetails {
        identity: Some(identity.to_string()),
        username: username.map(|(u, _)| u.to_string()),
        username_source: username.map(|(_, s)| s),
        ids: ids.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn usernames_come_from_the_claims_in_order() {
    check_claims(
        r#"{"appid":"app-1","oid":"oid-1","idtyp":"app","xms_mirid":"/subscriptions/s/resourcegroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/orders-api"}"#,
        details(
            "orders-api",
            Some(("orders-api", UsernameSource::XmsMirid)),
            &["app-1", "oid-1"],
        ),
    );
    check_claims(
        r#"{"appid":"a","oid":"o","xms_mirid":"/subscriptions/s/providers/Microsoft.Web/sites/my-app/"}"#,
        details(
            "my-app",
            Some(("my-app", UsernameSource::XmsMirid)),
            &["a", "o"],
        ),
    );
    check_claims(
        r#"{"oid":"o","upn":"ada@contoso.com","preferred_username":"p@x","unique_name":"u@x"}"#,
        details(
            "ada@contoso.com",
            Some(("ada@contoso.com", UsernameSource::Upn)),
            &["o"],
        ),
    );
    check_claims(
        r#"{"azp":"v2-client","oid":"o","preferred_username":"p@x","unique_name":"u@x"}"#,
        details(
            "p@x",
            Some(("p@x", UsernameSource::PreferredUsername)),
            &["v2-client", "o"],
        ),
    );
    check_claims(
        r#"{"appid":"a","oid":"o","unique_name":"u@x","upn":""}"#,
        details(
            "u@x",
            Some(("u@x", UsernameSource::UniqueName)),
            &["a", "o"],
        ),
    );
    // A service principal: no name in the token.
    check_claims(
        r#"{"appid":"a","oid":"o","idtyp":"app"}"#,
        details("client id a", None, &["a", "o"]),
    );
    check_claims(
        r#"{"appid":"same","oid":"same"}"#,
        details("client id same", None, &["same"]),
    );
    // Claims of unexpected types are ignored.
    check_claims(
        r#"{"appid":7,"upn":["x"],"oid":"o","unique_name":"u"}"#,
        details("u", Some(("u", UsernameSource::UniqueName)), &["o"]),
    );
}

fn check_exp(token: &str, expected: Option<u64>) {
    let got = JwtClaims::parse(token).and_then(|c| c.expires_at());
    assert_eq!(
        got,
        expected.map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s)),
        "{token}"
    );
}

#[test]
fn jwt_payloads_decode_leniently() {
    check_exp(&jwt(r#"{"exp":1700000000}"#), Some(1_700_000_000));
    check_exp(&jwt(r#"{"exp":"1700000000"}"#), Some(1_700_000_000));
    check_exp(&jwt(r#"{"exp":1700000000.5}"#), Some(1_700_000_000));
    check_exp(&jwt(r#"{"exp":-1}"#), None);
    check_exp(&jwt(r#"{}"#), None);
    assert!(JwtClaims::parse("opaque-token").is_none());
    assert!(JwtClaims::parse("a.b").is_none());
    assert!(JwtClaims::parse("a.b.c.d").is_none());
    assert!(JwtClaims::parse("a.!!!.c").is_none());
    assert!(JwtClaims::parse(&format!("a.{}.c", URL_SAFE_NO_PAD.encode("[1]"))).is_none());
    // Padding is tolerated.
    let padded = format!(
        "a.{}.c",
        base64::engine::general_purpose::URL_SAFE.encode(r#"{"exp":1}"#)
    );
    check_exp(&padded, Some(1));
}

fn check_guid_warning(user: &str, ids: &[&str], expected: Option<&str>) {
    let details = TokenDetails {
        username: Some("orders-api".into()),
        ids: ids.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let got = guid_username_warning(user, &details);
    match expected {
        None => assert_eq!(got, None, "{user}"),
        Some(fragment) => {
            let text = got.unwrap_or_else(|| panic!("{user}: no warning"));
            assert!(text.contains(fragment), "{text}");
        }
    }
}

#[test]
fn guid_usernames_that_match_the_token_warn() {
    let appid = "0a1b2c3d-4e5f-6789-abcd-ef0123456789";
    let oid = "ffffffff-0000-1111-2222-333333333333";
    check_guid_warning(appid, &[appid, oid], Some("display name"));
    check_guid_warning(&appid.to_uppercase(), &[appid, oid], Some("\"orders-api\""));
    check_guid_warning(oid, &[appid, oid], Some(oid));
    check_guid_warning("11111111-2222-3333-4444-555555555555", &[appid, oid], None);
    check_guid_warning("orders-api", &["orders-api"], None);
    check_guid_warning("0a1b2c3d4e5f6789abcdef0123456789", &[appid], None);
    check_guid_warning("0a1b2c3d-4e5f-6789-abcd-ef012345678z", &[appid], None);
}

#[test]
fn the_username_error_says_to_set_pguser() {
    let e = username_required_error(&TokenDetails {
        ids: vec!["app-1".into()],
        ..Default::default()
    });
    assert_eq!(e.setting(), "PGUSER");
    assert!(e.message().contains("client id app-1"), "{e}");
    assert!(
        e.message()
            .contains("set PGUSER to the identity's display name"),
        "{e}"
    );
}

#[test]
fn resolve_credential_reports_the_kind_or_the_chain() {
    let empty = std::env::temp_dir().join(format!("pgauth-az-none-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let nothing = AzureOptions {
        cli_search_path: Some(empty.clone().into_os_string()),
        ..Default::default()
    };
    let e = nothing.resolve_credential().unwrap_err();
    assert_eq!(e.setting(), "PGAUTH_AZURE_CREDENTIAL");
    assert!(e.message().contains("auto looked for"), "{e}");
    let sp = AzureOptions {
        tenant_id: Some("t".into()),
        client_id: Some("c".into()),
        client_secret: Some(Secret::new("s")),
        ..nothing.clone()
    };
    assert_eq!(
        sp.resolve_credential(),
        Ok(AzureCredentialKind::ClientSecret)
    );
    let bad_scope = AzureOptions {
        scope: Some(String::new()),
        ..sp
    };
    assert_eq!(
        bad_scope.resolve_credential().unwrap_err().setting(),
        "PGAUTH_AZURE_SCOPE"
    );
    std::fs::remove_dir_all(&empty).unwrap();
}
