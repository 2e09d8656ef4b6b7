//! Aurora DSQL end to end: settings read from the emulator's exports (the endpoint name in
//! `PGHOST`, `127.0.0.1` in `PGHOSTADDR`, `verify-full` against the test CA) log in through
//! the emulator's front, which checks the token, its action, host, region and the TLS name.

#![cfg(all(feature = "aws", feature = "tokio-postgres"))]

use cloud_pg_auth::engine::CredentialConfig;
use cloud_pg_auth::engine::chain_text;
use cloud_pg_auth::{AuthMethod, BoxError, Env, PgConnector, Settings};
use cloud_pg_auth_testkit::{Emulator, EmulatorOptions};

fn dsql_env(emulator: &Emulator, user: &str) -> Vec<(String, String)> {
    let mut env = emulator.env();
    env.retain(|(k, _)| !matches!(k.as_str(), "PGHOST" | "PGAUTH_METHOD" | "PGUSER"));
    env.push(("PGHOST".into(), emulator.dsql_host()));
    env.push(("PGHOSTADDR".into(), "127.0.0.1".into()));
    env.push(("PGUSER".into(), user.into()));
    env
}

async fn current_user(settings: &Settings) -> Result<String, BoxError> {
    let auth = CredentialConfig::new(settings.clone()).build_auth().await?;
    let connector = PgConnector::new(settings, auth)?;
    let (client, _task) = connector.connect().await?;
    let row = client.query_one("select current_user::text", &[]).await?;
    Ok(row.get(0))
}

#[tokio::test]
async fn dsql_roles_and_admin_log_in_with_auto_detection() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    for user in [emulator.dsql_role(), emulator.dsql_admin_role()] {
        let settings =
            Settings::from_env_vars(&Env::from_pairs(dsql_env(&emulator, user))).unwrap();
        assert_eq!(settings.resolved_method().unwrap(), AuthMethod::Dsql);
        let got = current_user(&settings)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        assert_eq!(got, user);
    }
    let stats = emulator.stats();
    assert_eq!(
        stats.logins_accepted_by_method.get("dsql"),
        Some(&2),
        "{stats:?}"
    );

    // Signed for another region: refused the way DSQL refuses.
    let mut env = dsql_env(&emulator, emulator.dsql_role());
    env.push(("AWS_REGION".into(), "eu-west-1".into()));
    env.retain(|(k, _)| k != "AWS_DEFAULT_REGION");
    let settings = Settings::from_env_vars(&Env::from_pairs(env)).unwrap();
    let e = current_user(&settings).await.unwrap_err();
    assert!(
        chain_text(e.as_ref()).contains("unable to accept connection, access denied"),
        "{e}"
    );
    emulator.stop().await.unwrap();
}
