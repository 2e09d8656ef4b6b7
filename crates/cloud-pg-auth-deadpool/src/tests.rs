//! Unit tests of what is deadpool's own, with no server: how the builder sets deadpool up,
//! how pool errors map, and what a pool clone does once the engine is gone. The contract
//! every engine shares is checked by the conformance scenarios.

use std::sync::Arc;
use std::time::Duration;

use cloud_pg_auth::clock::SystemClock;
// Nothing listens at the offline settings' port: no test here reaches a server.
use cloud_pg_auth::engine::chain_text;
use cloud_pg_auth::testing::{FakeSource, offline_password_settings, offline_settings};
use cloud_pg_auth::{AuthOptions, TokenErrorKind};
use deadpool::managed::{HookError, Manager as _, PoolError, TimeoutType, Timeouts};

use crate::{Error, PooledEngine, RecyclingMethod};

#[tokio::test]
async fn the_builder_sets_up_deadpool_and_configure_comes_last() {
    let engine = PooledEngine::from_settings(offline_password_settings("s3cret-pw"))
        .await
        .unwrap();
    let manager = engine.pool().manager();
    assert_eq!(manager.max_lifetime(), Some(crate::DEFAULT_MAX_LIFETIME));
    assert!(matches!(
        manager.recycling_method(),
        RecyclingMethod::Verified
    ));
    let timeouts = engine.pool().timeouts();
    for timeout in [timeouts.wait, timeouts.create, timeouts.recycle] {
        assert_eq!(timeout, Some(crate::DEFAULT_CONNECTION_TIMEOUT));
    }
    let text = format!("{engine:?} {manager:?}");
    assert!(!text.contains("s3cret-pw"), "{text}");

    let custom = PooledEngine::builder(offline_password_settings("pw"))
        .max_size(3)
        .max_lifetime(None)
        .connection_timeout(Duration::from_secs(2))
        .recycling_method(RecyclingMethod::Fast)
        .configure(|b| b.wait_timeout(Some(Duration::from_secs(1))))
        .build()
        .await
        .unwrap();
    let pool = custom.pool();
    assert_eq!(pool.manager().max_lifetime(), None);
    assert!(matches!(
        pool.manager().recycling_method(),
        RecyclingMethod::Fast
    ));
    assert_eq!(pool.status().max_size, 3);
    let timeouts = pool.timeouts();
    assert_eq!(
        (timeouts.wait, timeouts.create),
        (Some(Duration::from_secs(1)), Some(Duration::from_secs(2)))
    );
    let text = format!(
        "{:?}",
        PooledEngine::builder(offline_password_settings("s3cret-pw"))
    );
    assert!(!text.contains("s3cret-pw"), "{text}");
}

#[test]
fn pool_errors_map_to_this_crates_errors_with_the_pools_own_timeouts() {
    let timeouts = Timeouts {
        wait: Some(Duration::from_secs(7)),
        create: Some(Duration::from_secs(8)),
        recycle: None,
    };
    let cases: Vec<(PoolError<Error>, &str)> = vec![
        (
            PoolError::Timeout(TimeoutType::Wait),
            "timed out after 7s waiting for a free connection",
        ),
        (
            PoolError::Timeout(TimeoutType::Create),
            "timed out after 8s opening a new connection",
        ),
        (
            PoolError::Timeout(TimeoutType::Recycle),
            "timed out after 0ns checking an idle connection",
        ),
        (
            PoolError::Closed,
            "the engine was disposed; create a new one",
        ),
        (
            PoolError::Backend(Error::Disposed),
            "the engine was disposed; create a new one",
        ),
        (
            PoolError::PostCreateHook(HookError::message("no schema")),
            "a pool hook failed: no schema",
        ),
        (PoolError::NoRuntimeSpecified, "could not build the pool"),
    ];
    for (pool_error, expected) in cases {
        let error = Error::from_pool(pool_error, &timeouts);
        let text = chain_text(&error);
        assert!(text.starts_with(expected), "{text}");
        assert!(!error.is_auth_failure());
    }
}

#[tokio::test]
async fn a_pool_clone_is_closed_and_opens_nothing_once_the_engine_is_gone() {
    let dropped = PooledEngine::from_settings(offline_password_settings("pw"))
        .await
        .unwrap();
    let disposed = dropped.clone();
    disposed.dispose().await;
    assert!(dropped.is_disposed(), "clones share one lifecycle");

    let engine = PooledEngine::from_settings(offline_password_settings("pw"))
        .await
        .unwrap();
    let kept = engine.pool().clone();
    drop(engine);
    for pool in [disposed.pool(), &kept] {
        assert!(pool.is_closed());
        assert!(matches!(pool.get().await, Err(PoolError::Closed)));
        assert!(matches!(
            pool.manager().create().await,
            Err(Error::Disposed)
        ));
    }
    assert!(matches!(disposed.get().await, Err(Error::Disposed)));
}

#[tokio::test]
async fn a_token_failure_reaches_the_caller_of_get_with_its_cause() {
    let source = FakeSource::new(Arc::new(SystemClock), None);
    source.fail(TokenErrorKind::Rejected, None);
    let engine = PooledEngine::builder(offline_settings())
        .token_source(source)
        .auth_options(AuthOptions::default().background_refresh(false))
        .build()
        .await
        .unwrap();
    let error = engine.get().await.unwrap_err();
    assert!(
        matches!(error, Error::Auth(cloud_pg_auth::Error::Token(_))),
        "{error:?}"
    );
    let text = chain_text(&error);
    assert!(text.contains("the endpoint is down"), "{text}");
    engine.dispose().await;
}
