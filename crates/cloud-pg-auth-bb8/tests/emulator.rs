//! bb8's own behaviour through the local emulator (a real PostgreSQL behind it), password
//! method: reuse, timeouts with and without a cause, the manager's max lifetime, and the
//! idle-connection drain that stands in for bb8's missing `close()`. Migrations and the
//! engine contract are the conformance scenarios' job.

use std::time::Duration;

use cloud_pg_auth::testing::password_settings_from;
use cloud_pg_auth_bb8::{Error, Pool, PooledEngine};
use cloud_pg_auth_testkit::{Emulator, EmulatorOptions, poll_until};

/// (connections, idle) of a bb8 pool.
fn counts(pool: &Pool) -> (u32, u32) {
    let state = pool.state();
    (state.connections, state.idle_connections)
}

async fn wait_for(pool: &Pool, what: &str, expected: (u32, u32)) {
    poll_until(what, Duration::from_secs(10), async || {
        counts(pool) == expected
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bb8_pool_end_to_end() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let role = emulator.password_role().to_string();
    let good = password_settings_from(emulator.env(), &role, emulator.password());

    let engine = PooledEngine::builder(good.clone())
        .max_size(2)
        .build()
        .await
        .unwrap();
    for _ in 0..2 {
        let mut client = engine.get().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let row = tx
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(row.get::<_, String>(0), role);
    }
    assert_eq!(engine.status().connections_opened, 1, "no reuse");
    assert_eq!(counts(engine.pool()), (1, 1));

    // All connections busy: a timeout with no cause, saying so.
    let busy = PooledEngine::builder(good.clone())
        .max_size(1)
        .connection_timeout(Duration::from_secs(1))
        .build()
        .await
        .unwrap();
    // Opened outside the timeout, so a slow machine cannot turn this into a connect timeout.
    let opened = busy.pool().dedicated_connection().await.unwrap();
    busy.pool().add(opened).unwrap();
    let first = busy.get_owned().await.unwrap();
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

    // Dispose with one connection out and one idle: the idle one goes at once, dispose waits
    // for the other, and a pool clone opens nothing meanwhile.
    let held = engine.get_owned().await.unwrap();
    drop(engine.get().await.unwrap());
    assert_eq!(counts(engine.pool()), (2, 1));
    let kept = engine.pool().clone();
    let disposing = tokio::spawn({
        let engine = engine.clone();
        async move { engine.dispose().await }
    });
    wait_for(&kept, "the idle connection is drained", (1, 0)).await;
    assert!(matches!(
        kept.dedicated_connection().await,
        Err(Error::Disposed)
    ));
    assert!(!disposing.is_finished(), "dispose did not wait");
    drop(held);
    disposing.await.unwrap();
    assert_eq!(counts(&kept), (0, 0));

    // The last engine handle dropped while the app keeps the pool: its idle connection is
    // drained soon after, and none is handed out.
    let dropped = PooledEngine::from_settings(good.clone()).await.unwrap();
    drop(dropped.get().await.unwrap());
    let kept = dropped.pool().clone();
    assert_eq!(counts(&kept), (1, 1));
    drop(dropped);
    wait_for(
        &kept,
        "the dropped engine's idle connection is drained",
        (0, 0),
    )
    .await;

    // A max lifetime shorter than any checkout: the manager retires each connection.
    let short = PooledEngine::builder(good)
        .max_lifetime(Duration::from_nanos(1))
        .build()
        .await
        .unwrap();
    for _ in 0..3 {
        let client = short.get().await.unwrap();
        client.simple_query("").await.unwrap();
    }
    assert_eq!(short.status().connections_opened, 3);
    short.dispose().await;

    // A refused login is retried once per attempt; bb8 keeps trying until the timeout, and
    // the caller gets the server's reason as the cause, not a bare timeout.
    let wrong = PooledEngine::builder(password_settings_from(
        emulator.env(),
        &role,
        "not-the-password",
    ))
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
    let text = cloud_pg_auth::engine::chain_text(&error);
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
    assert!(wrong.status().auth_retries >= 1);
    wrong.dispose().await;

    emulator.stop().await.unwrap();
}
