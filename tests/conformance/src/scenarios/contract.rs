//! The engine contract every adapter shares (issue 12): what dropping or disposing an engine
//! does to its credential and pool, which pool options every builder refuses, and the one
//! migration report.

use std::sync::atomic::Ordering;
use std::time::Duration;

use cloud_pg_auth::AuthMethod;

use super::{DropRecorder, PATIENCE, emulator, poll_until, text};
use crate::{Adapter, EngineOptions, Method};

/// Dropping the last engine handle while the application still holds a clone of the pool
/// and of the `Auth`: the refresher stops, the credential is dropped, and a login through the
/// pool clone, which worked while the engine lived, fails instead of using a credential
/// nobody owns.
pub async fn drop_with_pool_and_auth_clones_stops_the_refresher<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(3600)).await;
    let (source, dropped) = DropRecorder::new(emulator.password());
    let settings = Method::Password
        .settings(&emulator)
        .without_password()
        .method(AuthMethod::Auto)
        .for_custom_source();
    let options = EngineOptions {
        token_source: Some(source),
        // bb8 retries a failed login until this passes; keep the scenario short.
        connection_timeout: Duration::from_secs(2),
        ..EngineOptions::default()
    };
    let engine = A::pooled(settings, options).await.unwrap();
    let role = emulator.password_role().to_string();
    let pool = A::pool(&engine);
    let auth = A::auth(&engine);
    assert_eq!(A::current_user_through_pool(&pool).await.unwrap(), role);
    assert!(auth.refresher_running());
    // A clone of the engine keeps everything alive...
    let other = engine.clone();
    drop(engine);
    assert!(auth.refresher_running(), "another engine handle lives");
    assert!(!A::is_disposed(&other));
    assert_eq!(A::current_user_through_pool(&pool).await.unwrap(), role);
    // ...the last one does not, whatever else the application holds.
    drop(other);
    poll_until("the refresher stops", PATIENCE, async || {
        !auth.refresher_running()
    })
    .await;
    poll_until("the credential is dropped", PATIENCE, async || {
        dropped.load(Ordering::SeqCst)
    })
    .await;
    let error = auth.token().await.unwrap_err();
    assert!(
        error.to_string().contains("disposed"),
        "{}: the Auth clone refuses: {error}",
        A::NAME
    );
    let error = A::current_user_through_pool(&pool)
        .await
        .expect_err("a login through the pool clone fails");
    let message = text(&error);
    let named = message.contains("disposed") || message.contains("closed");
    assert!(
        named || (A::POOL_HIDES_LOGIN_ERRORS && message.contains("imed out")),
        "{}: the pool clone fails because the engine is gone: {message}",
        A::NAME
    );
    emulator.stop().await.unwrap();
}

/// `dispose()` with a connection checked out and never returned (a leak) still returns,
/// bounded by the dispose timeout, and leaves the engine disposed.
pub async fn dispose_with_a_leaked_connection_returns<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(3600)).await;
    let settings = Method::Password.settings(&emulator);
    let options = EngineOptions {
        dispose_timeout: Duration::from_millis(200),
        ..EngineOptions::default()
    };
    let engine = A::pooled(settings, options).await.unwrap();
    let mut leaked = A::hold(&engine).await.unwrap();
    A::select_one(&mut leaked).await.unwrap();
    // The guard only catches a hang; how long dispose takes is not the point.
    tokio::time::timeout(PATIENCE, A::dispose(&engine))
        .await
        .unwrap_or_else(|_| panic!("{}: dispose() waited past its bound", A::NAME));
    assert!(A::is_disposed(&engine));
    assert!(!A::auth(&engine).refresher_running());
    let error = A::current_user(&engine).await.unwrap_err();
    assert!(text(&error).contains("disposed"), "{}", text(&error));
    // Idempotent, and still bounded with the connection out.
    tokio::time::timeout(PATIENCE, A::dispose(&engine))
        .await
        .unwrap_or_else(|_| panic!("{}: a second dispose() hung", A::NAME));
    drop(leaked);
    emulator.stop().await.unwrap();
}

