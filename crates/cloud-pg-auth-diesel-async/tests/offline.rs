//! Without a server: defaults, secrets kept out of Debug and errors, dispose and drop.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cloud_pg_auth::clock::ManualClock;
use cloud_pg_auth::engine::chain_text;
use cloud_pg_auth::testing::{FakeSource, offline_password_settings};
use cloud_pg_auth::{AuthOptions, Settings, SslMode, TokenErrorKind};
use cloud_pg_auth_diesel_async::diesel_migrations::EmbeddedMigrations;
use cloud_pg_auth_diesel_async::{
    DEFAULT_CONNECTION_TIMEOUT, DEFAULT_DISPOSE_TIMEOUT, DEFAULT_MAX_LIFETIME, DEFAULT_MAX_SIZE,
    Error, MigrationEngine, PooledEngine,
};

const PASSWORD: &str = "hunter2-offline-password";

/// Settings for a loopback port where nothing listens.
fn settings() -> Settings {
    offline_password_settings(PASSWORD).ssl_mode(SslMode::Disable)
}

/// A fake source and the clock its tokens' expiry is on; pass the clock to the engine too.
fn fake() -> (ManualClock, Arc<FakeSource>) {
    FakeSource::with_manual_clock(Some(Duration::from_secs(3600)))
}

fn on(clock: &ManualClock) -> AuthOptions {
    AuthOptions::default().clock(Arc::new(clock.clone()))
}

#[tokio::test]
async fn defaults() {
    assert_eq!(DEFAULT_MAX_SIZE, 10);
    assert_eq!(DEFAULT_MAX_LIFETIME, Duration::from_secs(55 * 60));
    assert_eq!(DEFAULT_CONNECTION_TIMEOUT, Duration::from_secs(30));
    assert_eq!(DEFAULT_DISPOSE_TIMEOUT, Duration::from_secs(10));
    let engine = PooledEngine::from_settings(settings()).await.unwrap();
    assert!(!engine.is_disposed());
    let timeouts = engine.pool().timeouts();
    assert_eq!(
        (timeouts.wait, timeouts.create, timeouts.recycle),
        (
            Some(DEFAULT_CONNECTION_TIMEOUT),
            Some(DEFAULT_CONNECTION_TIMEOUT),
            Some(DEFAULT_CONNECTION_TIMEOUT)
        )
    );
    assert_eq!(engine.pool().status().max_size, DEFAULT_MAX_SIZE);
    assert!(
        engine.auth().refresher_running(),
        "background refresh is on by default"
    );
    let builder = format!("{:?}", PooledEngine::builder(settings()));
    assert!(
        builder.contains("recycling_method: \"Verified\""),
        "{builder}"
    );
    assert!(builder.contains("max_lifetime: Some(3300s)"), "{builder}");
    engine.dispose().await;

    let engine = PooledEngine::builder(settings())
        .max_size(3)
        .connection_timeout(Duration::from_secs(2))
        .configure(|pool| pool.recycle_timeout(Some(Duration::from_secs(1))))
        .build()
        .await
        .unwrap();
    assert_eq!(engine.pool().status().max_size, 3);
    assert_eq!(engine.pool().timeouts().wait, Some(Duration::from_secs(2)));
    assert_eq!(
        engine.pool().timeouts().recycle,
        Some(Duration::from_secs(1))
    );
    engine.dispose().await;
}

#[tokio::test]
async fn nothing_prints_the_password() {
    let engine = PooledEngine::from_settings(settings()).await.unwrap();
    engine.auth().token().await.unwrap();
    let Err(error) = engine.get().await else {
        panic!("nothing listens on port 1")
    };
    let migrations = MigrationEngine::from_settings(settings()).await.unwrap();
    let migration_error = migrations.connect().await.err().unwrap();
    let printed = [
        format!("{engine:?}"),
        format!("{engine:#?}"),
        format!("{:?}", PooledEngine::builder(settings())),
        format!("{:#?}", PooledEngine::builder(settings())),
        format!("{migrations:?} {migrations:#?}"),
        format!("{:?}", MigrationEngine::builder(settings())),
        format!("{error} {error:?} {error:#?} {}", chain_text(&error)),
        format!(
            "{migration_error} {migration_error:?} {}",
            chain_text(&migration_error)
        ),
        format!("{:?}", engine.status()),
    ];
    for text in printed {
        assert!(!text.contains(PASSWORD), "{text}");
    }
    engine.dispose().await;
}

