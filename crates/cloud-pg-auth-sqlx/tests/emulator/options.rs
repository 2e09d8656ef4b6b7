//! A caller's sqlx options through the engine, against the emulator: their `after_connect`
//! runs after the engine's hook, their base `PgConnectOptions` keep their non-routing fields.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::adapter::{Error, PooledEngine, sqlx};
use super::cases::{emulator, settings};
use sqlx::Connection as _;
use sqlx::postgres::PgConnectOptions;

/// How many statements sqlx keeps prepared in its cache after running one statement with a
/// parameter twice on a new connection.
async fn cached_statements(engine: &PooledEngine) -> usize {
    let mut connection = engine.get().await.unwrap();
    for _ in 0..2 {
        let one: i32 = sqlx::query_scalar("SELECT $1::int4")
            .bind(1_i32)
            .fetch_one(&mut *connection)
            .await
            .unwrap();
        assert_eq!(one, 1);
    }
    connection.cached_statements_size()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_base_options_keep_their_fields_but_not_the_route() {
    let emulator = emulator().await;
    // Routing fields pointing elsewhere: the settings' win.
    let base = PgConnectOptions::new_without_pgpass()
        .host("elsewhere.invalid")
        .port(1)
        .username("someone-else")
        .password("not-this-one")
        .database("nowhere")
        .statement_cache_capacity(0)
        .application_name("from-base")
        .options([("search_path", "pgauth_base")]);
    let engine = PooledEngine::builder(settings(&emulator))
        .connect_options(base)
        .build()
        .await
        .unwrap();
    assert_eq!(cached_statements(&engine).await, 0, "statement cache off");
    let mut connection = engine.get().await.unwrap();
    let (user, path, app): (String, String, String) = sqlx::query_as(
        "SELECT current_user::text, current_setting('search_path'), current_setting('application_name')",
    )
    .fetch_one(&mut *connection)
    .await
    .unwrap();
    assert_eq!(user, emulator.password_role());
    assert_eq!(path, "pgauth_base");
    assert_eq!(app, "from-base");
    drop(connection);
    engine.dispose().await;

    // Without a base, sqlx's default cache names the statement.
    let engine = PooledEngine::from_settings(settings(&emulator))
        .await
        .unwrap();
    assert_eq!(cached_statements(&engine).await, 1, "statement cache on");
    engine.dispose().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_after_connect_runs_after_the_engines_and_its_error_fails_the_checkout() {
    let emulator = emulator().await;
    let hooked = Arc::new(AtomicU64::new(0));
    let engine = PooledEngine::builder(settings(&emulator))
        .configure(|options| {
            // Replaced by the engine's hook, which runs the builder's.
            options.after_connect(|_, _| Box::pin(async { panic!("replaced") }))
        })
        .after_connect({
            let hooked = Arc::clone(&hooked);
            move |connection, _| {
                let hooked = Arc::clone(&hooked);
                Box::pin(async move {
                    hooked.fetch_add(1, Ordering::SeqCst);
                    sqlx::query("SET application_name = 'hooked'")
                        .execute(connection)
                        .await?;
                    Ok(())
                })
            }
        })
        .build()
        .await
        .unwrap();
    let mut connection = engine.get().await.unwrap();
    let app: String = sqlx::query_scalar("SELECT current_setting('application_name')")
        .fetch_one(&mut *connection)
        .await
        .unwrap();
    assert_eq!(app, "hooked");
    assert_eq!(hooked.load(Ordering::SeqCst), 1);
    assert_eq!(
        engine.status().connections_opened,
        1,
        "the engine's hook ran too"
    );
    drop(connection);
    engine.dispose().await;

    let engine = PooledEngine::builder(settings(&emulator))
        .connection_timeout(Duration::from_millis(500))
        .after_connect(|_, _| {
            Box::pin(async { Err(sqlx::Error::Protocol("refused by the hook".into())) })
        })
        .build()
        .await
        .unwrap();
    let error = engine.get().await.err().unwrap();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    engine.dispose().await;
}
