//! A role the server keeps refusing, against the emulator (a real PostgreSQL behind its
//! token-checking front): each refused login invalidates the token, and the cache must not
//! turn that into one identity request per connection attempt (Azure IMDS allows 20/s).
#![cfg(all(feature = "azure", feature = "tokio-postgres"))]

use std::sync::Arc;
use std::time::SystemTime;

use cloud_pg_auth::clock::ManualClock;
use cloud_pg_auth::engine::CredentialConfig;
use cloud_pg_auth::engine::chain_text;
use cloud_pg_auth::{AuthOptions, Env, Settings};
use cloud_pg_auth_testkit::{Emulator, EmulatorOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_role_costs_a_handful_of_identity_requests_not_one_per_attempt() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    // A valid managed-identity token, presented for a role mapped to another identity: the
    // front refuses it (28000, oid mismatch) however often a new one is fetched.
    let mut env = emulator.env();
    env.retain(|(name, _)| name != "PGUSER");
    for (name, value) in [
        ("PGAUTH_METHOD", "azure"),
        ("PGAUTH_AZURE_CREDENTIAL", "managed-identity"),
        ("PGUSER", emulator.azure_workload_role()),
    ] {
        env.push((name.to_string(), value.to_string()));
    }
    let settings = Settings::from_env_vars(&Env::from_pairs(env)).unwrap();
    // A clock that stands still puts all attempts inside one invalidate interval, however
    // slow the machine; the emulator's tokens live an hour of real time.
    let clock = ManualClock::new(SystemTime::now());
    let options = AuthOptions::default().clock(Arc::new(clock));
    // Before the build: the background refresher fetches as soon as it starts.
    let before = emulator.stats().token_requests.total;
    let mut config = CredentialConfig::new(settings);
    config.set_auth_options(options);
    let connector = config.build_connector().await.unwrap();

    for attempt in 0..200 {
        let error = match connector.connect().await {
            Ok(_) => panic!("attempt {attempt}: the refused role was let in"),
            Err(error) => error,
        };
        let text = chain_text(&error);
        assert!(error.is_auth_failure(), "attempt {attempt}: {text}");
        assert!(
            text.contains("refused the credentials"),
            "attempt {attempt}: {text}"
        );
    }

    let requests = emulator.stats().token_requests.total - before;
    // The first fetch and the one forced by the first refusal; a background refresh that
    // shares neither could add one.
    assert!(
        (2..=3).contains(&requests),
        "{requests} identity requests for 200 refused attempts"
    );
    assert_eq!(connector.stats().auth_retries, 200);
    let token = connector.auth().token().await.unwrap();
    let error = connector.connect().await.err().map(|e| chain_text(&e));
    let text = error.expect("still refused");
    assert!(!text.contains(token.secret().expose()), "{text}");
    connector.dispose().await;
    emulator.stop().await.unwrap();
}