#[tokio::test]
async fn connect_errors_keep_their_cause() {
    let (clock, source) = fake();
    source.fail(TokenErrorKind::Transient, None);
    let engine = PooledEngine::builder(settings())
        .token_source(source.clone())
        .auth_options(on(&clock))
        .build()
        .await
        .unwrap();
    // The token source fails: the caller sees the source's error, not diesel's text.
    let Err(error) = engine.get().await else {
        panic!("the source is down")
    };
    assert!(
        matches!(error, Error::Auth(cloud_pg_auth::Error::Token(_))),
        "{error:?}"
    );
    let text = chain_text(&error);
    assert!(
        text.contains("fake source") && text.contains("connection refused"),
        "{text}"
    );

    // The server cannot be reached: the driver's error is in the chain.
    source.recover();
    engine.auth().refresh_now().await.unwrap();
    let Err(error) = engine.get().await else {
        panic!("nothing listens on port 1")
    };
    assert!(
        matches!(error, Error::Auth(cloud_pg_auth::Error::Connect { .. })),
        "{error:?}"
    );
    assert!(std::error::Error::source(&error).is_some());
    assert!(
        chain_text(&error).contains("127.0.0.1:1"),
        "{}",
        chain_text(&error)
    );
    engine.dispose().await;
}

#[tokio::test]
async fn dispose_drops_the_credential_and_refuses_later_checkouts() {
    let (clock, source) = fake();
    let dropped = source.drop_flag();
    let engine = PooledEngine::builder(settings())
        .token_source(source.clone())
        .auth_options(on(&clock))
        .build()
        .await
        .unwrap();
    drop(source);
    let pool = engine.pool().clone();
    engine.auth().token().await.unwrap();
    assert!(engine.auth().refresher_running());
    engine.dispose().await;
    assert!(
        dropped.load(Ordering::SeqCst),
        "the engine's credential is gone"
    );
    assert!(!engine.auth().refresher_running());
    assert!(pool.is_closed());
    assert!(matches!(engine.get().await, Err(Error::Disposed)));
    assert_eq!(engine.status().pool.unwrap().max_size, 0);
    engine.dispose().await;

    let (clock, source) = fake();
    let dropped = source.drop_flag();
    let migrations = MigrationEngine::builder(settings())
        .token_source(source.clone())
        .auth_options(on(&clock))
        .build()
        .await
        .unwrap();
    drop(source);
    migrations.dispose().await;
    assert!(dropped.load(Ordering::SeqCst));
    assert!(matches!(migrations.connect().await, Err(Error::Disposed)));
}

#[tokio::test]
async fn dropping_the_engine_ends_its_credential_even_while_pool_and_auth_clones_live() {
    let (clock, source) = fake();
    let dropped = source.drop_flag();
    let engine = PooledEngine::builder(settings())
        .token_source(source.clone())
        .auth_options(on(&clock))
        .build()
        .await
        .unwrap();
    drop(source);
    let auth = engine.auth().clone();
    let pool = engine.pool().clone();
    let second = engine.clone();
    assert!(auth.refresher_running());
    drop(engine);
    assert!(!pool.is_closed(), "a clone of the engine is left");
    assert!(auth.refresher_running());
    drop(second);
    assert!(pool.is_closed());
    assert!(
        !auth.refresher_running(),
        "stopped although the credential lives on"
    );
    assert!(
        dropped.load(Ordering::SeqCst),
        "the token source went with the last engine handle"
    );
    assert!(matches!(
        auth.token().await,
        Err(cloud_pg_auth::Error::Disposed)
    ));
    assert!(
        pool.get().await.is_err(),
        "the pool clone hands out nothing"
    );
}

/// Engines' futures are `Send`, so they run in spawned tasks and web handlers.
#[allow(dead_code)]
fn futures_are_send(engine: &PooledEngine, migrations: &MigrationEngine) {
    fn check<T: Send>(_: T) {}
    check(engine.get());
    check(engine.dispose());
    check(migrations.connect());
    check(migrations.run_migrations(EMPTY));
    check(PooledEngine::from_env());
    check(MigrationEngine::from_env());
}

const EMPTY: EmbeddedMigrations = EmbeddedMigrations::new(&[]);
