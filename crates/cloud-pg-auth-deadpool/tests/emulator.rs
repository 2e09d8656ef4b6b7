//! End to end through the local emulator (a real PostgreSQL behind it) with the password
//! method: migrations, checkouts, reuse, deadpool's timeouts, max lifetime, auth failures,
//! dispose while connections are out.

use std::time::Duration;

use cloud_pg_auth::Settings;
use cloud_pg_auth::testing::{on_throwaway_runtime, password_settings_from};
use cloud_pg_auth_deadpool::{
    Error, MigrateError, Migration, MigrationEngine, Migrations, PooledEngine,
};
use cloud_pg_auth_testkit::{Emulator, EmulatorOptions, poll_until};

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
        assert_eq!(first.applied[0].name, "create_notes");
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
        // A failing migration is rolled back, the lock released, the next run goes on.
        let broken = Migration::new(2, "broken", "ALTER TABLE notes ADD COLUMN x nosuchtype");
        let refused = engine
            .run_migrations(&Migrations::new([NOTES, broken]).unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(
                refused,
                Error::Migrate(MigrateError::Migration { version: 2, .. })
            ),
            "{refused}"
        );
        assert!(
            cloud_pg_auth::engine::chain_text(&refused).contains("nosuchtype"),
            "{refused}"
        );
        // Two runs at once: the advisory lock lets one apply the migration.
        let fixed = Migration::new(2, "fixed", "ALTER TABLE notes ADD COLUMN x integer");
        let both = Migrations::new([NOTES, fixed]).unwrap();
        let (a, b) = tokio::join!(engine.run_migrations(&both), engine.run_migrations(&both));
        assert_eq!(a.unwrap().applied.len() + b.unwrap().applied.len(), 1);
        assert_eq!(engine.status().connections_opened, 6);
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
        let client = engine.get().await.unwrap();
        let row = client
            .query_one(
                "INSERT INTO notes (body) VALUES ($1) RETURNING id",
                &[&"hello"],
            )
            .await
            .unwrap();
        let id: i64 = row.get(0);
        let statement = client
            .prepare_cached("SELECT body FROM notes WHERE id = $1")
            .await
            .unwrap();
        let body: String = client.query_one(&statement, &[&id]).await.unwrap().get(0);
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
        // Only the wait is short, so a slow machine cannot turn this into a connect timeout.
        .configure(|b| b.create_timeout(Some(Duration::from_secs(30))))
        .build()
        .await
        .unwrap();
    let first = busy.get().await.unwrap();
    let error = busy.get().await.unwrap_err();
    assert!(
        error.to_string().contains("waiting for a free connection"),
        "{error}"
    );
    drop(first);
    busy.dispose().await;

    // Dispose with connections checked out: the pool closes at once, dispose waits until
    // they come back (they are dropped then).
    let disposing = tokio::spawn({
        let engine = engine.clone();
        async move { engine.dispose().await }
    });
    poll_until("the pool is closed", Duration::from_secs(10), async || {
        engine.pool().is_closed()
    })
    .await;
    assert!(matches!(engine.get().await, Err(Error::Disposed)));
    assert_eq!(engine.pool().status().size, 2);
    assert!(!disposing.is_finished(), "dispose did not wait");
    drop(held);
    disposing.await.unwrap();
    assert_eq!(engine.pool().status().size, 0);

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

    // A refused login is retried once, then reaches the caller with the server's reason.
    let wrong = PooledEngine::from_settings(settings(&emulator, "not-the-password"))
        .await
        .unwrap();
    let error = wrong.get().await.unwrap_err();
    assert!(error.is_auth_failure(), "{error:?}");
    let text = cloud_pg_auth::engine::chain_text(&error);
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
    assert_eq!(wrong.status().auth_retries, 1);
    wrong.dispose().await;

    emulator.stop().await.unwrap();
}
