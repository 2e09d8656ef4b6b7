//! Reading and checking the options: credential kinds, the environment, host and scope agreement, redaction.

use std::path::Path;

use super::*;

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
