//! Without a server: TLS mapping, defaults, token installation on a controllable clock,
//! secrets kept out of Debug and errors, dispose and drop.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cloud_pg_auth::clock::ManualClock;
use cloud_pg_auth::testing::{FakeSource, eventually, offline_password_settings};
use cloud_pg_auth::{AuthOptions, Env, Settings, SslMode, TokenErrorKind, chain_text};
use sqlx::postgres::PgSslMode;

use crate::target::Target;
use crate::{
    DEFAULT_CONNECTION_TIMEOUT, DEFAULT_MAX_LIFETIME, DEFAULT_MAX_SIZE, Error, MigrationEngine,
    PooledEngine,
};

const HOUR: Duration = Duration::from_secs(3600);
const PASSWORD: &str = "hunter2-offline-password";

fn env(pairs: &[(&str, &str)]) -> Env {
    Env::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

/// Password settings for a loopback port where nothing listens.
fn settings() -> Settings {
    offline_password_settings(PASSWORD).ssl_mode(SslMode::Disable)
}

fn fake() -> (ManualClock, Arc<FakeSource>) {
    FakeSource::with_manual_clock(Some(HOUR))
}

fn on(clock: &ManualClock, background: bool) -> AuthOptions {
    AuthOptions::default()
        .clock(Arc::new(clock.clone()))
        .background_refresh(background)
}

async fn engine_with(
    clock: &ManualClock,
    source: &Arc<FakeSource>,
    background: bool,
) -> PooledEngine {
    PooledEngine::builder(settings())
        .token_source(source.clone())
        .auth_options(on(clock, background))
        .connection_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap()
}

fn installed(engine: &PooledEngine) -> Option<String> {
    engine.installed_secret().map(|s| s.expose().to_string())
}

#[test]
fn tls_modes_never_send_a_token_unverified() {
    const RDS: (&str, &str) = ("PGHOST", "db.abc123.eu-west-1.rds.amazonaws.com");
    let aws = [("PGAUTH_METHOD", "aws"), ("PGUSER", "app")];
    let loopback_aws = [
        ("PGAUTH_METHOD", "aws"),
        ("PGUSER", "app"),
        ("PGHOST", "127.0.0.1"),
        ("AWS_REGION", "us-east-1"),
        ("PGAUTH_INSECURE_LOOPBACK", "1"),
    ];
    let password = [
        ("PGHOST", "db.internal"),
        ("PGUSER", "app"),
        ("PGPASSWORD", "pw"),
    ];
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"); // any readable file
    type Vars<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(Vars<'_>, Vars<'_>, PgSslMode)] = &[
        (&aws, &[RDS], PgSslMode::VerifyFull),
        (
            &aws,
            &[RDS, ("PGSSLMODE", "require")],
            PgSslMode::VerifyFull,
        ),
        (
            &aws,
            &[RDS, ("PGSSLMODE", "verify-ca")],
            PgSslMode::VerifyCa,
        ),
        (
            &aws,
            &[RDS, ("PGSSLMODE", "verify-full")],
            PgSslMode::VerifyFull,
        ),
        (
            &loopback_aws,
            &[("PGSSLMODE", "require")],
            PgSslMode::Require,
        ),
        (
            &loopback_aws,
            &[("PGSSLMODE", "disable")],
            PgSslMode::Disable,
        ),
        (&loopback_aws, &[], PgSslMode::VerifyFull),
        (&password, &[], PgSslMode::Prefer),
        (&password, &[("PGSSLMODE", "require")], PgSslMode::Require),
        (
            &password,
            &[("PGSSLMODE", "require"), ("PGSSLROOTCERT", ca)],
            PgSslMode::VerifyCa,
        ),
        (&password, &[("PGSSLMODE", "disable")], PgSslMode::Disable),
        (
            &password,
            &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", ca)],
            PgSslMode::VerifyFull,
        ),
    ];
    for (base, extra, expected) in cases {
        let pairs: Vec<_> = base.iter().chain(extra.iter()).copied().collect();
        let settings = Settings::from_env_vars(&env(&pairs)).unwrap();
        let target = Target::from_settings(&settings).unwrap();
        assert_eq!(
            format!("{:?}", target.ssl_mode()),
            format!("{expected:?}"),
            "{pairs:?}"
        );
    }
    // Settings built in code skip `from_env_vars`; the adapter still refuses.
    let mut settings =
        Settings::from_env_vars(&env(&[("PGAUTH_METHOD", "aws"), ("PGUSER", "app"), RDS])).unwrap();
    settings.ssl_mode = Some(SslMode::Disable);
    let error = Target::from_settings(&settings).unwrap_err();
    assert!(chain_text(&error).contains("PGSSLMODE"), "{error}");
}