/// Every builder refuses pool options the pool libraries would misbehave with, naming the
/// builder method to change, and a lifetime Aurora DSQL would cut short; migration engines
/// refuse DSQL.
pub async fn pool_options_are_checked<A: Adapter>() {
    let refused = [
        (
            "max_size",
            EngineOptions {
                max_size: 0,
                ..EngineOptions::default()
            },
        ),
        (
            "max_lifetime",
            EngineOptions {
                max_lifetime: Some(Duration::ZERO),
                ..EngineOptions::default()
            },
        ),
        (
            "connection_timeout",
            EngineOptions {
                connection_timeout: Duration::ZERO,
                ..EngineOptions::default()
            },
        ),
    ];
    for (setting, options) in refused {
        let settings = cloud_pg_auth::testing::offline_password_settings("hunter2");
        match A::pooled(settings, options).await {
            Ok(_) => panic!("{}: {setting} was accepted", A::NAME),
            Err(e) => assert!(text(&e).contains(setting), "{}: {}", A::NAME, text(&e)),
        }
    }
    // No lifetime limit at all is allowed.
    let options = EngineOptions {
        max_lifetime: None,
        ..EngineOptions::default()
    };
    let settings = cloud_pg_auth::testing::offline_password_settings("hunter2");
    let engine = A::pooled(settings, options).await.unwrap();
    A::dispose(&engine).await;

    // Aurora DSQL closes connections after an hour: a pool that keeps them longer, or
    // forever, is refused by name; and migration engines refuse DSQL (no advisory locks).
    let emulator = emulator(Duration::from_secs(3600)).await;
    for max_lifetime in [None, Some(Duration::from_secs(3600))] {
        let options = EngineOptions {
            max_lifetime,
            ..EngineOptions::default()
        };
        match A::pooled(Method::AwsDsql.settings(&emulator), options).await {
            Ok(_) => panic!("{}: dsql with max_lifetime {max_lifetime:?}", A::NAME),
            Err(e) => {
                let text = text(&e);
                assert!(
                    text.contains("max_lifetime") && text.contains("aurora dsql"),
                    "{}: {text}",
                    A::NAME
                );
            }
        }
    }
    match A::migration(Method::AwsDsql.settings(&emulator)).await {
        Ok(_) => panic!("{}: a dsql migration engine was built", A::NAME),
        Err(e) => assert!(
            text(&e).contains("aurora dsql has no advisory locks"),
            "{}: {}",
            A::NAME,
            text(&e)
        ),
    }
}

/// The migration report has one shape in every adapter: the migration applied (version and
/// name) with its duration on the first run, nothing applied and the count of earlier ones on
/// the second.
pub async fn migration_report_has_one_shape<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(3600)).await;
    let db = format!("report_{}", A::NAME.replace(['-', '.'], "_"));
    let settings = Method::Password
        .settings_in_new_database(&emulator, &db)
        .await
        .unwrap();
    let migration = A::migration(settings).await.unwrap();
    let first = A::migrate(&migration)
        .await
        .unwrap_or_else(|e| panic!("{}", text(&e)));
    assert_eq!(first.applied.len(), 1, "{}: {first:?}", A::NAME);
    assert_eq!(first.already_applied, 0, "{}: {first:?}", A::NAME);
    let applied = &first.applied[0];
    assert!(!applied.version.is_empty(), "{}: {first:?}", A::NAME);
    assert!(
        applied.name.contains("conformance_items") || applied.name.contains("conformance items"),
        "{}: the name, not the file: {first:?}",
        A::NAME
    );
    assert!(
        applied.duration <= first.duration,
        "{}: the run includes the migration: {first:?}",
        A::NAME
    );
    assert_eq!(
        first.applied_versions(),
        vec![applied.version.as_str()],
        "{}",
        A::NAME
    );
    let again = A::migrate(&migration).await.unwrap();
    assert!(again.applied.is_empty(), "{}: {again:?}", A::NAME);
    assert_eq!(again.already_applied, 1, "{}: {again:?}", A::NAME);
    A::dispose_migration(&migration).await;
    emulator.stop().await.unwrap();
}
