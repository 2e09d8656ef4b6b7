//! Unit tests that need no server: defaults, Debug, dispose, error causes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cloud_pg_auth::clock::SystemClock;
// Nothing listens at the offline settings' port: no test here reaches a server.
use cloud_pg_auth::testing::{FakeSource, offline_password_settings, offline_settings as settings};
use cloud_pg_auth::{Settings, TokenErrorKind, chain_text};
use deadpool::managed::{HookError, PoolError, TimeoutType};

use crate::{Error, MigrationEngine, PooledEngine, RecyclingMethod};

fn password_settings() -> Settings {
    offline_password_settings("s3cret-pw")
}

fn fake() -> Arc<FakeSource> {
    FakeSource::new(Arc::new(SystemClock), None)
}

#[tokio::test]
async fn builder_defaults() {
    let engine = PooledEngine::from_settings(password_settings())
        .await
        .unwrap();
    let manager = engine.pool().manager();
    assert_eq!(manager.max_lifetime(), Some(Duration::from_secs(55 * 60)));
    assert!(matches!(
        manager.recycling_method(),
        RecyclingMethod::Verified
    ));
    assert_eq!(engine.pool().status().max_size, 10);
    let timeouts = engine.pool().timeouts();
    for timeout in [timeouts.wait, timeouts.create, timeouts.recycle] {
        assert_eq!(timeout, Some(Duration::from_secs(30)));
    }
    assert!(engine.auth().refresher_running());
    let status = engine.status();
    assert_eq!(status.auth.method, "password");
    assert_eq!(status.connections_opened, 0);
    assert_eq!(status.pool.unwrap().max_size, 10);

    let custom = PooledEngine::builder(password_settings())
        .max_size(3)
        .max_lifetime(None)
        .connection_timeout(Duration::from_secs(2))
        .recycling_method(RecyclingMethod::Fast)
        .configure(|b| b.wait_timeout(Some(Duration::from_secs(1))))
        .build()
        .await
        .unwrap();
    assert_eq!(custom.pool().manager().max_lifetime(), None);
    assert_eq!(custom.pool().status().max_size, 3);
    assert_eq!(custom.pool().timeouts().wait, Some(Duration::from_secs(1)));
    assert_eq!(
        custom.pool().timeouts().create,
        Some(Duration::from_secs(2))
    );
    engine.dispose().await;
    custom.dispose().await;
}

#[tokio::test]
async fn debug_never_shows_the_password_or_token() {
    let source = fake();
    let pooled = PooledEngine::builder(settings())
        .token_source(source.clone())
        .build()
        .await
        .unwrap();
    let token = pooled.auth().token().await.unwrap();
    assert_eq!(token.secret().expose(), "fake-token-1");
    let password = PooledEngine::from_settings(password_settings())
        .await
        .unwrap();
    let migration = MigrationEngine::from_settings(password_settings())
        .await
        .unwrap();
    let texts = [
        format!("{pooled:?}"),
        format!("{:?}", pooled.pool()),
        format!("{password:?}"),
        format!("{password:#?}"),
        format!("{migration:?}"),
        format!("{:?}", PooledEngine::builder(password_settings())),
        format!("{:?}", MigrationEngine::builder(password_settings())),
    ];
    for text in &texts {
        assert!(!text.contains("s3cret-pw"), "{text}");
        assert!(!text.contains("fake-token"), "{text}");
    }
    assert!(texts[0].contains("PooledEngine"));
    pooled.dispose().await;
    password.dispose().await;
    migration.dispose().await;
}

#[tokio::test]
async fn dispose_drops_the_credential_and_refuses_checkouts() {
    let source = fake();
    let dropped = source.drop_flag();
    let engine = PooledEngine::builder(settings())
        .token_source(source.clone())
        .build()
        .await
        .unwrap();
    engine.auth().token().await.unwrap();
    drop(source);
    assert!(!dropped.load(Ordering::SeqCst));
    assert!(engine.auth().refresher_running());

    engine.dispose().await;
    assert!(
        dropped.load(Ordering::SeqCst),
        "the token source outlived dispose"
    );
    assert!(!engine.auth().refresher_running());
    assert!(engine.pool().is_closed());
    assert!(matches!(engine.get().await, Err(Error::Disposed)));
    // Status still answers, from the last state before dispose.
    assert_eq!(engine.status().auth.fetch_count, 1);
    engine.dispose().await;
}

#[tokio::test]
async fn dropping_an_engine_drops_its_credential() {
    let source = fake();
    let dropped = source.drop_flag();
    let engine = PooledEngine::builder(settings())
        .token_source(source)
        .build()
        .await
        .unwrap();
    engine.auth().token().await.unwrap();
    drop(engine);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the pool kept the credential alive"
    );

    let source = fake();
    let dropped = source.drop_flag();
    let migration = MigrationEngine::builder(settings())
        .token_source(source)
        .build()
        .await
        .unwrap();
    assert!(
        !migration.auth().refresher_running(),
        "a migration engine refreshes in the background"
    );
    migration.dispose().await;
    assert!(dropped.load(Ordering::SeqCst));
    assert!(matches!(migration.connect().await, Err(Error::Disposed)));
}

#[tokio::test]
async fn a_token_failure_reaches_the_caller_with_its_cause() {
    let source = fake();
    source.fail(TokenErrorKind::Rejected, None);
    let engine = PooledEngine::builder(settings())
        .token_source(source)
        .auth_options(cloud_pg_auth::AuthOptions::default().background_refresh(false))
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
    assert!(text.contains("connection refused"), "{text}");
    engine.dispose().await;
}

#[test]
fn pool_errors_map_to_this_crates_errors() {
    let waited = Duration::from_secs(7);
    let cases: Vec<(PoolError<Error>, &str)> = vec![
        (
            PoolError::Timeout(TimeoutType::Wait),
            "timed out after 7s waiting for a free connection",
        ),
        (
            PoolError::Timeout(TimeoutType::Create),
            "timed out after 7s opening a new connection",
        ),
        (
            PoolError::Timeout(TimeoutType::Recycle),
            "timed out after 7s checking an idle connection",
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
        let text = chain_text(&Error::from_pool(pool_error, waited));
        assert!(text.starts_with(expected), "{text}");
    }
    assert!(matches!(
        Error::from(cloud_pg_auth::Error::Disposed),
        Error::Disposed
    ));
    let config = Error::from(cloud_pg_auth::ConfigError::new(
        "PGHOST",
        "no server host; set PGHOST",
    ));
    assert_eq!(config.to_string(), "PGHOST: no server host; set PGHOST");
    assert!(!config.is_auth_failure());
}

#[tokio::test]
async fn the_builder_refuses_values_the_pool_cannot_use() {
    let cases: [(usize, Option<Duration>, &str); 2] = [
        (
            0,
            Some(Duration::from_secs(60)),
            "max_size: must be at least 1",
        ),
        (
            1,
            Some(Duration::ZERO),
            "max_lifetime: must be more than zero",
        ),
    ];
    for (max_size, max_lifetime, expected) in cases {
        let error = PooledEngine::builder(password_settings())
            .max_size(max_size)
            .max_lifetime(max_lifetime)
            .build()
            .await
            .unwrap_err();
        assert!(error.to_string().starts_with(expected), "{error}");
    }
}
