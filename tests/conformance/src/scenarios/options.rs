//! Connection options pass through (issue 13, item 1): libpq's `options` reach the server
//! from the builder, the environment and a URL, and `target_session_attrs` and the TCP
//! keepalives are applied, the same in every adapter.

use std::time::Duration;

use cloud_pg_auth::{Env, Settings, TargetSessionAttrs};

use super::{emulator, text};
use crate::{Adapter, EngineOptions, Method};

/// Server options set by `Settings::options`, by `PGOPTIONS` and by a URL's `?options=` are
/// what the session shows, an escaped space included; `target_session_attrs=read-write` and
/// keepalives open connections to a writable server, and `read-write` refuses a read-only
/// session (`default_transaction_read_only=on`, as on a standby after an HA failover).
pub async fn connection_options_reach_the_server<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(3600)).await;
    let role = Method::Password.expected_role(&emulator);
    let mut env = Method::Password.env(&emulator);
    env.retain(|(k, _)| k != "PGOPTIONS");
    env.push((
        "PGOPTIONS".into(),
        r"-c search_path=from_env -c pgauth.note=a\ b".into(),
    ));
    let from_env = Settings::from_env_vars(&Env::from_pairs(env.clone())).unwrap();
    let value = |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let url = format!(
        "postgres://{role}:{}@127.0.0.1:{}/{}?sslmode={}&sslrootcert={}&options=-c%20search_path%3Dfrom_url",
        emulator.password(),
        emulator.pg_port(),
        emulator.database(),
        value("PGSSLMODE"),
        value("PGSSLROOTCERT"),
    );
    let from_url = Settings::from_url(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
    let from_builder = Method::Password
        .settings(&emulator)
        .options("-c search_path=custom");

    for (label, settings, want) in [
        ("builder", from_builder.clone(), "custom"),
        ("env", from_env, "from_env"),
        ("url", from_url, "from_url"),
    ] {
        let engine = A::pooled(settings, EngineOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{} {label}: {}", A::NAME, text(&e)));
        let search_path = A::show(&engine, "search_path")
            .await
            .unwrap_or_else(|e| panic!("{} {label}: {}", A::NAME, text(&e)));
        assert_eq!(search_path, want, "{} {label}", A::NAME);
        if label == "env" {
            let note = A::show(&engine, "pgauth.note").await.unwrap();
            assert_eq!(
                note,
                "a b",
                "{}: an escaped space stays in the value",
                A::NAME
            );
        }
        A::dispose(&engine).await;
    }

    let read_write = from_builder
        .target_session_attrs(TargetSessionAttrs::ReadWrite)
        .keepalives_idle(Duration::from_secs(30))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_count(3);
    let engine = A::pooled(read_write.clone(), EngineOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}: {}", A::NAME, text(&e)));
    assert_eq!(A::current_user(&engine).await.unwrap(), role, "{}", A::NAME);
    A::dispose(&engine).await;

    let read_only = read_write.options("-c default_transaction_read_only=on");
    // A pool that retries failed opens (bb8) gives up at its timeout: kept short.
    let retrying = EngineOptions {
        connection_timeout: Duration::from_secs(2),
        ..EngineOptions::default()
    };
    let engine = A::pooled(read_only, retrying)
        .await
        .unwrap_or_else(|e| panic!("{}: {}", A::NAME, text(&e)));
    let refused = A::current_user(&engine)
        .await
        .map(|user| format!("kept a read-only session as {user}"));
    let refused = text(&refused.expect_err("a read-only session is refused"));
    // Every adapter gives the core's text (bb8's engine recovers it from the pool's timeout).
    assert!(
        refused.contains(
            "target_session_attrs=read-write (PGTARGETSESSIONATTRS) but the server is read-only"
        ),
        "{}: {refused}",
        A::NAME
    );
    A::dispose(&engine).await;
    emulator.stop().await.unwrap();
}
