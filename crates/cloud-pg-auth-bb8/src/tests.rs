//! Unit tests of what is bb8's own, with no server: the pool bb8 is given (no reaper), the
//! timeout that carries its cause, and the manager's answer to a pool clone once the engine
//! is gone. The contract every engine shares is checked by the conformance scenarios.

use std::sync::Arc;
use std::time::Duration;

use cloud_pg_auth::clock::SystemClock;
use cloud_pg_auth::login::REFUSED_LOGIN_SQLSTATES;
// Nothing listens at the offline settings' port: no test here reaches a server.
use cloud_pg_auth::engine::chain_text;
use cloud_pg_auth::testing::{FakeSource, offline_password_settings, offline_settings};
use cloud_pg_auth::{AuthOptions, TokenErrorKind};

use crate::{Error, PooledEngine};

#[tokio::test]
async fn bb8_gets_no_reaper_and_configure_comes_last() {
    let engine = PooledEngine::from_settings(offline_password_settings("s3cret-pw"))
        .await
        .unwrap();
    let config = engine.pool().config();
    // No bb8 reaper: its task would outlive dispose. The manager enforces the lifetime.
    assert_eq!((config.max_lifetime, config.idle_timeout), (None, None));
    assert!(config.test_on_check_out);
    assert_eq!(config.connection_timeout, crate::DEFAULT_CONNECTION_TIMEOUT);
    let text = format!("{engine:#?} {:?}", engine.pool());
    assert!(!text.contains("s3cret-pw"), "{text}");

    let custom = PooledEngine::builder(offline_password_settings("pw"))
        .max_size(3)
        .connection_timeout(Duration::from_secs(2))
        .test_on_check_out(false)
        .configure(|b| b.min_idle(Some(0)))
        .build()
        .await
        .unwrap();
    let config = custom.pool().config();
    assert_eq!(
        (config.max_size, config.min_idle, config.test_on_check_out),
        (3, Some(0), false)
    );
    assert_eq!(config.connection_timeout, Duration::from_secs(2));
}

#[tokio::test]
async fn a_token_failure_is_the_cause_of_the_timeout() {
    let source = FakeSource::new(Arc::new(SystemClock), None);
    let engine = PooledEngine::builder(offline_settings())
        .connection_timeout(Duration::from_secs(1))
        .auth_options(AuthOptions::default().background_refresh(false))
        .token_source(Arc::clone(&source) as _)
        .build()
        .await
        .unwrap();
    // Failing from the first fetch on: nothing was fetched at build without a refresher.
    source.fail(TokenErrorKind::Rejected, None);
    let error = engine.get_owned().await.unwrap_err();
    let Error::Timeout {
        cause: Some(cause), ..
    } = &error
    else {
        panic!("expected a timeout with a cause, got {error:?}");
    };
    assert!(
        matches!(**cause, Error::Auth(cloud_pg_auth::Error::Token(_))),
        "{cause:?}"
    );
    let text = chain_text(&error);
    assert!(
        text.starts_with("no connection within 1s: opening a new connection failed: "),
        "{text}"
    );
    assert!(text.contains("the endpoint is down"), "{text}");
    engine.dispose().await;
}

#[test]
fn a_timeout_says_why_and_is_an_auth_failure_when_its_cause_is() {
    let refused = || cloud_pg_auth::Error::Connect {
        target: "db:5432 as app".into(),
        message: "the server refused the credentials".into(),
        sqlstate: Some(REFUSED_LOGIN_SQLSTATES[0].into()),
        source: "password authentication failed".into(),
    };
    let cases: [(Option<Error>, &str, bool); 3] = [
        (
            None,
            "no connection within 30s; all connections are in use",
            false,
        ),
        (
            Some(Error::from(refused())),
            "no connection within 30s: opening a new connection failed: could not connect",
            true,
        ),
        (
            Some(Error::Expired),
            "no connection within 30s: opening a new connection failed: the connection reached",
            false,
        ),
    ];
    for (cause, text, auth_failure) in cases {
        let error = Error::Timeout {
            waited: Duration::from_secs(30),
            cause: cause.map(Arc::new),
        };
        assert!(chain_text(&error).starts_with(text), "{error}");
        assert_eq!(error.is_auth_failure(), auth_failure, "{error}");
    }
    assert!(Error::from(refused()).is_auth_failure());
}

#[tokio::test]
async fn a_pool_clone_opens_nothing_once_the_engine_is_gone() {
    let settings = offline_password_settings("pw");
    let engine = PooledEngine::builder(settings.clone())
        .build()
        .await
        .unwrap();
    let kept = engine.pool().clone();
    drop(engine);
    assert!(matches!(
        kept.dedicated_connection().await,
        Err(Error::Disposed)
    ));

    let engine = PooledEngine::from_settings(settings).await.unwrap();
    let handler = engine.clone();
    engine.dispose().await;
    // Every way in is shut: the clone's checkouts and the manager behind the pool.
    assert!(matches!(handler.get().await, Err(Error::Disposed)));
    assert!(matches!(handler.get_owned().await, Err(Error::Disposed)));
    let pool = handler.pool();
    assert!(matches!(
        pool.dedicated_connection().await,
        Err(Error::Disposed)
    ));
}
