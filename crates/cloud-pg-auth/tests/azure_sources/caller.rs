//! A caller-supplied credential: with the scope spelled out, and for the server of a set of
//! settings (`AzureSource::for_credential`), logging in to the emulator.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use cloud_pg_auth::azure::{AzureCloud, AzureSource};
use cloud_pg_auth::engine::CredentialConfig;
use cloud_pg_auth::{AuthMethod, Env, Settings, SourceInfo, TokenErrorKind, TokenSource};
use cloud_pg_auth_testkit::{Cloud, Emulator, EmulatorOptions, MintOptions};

use crate::support::{Fixed, at, check_result, fails, mi_jwt, now_secs};

#[tokio::test]
async fn caller_supplied_credentials() {
    let later = now_secs() + 3600;
    let good = Arc::new(Fixed {
        token: Some(mi_jwt(later)),
        expires_on: later + 100,
        scopes: Mutex::default(),
    });
    let source = AzureSource::from_credential(
        good.clone(),
        AzureCloud::Public.scope(),
        SourceInfo::new("azure").credential_kind("custom"),
    );
    let token = source.fetch().await.unwrap();
    assert_eq!(token.expires_at(), Some(at(later)));
    assert_eq!(token.details().get_username(), Some("orders-api"));
    assert_eq!(
        *good.scopes.lock().unwrap(),
        vec![AzureCloud::Public.scope()]
    );
    assert_eq!(source.credential_kind(), None);
    assert_eq!(source.info().get_credential_kind(), Some("custom"));

    let bad = AzureSource::from_credential(
        Arc::new(Fixed {
            token: None,
            expires_on: 0,
            scopes: Mutex::default(),
        }),
        AzureCloud::Public.scope(),
        SourceInfo::new("azure").credential_kind("custom"),
    );
    check_result(
        "a failing credential",
        bad.fetch().await,
        &fails(
            TokenErrorKind::Transient,
            "azure custom: the credential failed: vault sealed",
        ),
    );
}

/// A caller's credential that answers as Entra would: the emulator's token for the audience
/// of the scope asked for (minted ahead for every cloud), recording every scope asked.
#[derive(Debug)]
struct Minted {
    tokens: Vec<(&'static str, String)>,
    asked: Mutex<Vec<String>>,
}

impl Minted {
    fn new(emulator: &Emulator) -> Arc<Self> {
        let tokens = AzureCloud::ALL
            .iter()
            .map(|cloud| {
                let audience = Some(cloud.audience().to_string());
                let token = emulator.mint_entra_token(MintOptions {
                    audience,
                    ..MintOptions::default()
                });
                (cloud.scope(), token)
            })
            .collect();
        Arc::new(Self {
            tokens,
            asked: Mutex::default(),
        })
    }

    fn asked(&self) -> Vec<String> {
        std::mem::take(&mut *self.asked.lock().unwrap())
    }
}

#[async_trait]
impl TokenCredential for Minted {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        self.asked
            .lock()
            .unwrap()
            .extend(scopes.iter().map(|s| s.to_string()));
        let (_, token) = self
            .tokens
            .iter()
            .find(|(scope, _)| scopes == [*scope])
            .ok_or_else(|| {
                azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    "no token for that scope",
                )
            })?;
        let expires_on = i64::try_from(now_secs() + 600).unwrap();
        Ok(azure_core::credentials::AccessToken::new(
            token.clone(),
            azure_core::time::OffsetDateTime::from_unix_timestamp(expires_on).unwrap(),
        ))
    }
}

/// Logs in once through an engine's credential built from `settings` and `source`, and
/// returns `current_user`.
async fn login(settings: Settings, source: Arc<dyn TokenSource>) -> String {
    let mut config = CredentialConfig::new(settings);
    config.set_token_source(source);
    assert_eq!(config.login_settings().get_method(), AuthMethod::Azure);
    let connector = config.build_connector().await.unwrap();
    let (client, _connection) = connector.connect().await.unwrap();
    let user = client
        .query_one("select current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    connector.dispose().await;
    user
}

#[tokio::test]
async fn a_callers_credential_gets_the_cloud_s_scope_and_the_user_from_its_token() {
    const USGOV_HOST: &str = "orders.postgres.database.usgovcloudapi.net";
    let emulator = Emulator::start(EmulatorOptions {
        cloud: Cloud::UsGov,
        extra_server_names: vec![USGOV_HOST.to_string()],
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let credential = Minted::new(&emulator);
    // What a service has: the server, TLS, the cloud; no PGAUTH_METHOD, no PGUSER.
    let env = |extra: &[(&str, &str)]| {
        let mut pairs: Vec<(String, String)> = emulator
            .env()
            .into_iter()
            .filter(|(k, _)| k.starts_with("PG") && !k.starts_with("PGAUTH_EMULATOR"))
            .collect();
        for (k, v) in extra {
            pairs.retain(|(name, _)| name != k);
            pairs.push((k.to_string(), v.to_string()));
        }
        Settings::from_env_vars(&Env::from_pairs(pairs)).unwrap()
    };
    let usgov_scope = [AzureCloud::UsGov.scope().to_string()];
    let cases = [
        // A loopback address (a tunnel, a private endpoint by IP): the cloud is the setting's.
        ("loopback host", env(&[("PGAUTH_AZURE_CLOUD", "usgov")])),
        // The server's own name, dialled at the emulator: the host's cloud, which agrees.
        (
            "usgov host",
            env(&[
                ("PGHOST", USGOV_HOST),
                ("PGHOSTADDR", "127.0.0.1"),
                ("PGAUTH_AZURE_CLOUD", "usgov"),
            ]),
        ),
    ];
    for (label, settings) in cases {
        assert_eq!(settings.get_user(), None, "{label}");
        let source = AzureSource::for_credential(credential.clone(), &settings).unwrap();
        assert_eq!(source.info().get_cloud(), Some("usgov"), "{label}");
        let user = login(settings, source).await;
        assert_eq!(
            user,
            emulator.azure_role(),
            "{label}: the user the token names"
        );
        assert_eq!(credential.asked(), usgov_scope, "{label}");
    }

    // PGUSER, when set, is the role.
    let settings = env(&[
        ("PGAUTH_AZURE_CLOUD", "usgov"),
        ("PGUSER", emulator.azure_role()),
    ]);
    let source = AzureSource::for_credential(credential.clone(), &settings).unwrap();
    assert_eq!(login(settings, source).await, emulator.azure_role());
    assert_eq!(credential.asked(), usgov_scope);

    // A host of another cloud than the settings', or another method: refused by name.
    let wrong_cloud = Settings::default().host(USGOV_HOST);
    let e = AzureSource::for_credential(credential.clone(), &wrong_cloud).unwrap_err();
    assert!(
        e.to_string().contains("set PGAUTH_AZURE_CLOUD=usgov"),
        "{e}"
    );
    let aws = Settings::default()
        .host("127.0.0.1")
        .method(AuthMethod::Aws);
    let e = AzureSource::for_credential(credential.clone(), &aws).unwrap_err();
    assert!(e.to_string().starts_with("PGAUTH_METHOD"), "{e}");
    assert!(credential.asked().is_empty(), "refused before any fetch");
    emulator.stop().await.unwrap();
}
