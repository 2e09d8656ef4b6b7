//! The credential choice: the `auto` chain, explicit kinds, finding `az`.

use std::path::{Path, PathBuf};

use super::*;

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
