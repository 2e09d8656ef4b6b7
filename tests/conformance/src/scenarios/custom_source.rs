//! A token source of the caller's with ordinary configuration (issue 13, item 2): settings
//! from the environment or a URL for a host of no known cloud, no `PGAUTH_METHOD`, and a
//! password callback given to the builder. The source decides how to log in; `PGUSER` says
//! as whom.

use std::time::Duration;

use cloud_pg_auth::{AuthMethod, Env, Settings};

use super::{emulator, text};
use crate::{Adapter, EngineOptions, Method};

/// Settings read from an environment map (and from a URL) for the emulator's loopback
/// address, without a method or a password, plus a callback that returns the password role's
/// password: one builder call logs in as `PGUSER`, through the pool and the migration
/// engine. Without `PGUSER` the build fails naming it; without a source it says it cannot
/// tell how to log in.
pub async fn custom_source_with_settings_from_the_environment<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(3600)).await;
    let role = Method::Callback.expected_role(&emulator);
    let env = Method::Callback.env(&emulator);
    assert!(
        !env.iter()
            .any(|(k, _)| k == "PGAUTH_METHOD" || k == "PGPASSWORD")
    );
    let from_env = Settings::from_env_vars(&Env::from_pairs(env.clone()))
        .expect("settings without a method are read; the engine's source decides");
    assert_eq!(from_env.get_method(), AuthMethod::Auto);
    let value = |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let url = format!(
        "postgres://{role}@127.0.0.1:{}/{}?sslmode=verify-full&sslrootcert={}",
        emulator.pg_port(),
        emulator.database(),
        value("PGSSLROOTCERT"),
    );
    let from_url = Settings::from_url(&url).expect("a URL without a password is read");
    let with_source = || EngineOptions {
        token_source: Method::Callback.token_source(&emulator),
        // bb8 retries a failed login until this passes; keep a failing scenario short.
        connection_timeout: Duration::from_secs(5),
        ..EngineOptions::default()
    };

    for (label, settings) in [("env", from_env.clone()), ("url", from_url)] {
        let engine = A::pooled(settings, with_source())
            .await
            .unwrap_or_else(|e| panic!("{} {label}: {}", A::NAME, text(&e)));
        assert_eq!(A::current_user(&engine).await.unwrap(), role, "{label}");
        let status = A::status(&engine);
        assert_eq!(status.auth.method, "callback", "{label}");
        assert!(status.auth.fetch_count >= 1, "{label}");
        A::dispose(&engine).await;
    }
    let migration = A::migration_with_source(from_env.clone(), with_source().token_source)
        .await
        .unwrap_or_else(|e| panic!("{} migration engine: {}", A::NAME, text(&e)));
    assert_eq!(A::migration_status(&migration).auth.method, "callback");
    A::dispose_migration(&migration).await;

    // Without PGUSER the settings still read (the source decides what is needed), and the
    // engine's build names PGUSER.
    let no_user: Vec<_> = env.iter().filter(|(k, _)| k != "PGUSER").cloned().collect();
    let no_user = Settings::from_env_vars(&Env::from_pairs(no_user)).unwrap();
    let error = A::pooled(no_user, with_source())
        .await
        .err()
        .expect("a custom source without PGUSER is refused");
    let message = text(&error);
    assert!(message.contains("PGUSER"), "{}: {message}", A::NAME);

    // Without a source there is nothing to log in with, and the build says what to set.
    let error = A::pooled(from_env, EngineOptions::default())
        .await
        .err()
        .expect("no method and no source is refused");
    let message = text(&error);
    assert!(
        message.contains("PGAUTH_METHOD") && message.contains("cannot tell how to log in"),
        "{}: {message}",
        A::NAME
    );
    emulator.stop().await.unwrap();
}
