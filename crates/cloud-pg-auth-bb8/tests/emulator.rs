//! End to end through the local emulator (a real PostgreSQL behind it) with the password
//! method: migrations, checkouts, reuse, max lifetime, auth failures, dispose.

use std::time::Duration;

use cloud_pg_auth::Settings;
use cloud_pg_auth::testing::{on_throwaway_runtime, password_settings_from};
use cloud_pg_auth_bb8::{
    Error, MigrateError, Migration, MigrationEngine, Migrations, PooledEngine,
};
use cloud_pg_auth_testkit::{Emulator, EmulatorOptions};

fn settings(emulator: &Emulator, password: &str) -> Settings {
    password_settings_from(emulator.env(), emulator.password_role(), password)
}

const NOTES: Migration = Migration::new(
    1,
    "create_notes",
    "CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL)",
);

async fn current_user(engine: &PooledEngine) -> String {
    let client = engine.get().await.unwrap();
    client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_method_end_to_end() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let good = settings(&emulator, emulator.password());

    // Migrations in a short-lived runtime of their own, as an application's start-up would.
    let migrate_settings = good.clone();
    let applied = on_throwaway_runtime(false, move || async move {
        let engine = MigrationEngine::from_settings(migrate_settings)
            .await
            .unwrap();
        let migrations = Migrations::new([NOTES]).unwrap();
        let first = engine.run_migrations(&migrations).await.unwrap();
        let second = engine.run_migrations(&migrations).await.unwrap();
        let edited = Migrations::new([Migration::new(1, "create_notes", "SELECT 1")]).unwrap();
        let refused = engine.run_migrations(&edited).await.unwrap_err();
        assert!(
            matches!(
                refused,
                Error::Migrate(MigrateError::ChecksumMismatch { version: 1, .. })
            ),
            "{refused}"
        );
        assert_eq!(engine.status().connections_opened, 3);
        assert!(engine.status().pool.is_none());
        engine.dispose().await;
        (
            first.applied.len(),
            second.applied.len(),
            second.already_applied,
        )
    });
    assert_eq!(applied, (1, 0, 1));

    let engine = PooledEngine::builder(good.clone())
        .max_size(2)
        .build()
        .await
        .unwrap();
    assert_eq!(current_user(&engine).await, emulator.password_role());
    {
        let mut client = engine.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let row = tx
            .query_one(
                "INSERT INTO notes (body) VALUES ($1) RETURNING id",
                &[&"hello"],
            )
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let id: i64 = row.get(0);
        let body: String = client
            .query_one("SELECT body FROM notes WHERE id = $1", &[&id])
            .await
            .unwrap()
            .get(0);
        assert_eq!(body, "hello");
    }
    let status = engine.status();
    assert_eq!(
        status.connections_opened, 1,
        "the idle connection was not reused"
    );
    let pool = status.pool.unwrap();
    assert_eq!((pool.max_size, pool.size, pool.idle), (2, 1, 1));

    // All connections busy: a timeout that says so.
    let held = [engine.get().await.unwrap(), engine.get().await.unwrap()];
    let busy = PooledEngine::builder(good.clone())
        .max_size(1)
        .connection_timeout(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    // Opened outside the timeout, so a slow machine cannot turn this into a connect timeout.
    let opened = busy.pool().dedicated_connection().await.unwrap();
    busy.pool().add(opened).unwrap();
    let first = busy.get().await.unwrap();
    let error = busy.get().await.unwrap_err();
    assert!(
        matches!(error, Error::Timeout { cause: None, .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("all connections are in use"),
        "{error}"
    );
    drop(first);
    busy.dispose().await;

    // Dispose with connections checked out and one idle: the idle one goes at once, the
    // others when they come back.
    drop(held);
    let held = engine.get().await.unwrap();
    assert_eq!(
        (
            engine.pool().state().connections,
            engine.pool().state().idle_connections
        ),
        (2, 1)
    );
    engine.dispose().await;
    assert_eq!(engine.pool().state().connections, 1);
    drop(held);
    assert_eq!(engine.pool().state().connections, 0);
    assert!(matches!(engine.get().await, Err(Error::Disposed)));

    // A max lifetime shorter than any checkout: every checkout opens a new connection.
    let short = PooledEngine::builder(good.clone())
        .max_lifetime(Duration::from_nanos(1))
        .build()
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(current_user(&short).await, emulator.password_role());
    }
    assert_eq!(short.status().connections_opened, 3);
    short.dispose().await;

    // A refused login is retried once per attempt; bb8 keeps trying until the timeout, and
    // the caller gets the server's reason as the cause, not a bare timeout.
    let wrong = PooledEngine::builder(settings(&emulator, "not-the-password"))
        .connection_timeout(Duration::from_secs(3))
        .build()
        .await
        .unwrap();
    let error = wrong.get().await.unwrap_err();
    assert!(
        matches!(error, Error::Timeout { cause: Some(_), .. }),
        "{error:?}"
    );
    assert!(error.is_auth_failure(), "{error:?}");
    let text = cloud_pg_auth::chain_text(&error);
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
    assert!(wrong.status().auth_retries >= 1);
    wrong.dispose().await;

    emulator.stop().await.unwrap();
}
