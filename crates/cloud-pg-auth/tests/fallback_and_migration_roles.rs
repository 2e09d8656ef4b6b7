//! The fallback role and the migration password against the emulator (a real PostgreSQL
//! behind its token-checking front): a fallback password refused twice names the fallback
//! role and its settings, and `PGAUTH_MIGRATION_PASSWORD` logs migrations in as the migration
//! role with a password while the service keeps its tokens.
#![cfg(all(feature = "azure", feature = "tokio-postgres"))]

use cloud_pg_auth::engine::{CredentialConfig, chain_text};
use cloud_pg_auth::{Env, Error, Settings};
use cloud_pg_auth_testkit::{Emulator, EmulatorOptions, Faults};

/// The emulator's Azure managed identity, read from the environment as an application
/// would, plus `extra`.
fn azure_settings(emulator: &Emulator, extra: &[(&str, &str)]) -> Settings {
    let mut env = emulator.env();
    for (name, value) in [
        ("PGAUTH_METHOD", "azure"),
        ("PGAUTH_AZURE_CREDENTIAL", "managed-identity"),
    ]
    .iter()
    .chain(extra)
    {
        env.retain(|(k, _)| k != name);
        env.push((name.to_string(), value.to_string()));
    }
    Settings::from_env_vars(&Env::from_pairs(env)).expect("valid settings")
}

async fn current_user(config: CredentialConfig) -> String {
    let connector = config
        .build_connector()
        .await
        .expect("the connector builds");
    let (client, _io) = connector.connect().await.unwrap_or_else(|e| {
        panic!("{}", chain_text(&e));
    });
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .expect("current_user")
        .get(0);
    connector.dispose().await;
    user
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_password_logs_migrations_in_as_the_migration_role() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let settings = azure_settings(
        &emulator,
        &[
            ("PGAUTH_MIGRATION_USER", emulator.password_role()),
            ("PGAUTH_MIGRATION_PASSWORD", emulator.password()),
        ],
    );
    let service = current_user(CredentialConfig::new(settings.clone())).await;
    assert_eq!(
        service,
        emulator.azure_role(),
        "the service logs in with a token"
    );
    let migrations = current_user(CredentialConfig::for_migrations(settings)).await;
    assert_eq!(
        migrations,
        emulator.password_role(),
        "migrations log in with the migration password as the migration role"
    );
    emulator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_fallback_names_the_fallback_role_and_its_settings() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    // The identity endpoint down from the start: no token, so every login gets the fallback
    // password, here not the fallback role's.
    emulator
        .set_faults(Faults {
            down: Some(true),
            ..Faults::default()
        })
        .await
        .unwrap();
    let settings = azure_settings(
        &emulator,
        &[
            ("PGAUTH_FALLBACK_USER", emulator.password_role()),
            ("PGAUTH_FALLBACK_PASSWORD", "not-the-password"),
        ],
    );
    let connector = CredentialConfig::new(settings)
        .build_connector()
        .await
        .expect("the connector builds");
    let error = match connector.connect().await {
        Ok(_) => panic!("a wrong fallback password was let in"),
        Err(error) => error,
    };
    let text = chain_text(&error);
    assert!(error.is_auth_failure(), "{text}");
    let role = emulator.password_role();
    match &error {
        Error::Connect { target, .. } => {
            assert!(target.ends_with(&format!(" as {role}")), "{target}");
        }
        other => panic!("{other:?}"),
    }
    for words in [
        "refused the fallback password twice".to_string(),
        format!("the fallback role {role:?} (PGAUTH_FALLBACK_USER)"),
        "PGAUTH_FALLBACK_PASSWORD is its password".to_string(),
    ] {
        assert!(text.contains(&words), "{words:?} missing from: {text}");
    }
    assert!(!text.contains("not-the-password"), "{text}");
    let status = connector.status();
    assert_eq!(status.fallback_user.as_deref(), Some(role));
    assert!(status.fallback_in_use, "{status:?}");
    assert!(status.fallback_count >= 2, "{status:?}");
    connector.dispose().await;
    emulator.stop().await.unwrap();
}