#[tokio::test]
async fn defaults() {
    assert_eq!(DEFAULT_MAX_SIZE, 10);
    assert_eq!(DEFAULT_MAX_LIFETIME, Duration::from_secs(55 * 60));
    assert_eq!(DEFAULT_CONNECTION_TIMEOUT, Duration::from_secs(30));
    let engine = PooledEngine::from_settings(settings()).await.unwrap();
    let options = engine.pool().options();
    assert_eq!(options.get_max_connections(), 10);
    assert_eq!(options.get_max_lifetime(), Some(DEFAULT_MAX_LIFETIME));
    assert_eq!(options.get_acquire_timeout(), DEFAULT_CONNECTION_TIMEOUT);
    assert!(options.get_test_before_acquire());
    assert!(
        engine.auth().refresher_running(),
        "background refresh is on by default"
    );
    assert!(engine.token_watcher_running());
    assert_eq!(installed(&engine).as_deref(), Some(PASSWORD));
    engine.dispose().await;

    let engine = PooledEngine::builder(settings())
        .max_size(3)
        .max_lifetime(None)
        .configure(|options| options.idle_timeout(Duration::from_secs(5)))
        .build()
        .await
        .unwrap();
    let options = engine.pool().options();
    assert_eq!(options.get_max_connections(), 3);
    assert_eq!(options.get_max_lifetime(), None);
    assert_eq!(options.get_idle_timeout(), Some(Duration::from_secs(5)));
    assert_eq!(engine.status().pool.unwrap().max_size, 3);
    engine.dispose().await;
}

/// A process that slept or was suspended past the token's expiry: the first checkout after
/// waking installs a valid token before anything opens a connection, with or without the
/// background refresher (which may not have run yet).
#[tokio::test]
async fn a_checkout_after_sleeping_past_expiry_installs_a_valid_token_first() {
    for background in [false, true] {
        let (clock, source) = fake();
        let engine = engine_with(&clock, &source, background).await;
        assert_eq!(
            installed(&engine).as_deref(),
            Some("fake-token-1"),
            "background {background}"
        );
        clock.advance(HOUR * 2);
        engine.make_fresh().await.unwrap();
        assert_eq!(
            installed(&engine).as_deref(),
            Some("fake-token-2"),
            "background {background}"
        );
        assert_eq!(source.calls(), 2, "background {background}");
        // Through `get`: the token is current before sqlx tries (and fails) to connect.
        clock.advance(HOUR * 2);
        assert!(engine.get().await.is_err());
        assert_eq!(
            installed(&engine).as_deref(),
            Some("fake-token-3"),
            "background {background}"
        );
        engine.dispose().await;
    }
}

/// Without a background refresher, the checkout installs a new token once the installed
/// one is due for refresh (before it expires).
#[tokio::test]
async fn a_due_token_is_replaced_at_checkout() {
    let (clock, source) = fake();
    let engine = engine_with(&clock, &source, false).await;
    clock.advance(Duration::from_secs(3000));
    engine.make_fresh().await.unwrap();
    assert_eq!(
        installed(&engine).as_deref(),
        Some("fake-token-1"),
        "not due yet"
    );
    clock.advance(Duration::from_secs(300)); // past the refresh point (54 min), still valid
    engine.make_fresh().await.unwrap();
    assert_eq!(installed(&engine).as_deref(), Some("fake-token-2"));
    engine.dispose().await;
}

/// With the background refresher, each new token reaches the pool's options without any
/// checkout.
#[tokio::test]
async fn the_engine_installs_each_background_refresh() {
    let (clock, source) = fake();
    let engine = engine_with(&clock, &source, true).await;
    clock.advance(Duration::from_secs(3300));
    eventually(|| installed(&engine).as_deref() == Some("fake-token-2")).await;
    clock.advance(Duration::from_secs(3300));
    eventually(|| installed(&engine).as_deref() == Some("fake-token-3")).await;
    engine.dispose().await;
}

#[tokio::test]
async fn a_failing_source_is_not_an_error_while_the_installed_token_is_valid() {
    let (clock, source) = fake();
    let engine = engine_with(&clock, &source, false).await;
    source.fail(TokenErrorKind::Transient, None);
    clock.advance(Duration::from_secs(3300)); // due, still valid
    engine.make_fresh().await.unwrap();
    assert_eq!(installed(&engine).as_deref(), Some("fake-token-1"));
    clock.advance(HOUR); // expired: now the cause reaches the caller
    let error = engine.get().await.err().unwrap();
    assert!(
        matches!(error, Error::Auth(cloud_pg_auth::Error::Token(_))),
        "{error:?}"
    );
    let text = chain_text(&error);
    assert!(
        text.contains("fake source") && text.contains("connection refused"),
        "{text}"
    );
    engine.dispose().await;
}

