//! Through the local emulator (a real PostgreSQL behind a token-checking front), with the
//! password method.

use std::time::Duration;

use cloud_pg_auth::Settings;
use cloud_pg_auth::testing::{on_throwaway_runtime, password_settings_from};
use cloud_pg_auth_diesel_async::diesel;
use cloud_pg_auth_diesel_async::diesel::sql_types::Text;
use cloud_pg_auth_diesel_async::diesel_async::RunQueryDsl;
use cloud_pg_auth_diesel_async::diesel_migrations::{EmbeddedMigrations, embed_migrations};
use cloud_pg_auth_diesel_async::{Error, MigrationEngine, PooledEngine};
use cloud_pg_auth_testkit::{Emulator, EmulatorOptions};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/migrations");

async fn emulator() -> Emulator {
    Emulator::start(EmulatorOptions::default())
        .await
        .expect("the emulator starts")
}

fn password_settings(emulator: &Emulator, password: &str) -> Settings {
    password_settings_from(emulator.env(), emulator.password_role(), password)
}

async fn current_user(engine: &PooledEngine) -> Result<String, Error> {
    let mut connection = engine.get().await?;
    let user = diesel::select(diesel::dsl::sql::<Text>("current_user::text"))
        .get_result::<String>(&mut connection)
        .await?;
    Ok(user)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_login_migrations_status_and_dispose() {
    let emulator = emulator().await;
    let settings = password_settings(&emulator, emulator.password());

    let migrations = MigrationEngine::from_settings(settings.clone())
        .await
        .unwrap();
    let report = migrations.run_migrations(MIGRATIONS).await.unwrap();
    assert_eq!(report.applied_versions(), ["20260101000000"]);
    assert_eq!(report.applied[0].name, "adapter_items");
    assert_eq!(report.already_applied, 0);
    assert!(report.duration >= report.applied[0].duration);
    // A clone shares the credential; the second run finds nothing to do.
    let report = migrations.clone().run_migrations(MIGRATIONS).await.unwrap();
    assert!(report.applied.is_empty());
    assert_eq!(report.already_applied, 1);
    let status = migrations.status();
    assert_eq!(status.connections_opened, 2);
    assert!(status.pool.is_none());
    assert!(
        !status.auth.background_refresh,
        "a migration engine refreshes no token in the background"
    );
    migrations.dispose().await;
    assert!(migrations.is_disposed());
    assert!(matches!(migrations.connect().await, Err(Error::Disposed)));

    let engine = PooledEngine::from_settings(settings).await.unwrap();
    assert_eq!(
        current_user(&engine).await.unwrap(),
        emulator.password_role()
    );
    assert_eq!(
        current_user(&engine).await.unwrap(),
        emulator.password_role()
    );
    let status = engine.status();
    assert_eq!(
        status.connections_opened, 1,
        "the second checkout reuses the first connection"
    );
    assert_eq!(status.auth.method, "password");
    let pool = status.pool.unwrap();
    assert_eq!(
        (pool.max_size, pool.size, pool.idle, pool.waiting),
        (10, 1, 1, 0)
    );

    engine.dispose().await;
    assert!(matches!(engine.get().await, Err(Error::Disposed)));
    assert!(!engine.auth().refresher_running());
    emulator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_reaches_the_caller_with_the_servers_refusal() {
    let emulator = emulator().await;
    let engine = PooledEngine::from_settings(password_settings(&emulator, "not-the-password"))
        .await
        .unwrap();
    let Err(error) = engine.get().await else {
        panic!("a wrong password must fail")
    };
    assert!(error.is_auth_failure(), "{error:?}");
    let text = cloud_pg_auth::engine::chain_text(&error);
    assert!(text.contains("refused the credentials twice"), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
    assert_eq!(engine.status().auth_retries, 1);
    engine.dispose().await;
    emulator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_in_a_throwaway_runtime_leave_the_pool_healthy() {
    let emulator = emulator().await;
    let settings = password_settings(&emulator, emulator.password());
    let engine = PooledEngine::builder(settings.clone())
        .max_lifetime(Duration::from_nanos(1))
        .build()
        .await
        .unwrap();
    assert_eq!(
        current_user(&engine).await.unwrap(),
        emulator.password_role()
    );

    for flavor in ["current_thread", "multi_thread"] {
        let settings = settings.clone();
        let applied = on_throwaway_runtime(flavor == "multi_thread", move || async move {
            let migrations = MigrationEngine::from_settings(settings).await.unwrap();
            let report = migrations.run_migrations(MIGRATIONS).await.unwrap();
            migrations.dispose().await;
            report.applied
        });
        assert_eq!(
            applied.len(),
            usize::from(flavor == "current_thread"),
            "{flavor}"
        );
        // A 1 ns max_lifetime: every checkout opens a new connection on the engine's runtime.
        assert_eq!(
            current_user(&engine).await.unwrap(),
            emulator.password_role()
        );
    }
    assert_eq!(engine.status().connections_opened, 3);
    engine.dispose().await;
    emulator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_notify_works_on_pooled_connections() {
    use futures_util::StreamExt as _;

    let emulator = emulator().await;
    let engine = PooledEngine::from_settings(password_settings(&emulator, emulator.password()))
        .await
        .unwrap();
    let mut listener = engine.get().await.unwrap();
    diesel::sql_query("LISTEN adapter_channel")
        .execute(&mut listener)
        .await
        .unwrap();
    let mut sender = engine.get().await.unwrap();
    diesel::sql_query("NOTIFY adapter_channel, 'hello'")
        .execute(&mut sender)
        .await
        .unwrap();
    let notification = {
        let mut stream = std::pin::pin!(listener.notifications_stream());
        stream.next().await.unwrap().unwrap()
    };
    assert_eq!(
        (notification.channel.as_str(), notification.payload.as_str()),
        ("adapter_channel", "hello")
    );
    drop((listener, sender));
    engine.dispose().await;
    emulator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_of_a_pool_clone_are_not_handed_out_after_the_engine_goes() {
    let emulator = emulator().await;
    let engine = PooledEngine::from_settings(password_settings(&emulator, emulator.password()))
        .await
        .unwrap();
    assert_eq!(
        current_user(&engine).await.unwrap(),
        emulator.password_role()
    );
    let pool = engine.pool().clone();
    let connector = engine.connector().clone();
    assert_eq!(pool.status().available, 1, "one idle connection");
    drop(engine);
    assert!(pool.get().await.is_err(), "the idle connection stays in");
    assert!(matches!(
        connector.connect_raw().await,
        Err(cloud_pg_auth::Error::Disposed)
    ));
    emulator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispose_with_a_leaked_connection_returns_within_its_bound() {
    let emulator = emulator().await;
    let engine = PooledEngine::builder(password_settings(&emulator, emulator.password()))
        .dispose_timeout(Duration::from_millis(100))
        .build()
        .await
        .unwrap();
    let mut leaked = engine.get().await.unwrap();
    // The bound is what ends dispose here; the outer timeout only keeps a regression from
    // hanging the suite.
    tokio::time::timeout(Duration::from_secs(30), engine.dispose())
        .await
        .expect("dispose returns after its dispose_timeout");
    assert!(engine.is_disposed());
    assert!(!engine.auth().refresher_running());
    // The leaked connection still works, and closes when returned.
    diesel::sql_query("SELECT 1")
        .execute(&mut leaked)
        .await
        .unwrap();
    drop(leaked);
    assert_eq!(engine.pool().status().size, 0);
    assert!(matches!(engine.get().await, Err(Error::Disposed)));
    emulator.stop().await.unwrap();
}
