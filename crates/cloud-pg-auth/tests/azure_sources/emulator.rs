//! End to end against the testkit emulator: each credential kind gets a token from the
//! emulator's endpoints (Entra over https with the emulator's CA trusted through `ca_file`),
//! and the token logs in to the emulator's token-checking PostgreSQL front.

use cloud_pg_auth::azure::{AzureCredentialKind, AzureOptions, AzureSource, UserAssigned};
use cloud_pg_auth::{Env, TokenSource};

use crate::reroute::Reroute;

#[tokio::test]
async fn every_credential_kind_logs_in_through_the_emulator() {
    use cloud_pg_auth_testkit::{Emulator, EmulatorOptions};

    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let app_service = |extra: Vec<(&'static str, String)>| {
        let mut pairs = vec![
            ("IDENTITY_ENDPOINT", emulator.identity_endpoint()),
            ("IDENTITY_HEADER", emulator.identity_header().to_string()),
        ];
        pairs.extend(extra);
        AzureOptions::from_env(&Env::from_pairs(pairs)).unwrap()
    };
    let entra = |extra: Vec<(&'static str, String)>| {
        let mut pairs = vec![
            ("AZURE_AUTHORITY_HOST", emulator.authority_host()),
            ("AZURE_TENANT_ID", emulator.tenant_id().to_string()),
            ("AZURE_CLIENT_ID", emulator.workload_client_id().to_string()),
            (
                "PGAUTH_AZURE_CA_FILE",
                emulator.ca_path().display().to_string(),
            ),
        ];
        pairs.extend(extra);
        AzureOptions::from_env(&Env::from_pairs(pairs)).unwrap()
    };
    let imds = AzureOptions::default()
        .credential(AzureCredentialKind::ManagedIdentity)
        .managed_identity(UserAssigned::ClientId(emulator.client_id().to_string()));
    let cases: Vec<(&str, AzureOptions, bool, &str, Option<&str>)> = vec![
        (
            "app service, system-assigned",
            app_service(vec![]),
            false,
            emulator.azure_system_role(),
            Some(emulator.azure_system_role()),
        ),
        (
            "app service, user-assigned by client id (auto)",
            app_service(vec![("AZURE_CLIENT_ID", emulator.client_id().to_string())]),
            false,
            emulator.azure_role(),
            Some(emulator.azure_role()),
        ),
        (
            "app service, user-assigned by object id",
            app_service(vec![
                ("PGAUTH_AZURE_CREDENTIAL", "managed-identity".into()),
                (
                    "PGAUTH_AZURE_MI_OBJECT_ID",
                    emulator.object_id().to_string(),
                ),
            ]),
            false,
            emulator.azure_role(),
            Some(emulator.azure_role()),
        ),
        (
            "imds through an injected transport",
            imds,
            true,
            emulator.azure_role(),
            Some(emulator.azure_role()),
        ),
        (
            "client secret over https",
            entra(vec![(
                "AZURE_CLIENT_SECRET",
                emulator.client_secret().to_string(),
            )]),
            false,
            emulator.azure_workload_role(),
            None,
        ),
        (
            "workload identity over https",
            entra(vec![(
                "AZURE_FEDERATED_TOKEN_FILE",
                emulator.federated_token_file().display().to_string(),
            )]),
            false,
            emulator.azure_workload_role(),
            None,
        ),
    ];
    let identity_port: u16 = emulator
        .imds_endpoint()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    for (label, options, reroute, role, derived) in cases {
        let source = if reroute {
            let (transport, original) = Reroute::to_port(identity_port);
            let source = AzureSource::with_http_client(&options, transport).unwrap();
            let token = source.fetch().await;
            assert_eq!(
                original.lock().unwrap()[0],
                "http://169.254.169.254/metadata/identity/oauth2/token"
            );
            (source, token)
        } else {
            let source = AzureSource::new(&options).unwrap();
            let token = source.fetch().await;
            (source, token)
        };
        let (source, token) = source;
        let token = token.unwrap_or_else(|e| panic!("{label}: {}", e.chain_text()));
        assert_eq!(token.details().get_username(), derived, "{label}");
        let client = emulator
            .connect(role, token.secret().expose())
            .await
            .unwrap_or_else(|e| panic!("{label}: login as {role} failed: {e}"));
        let row = client
            .query_one("select current_user::text", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), role, "{label}");
        assert_eq!(source.info().get_method(), "azure");
    }
    emulator.stop().await.unwrap();
}