#[tokio::test]
async fn a_timeout_carries_the_reason_new_connections_failed() {
    let (clock, source) = fake();
    let engine = engine_with(&clock, &source, false).await;
    let error = engine.get().await.err().unwrap();
    let Error::Timeout {
        cause: Some(cause), ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert!(
        matches!(**cause, Error::Auth(cloud_pg_auth::Error::Connect { .. })),
        "{cause:?}"
    );
    let text = chain_text(&error);
    assert!(text.contains("127.0.0.1:1"), "{text}");
    engine.dispose().await;
}

#[tokio::test]
async fn nothing_prints_the_token() {
    let (clock, source) = fake();
    let engine = engine_with(&clock, &source, true).await;
    assert!(installed(&engine).is_some());
    let error = engine.get().await.err().unwrap();
    let migrations = MigrationEngine::builder(settings())
        .token_source(source.clone())
        .auth_options(on(&clock, false))
        .build()
        .await
        .unwrap();
    let migration_error = migrations.connect().await.err().unwrap();
    let printed = [
        format!("{engine:?}"),
        format!("{engine:#?}"),
        format!("{:?}", PooledEngine::builder(settings())),
        format!("{:#?}", PooledEngine::builder(settings())),
        format!("{migrations:?}"),
        format!("{migrations:#?}"),
        format!(
            "{:?} {:#?}",
            MigrationEngine::builder(settings()),
            MigrationEngine::builder(settings())
        ),
        format!("{error} {error:?} {error:#?} {}", chain_text(&error)),
        format!(
            "{migration_error} {migration_error:?} {migration_error:#?} {}",
            chain_text(&migration_error)
        ),
        format!("{:?} {:#?}", engine.status(), engine.status()),
        serde_json::to_string(&engine.status()).unwrap(),
        format!("{:?} {:#?}", engine.pool(), engine.pool()),
        format!("{:?}", engine.auth()),
    ];
    for text in printed {
        assert!(!text.contains("fake-token"), "{text}");
        assert!(!text.contains(PASSWORD), "{text}");
    }
    engine.dispose().await;
}

#[tokio::test]
async fn dispose_stops_the_tasks_and_drops_the_credential() {
    let (clock, source) = fake();
    let dropped = source.drop_flag();
    let engine = engine_with(&clock, &source, true).await;
    drop(source);
    let pool = engine.pool().clone();
    assert!(engine.token_watcher_running() && engine.auth().refresher_running());
    engine.dispose().await;
    assert!(
        dropped.load(Ordering::SeqCst),
        "the engine's credential is gone"
    );
    assert!(!engine.token_watcher_running() && !engine.auth().refresher_running());
    assert!(pool.is_closed());
    assert!(installed(&engine).is_none());
    assert!(matches!(engine.get().await, Err(Error::Disposed)));
    assert_eq!(engine.status().pool.unwrap().max_size, 0);
    engine.dispose().await;

    let (clock, source) = fake();
    let dropped = source.drop_flag();
    let migrations = MigrationEngine::builder(settings())
        .token_source(source.clone())
        .auth_options(on(&clock, true))
        .build()
        .await
        .unwrap();
    assert!(
        !migrations.auth().refresher_running(),
        "no background refresh for migrations"
    );
    drop(source);
    migrations.dispose().await;
    assert!(dropped.load(Ordering::SeqCst));
    assert!(matches!(migrations.connect().await, Err(Error::Disposed)));
}

#[tokio::test]
async fn dropping_the_engine_ends_its_tasks_even_while_the_pool_lives_on() {
    let (clock, source) = fake();
    let dropped = source.drop_flag();
    let engine = engine_with(&clock, &source, true).await;
    drop(source);
    let pool = engine.pool().clone();
    let auth = engine.auth().clone();
    drop(engine);
    assert!(pool.is_closed());
    assert!(
        !auth.refresher_running(),
        "stopped although the credential lives on"
    );
    drop(auth);
    assert!(
        dropped.load(Ordering::SeqCst),
        "nothing else holds the credential"
    );
}

/// Engines' futures are `Send`, so they run in spawned tasks and web handlers.
#[allow(dead_code)]
fn futures_are_send(
    engine: &PooledEngine,
    migrations: &MigrationEngine,
    migrator: &sqlx::migrate::Migrator,
) {
    fn check<T: Send>(_: T) {}
    check(engine.get());
    check(engine.dispose());
    check(migrations.connect());
    check(migrations.run_migrations(migrator));
    check(PooledEngine::from_env());
    check(MigrationEngine::from_env());
}
