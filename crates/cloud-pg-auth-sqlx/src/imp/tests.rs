//! Without a server: TLS decisions, the relay's socket and lifetime, defaults, token installation on a controllable clock,
//! secrets kept out of Debug and errors, dispose and drop.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cloud_pg_auth::clock::ManualClock;
use cloud_pg_auth::engine::chain_text;
use cloud_pg_auth::testing::{FakeSource, offline_password_settings};
use cloud_pg_auth::tls::CertCheck;
use cloud_pg_auth::{AuthOptions, Env, Settings, SslMode, TokenErrorKind};
use cloud_pg_auth_testkit::tls::TestCa;
use cloud_pg_auth_testkit::{PATIENCE, poll_until};
use sqlx::postgres::PgSslMode;

use super::sqlx;
use super::target::Target;
use super::{
    DEFAULT_CONNECTION_TIMEOUT, DEFAULT_DISPOSE_TIMEOUT, DEFAULT_MAX_LIFETIME, DEFAULT_MAX_SIZE,
    Error, MigrationEngine, PooledEngine,
};
use crate::relay::error_response;

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

/// A CA file for settings that need one (the policy loads it).
fn ca_file() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), TestCa::generate().cert_pem()).unwrap();
    file
}

/// The TLS decision is the core's `TlsPolicy`, the same as for the other adapters; sqlx
/// itself is always told `disable` and connects to the engine's relay, which does TLS.
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
    let ca = ca_file();
    let ca = ca.path().to_str().unwrap();
    type Vars<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(Vars<'_>, Vars<'_>, Result<CertCheck, &str>)] = &[
        (&aws, &[RDS], Ok(CertCheck::Full)),
        (&aws, &[RDS, ("PGSSLMODE", "require")], Ok(CertCheck::Full)),
        // Chain only against the public roots would pass anyone with a public certificate.
        (&aws, &[RDS, ("PGSSLMODE", "verify-ca")], Err("PGSSLMODE")),
        (
            &aws,
            &[RDS, ("PGSSLMODE", "verify-ca"), ("PGSSLROOTCERT", ca)],
            Ok(CertCheck::ChainOnly),
        ),
        (
            &aws,
            &[RDS, ("PGSSLMODE", "verify-full")],
            Ok(CertCheck::Full),
        ),
        (
            &loopback_aws,
            &[("PGSSLMODE", "require")],
            Ok(CertCheck::None),
        ),
        (
            &loopback_aws,
            &[("PGSSLMODE", "disable")],
            Ok(CertCheck::None),
        ),
        (&loopback_aws, &[], Ok(CertCheck::Full)),
        (&password, &[], Ok(CertCheck::None)),
        (&password, &[("PGSSLMODE", "require")], Ok(CertCheck::None)),
        (
            &password,
            &[("PGSSLMODE", "require"), ("PGSSLROOTCERT", ca)],
            Ok(CertCheck::ChainOnly),
        ),
        (&password, &[("PGSSLMODE", "disable")], Ok(CertCheck::None)),
        (
            &password,
            &[("PGSSLMODE", "verify-full"), ("PGSSLROOTCERT", ca)],
            Ok(CertCheck::Full),
        ),
    ];
    for (base, extra, expected) in cases {
        let pairs: Vec<_> = base.iter().chain(extra.iter()).copied().collect();
        let target = Settings::from_env_vars(&env(&pairs))
            .map_err(Error::from)
            .and_then(|settings| Target::from_settings(&settings));
        match (target, expected) {
            (Ok(target), Ok(check)) => {
                assert_eq!(target.relay().policy().check(), *check, "{pairs:?}");
                let options = target.base_options();
                assert!(
                    matches!(options.get_ssl_mode(), PgSslMode::Disable),
                    "{pairs:?}"
                );
            }
            (Err(error), Err(setting)) => {
                assert!(chain_text(&error).contains(setting), "{pairs:?}: {error}");
            }
            (target, expected) => panic!("{pairs:?}: {target:?}, expected {expected:?}"),
        }
    }
    // Settings built in code skip `from_env_vars`; the adapter still refuses.
    let settings =
        Settings::from_env_vars(&env(&[("PGAUTH_METHOD", "aws"), ("PGUSER", "app"), RDS]))
            .unwrap()
            .ssl_mode(SslMode::Disable);
    let error = Target::from_settings(&settings).unwrap_err();
    assert!(chain_text(&error).contains("PGSSLMODE"), "{error}");
}

/// sqlx adds its `ssl_root_cert` to the public roots it always trusts: the engine never gives
/// it one, nor lets it do TLS. It connects to the relay's socket in the engine's private
/// directory instead, where the core's policy (the root file alone) applies.
#[cfg(unix)]
#[test]
fn sqlx_never_gets_the_root_file_and_connects_to_the_relay() {
    let ca = ca_file();
    let root = ca.path().to_str().unwrap();
    for mode in ["verify-full", "verify-ca", "require"] {
        let settings = Settings::from_env_vars(&env(&[
            ("PGHOST", "db.internal"),
            ("PGPORT", "6432"),
            ("PGUSER", "app"),
            ("PGPASSWORD", "pw"),
            ("PGSSLMODE", mode),
            ("PGSSLROOTCERT", root),
        ]))
        .unwrap();
        let target = Target::from_settings(&settings).unwrap();
        let options = target.base_options();
        assert!(
            matches!(options.get_ssl_mode(), PgSslMode::Disable),
            "{mode}"
        );
        assert!(
            !format!("{options:?}").contains(root),
            "{mode}: {options:?}"
        );
        let dir = target.relay().dir().unwrap();
        assert_eq!(options.get_socket(), Some(&dir), "{mode}");
        assert_eq!(options.get_port(), 6432, "{mode}");
        assert!(dir.join(".s.PGSQL.6432").exists(), "{mode}");
    }
}

/// A socket directory host goes through the relay too (which dials the server's socket
/// without TLS, as PostgreSQL does no TLS there), so that the relay's `options`, keepalive
/// and target_session_attrs handling covers it.
#[cfg(unix)]
#[test]
fn a_socket_directory_host_goes_through_the_relay() {
    let settings = offline_password_settings(PASSWORD).host("/var/run/postgresql");
    let target = Target::from_settings(&settings).unwrap();
    let options = target.base_options();
    let dir = target.relay().dir().unwrap();
    assert_eq!(options.get_socket(), Some(&dir));
    assert!(matches!(options.get_ssl_mode(), PgSslMode::Disable));
}

/// The relay's socket directory is this user's alone and goes away with the engine; the
/// relay's task ends with `dispose()` or the engine's drop.
#[cfg(unix)]
#[tokio::test]
async fn the_relay_directory_is_private_and_removed_and_its_task_ends_with_the_engine() {
    use std::os::unix::fs::PermissionsExt as _;
    let (clock, source) = fake();
    let engine = engine_with(&clock, &source, false).await;
    let relay = engine.target().relay();
    let dir = relay.dir().unwrap();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    let probe = relay.probe();
    assert!(!probe.ended(), "the relay runs");
    engine.dispose().await;
    assert!(!dir.exists(), "removed by dispose");
    assert!(probe.ended(), "dispose waits for the relay's task");
    assert!(matches!(engine.get().await, Err(Error::Disposed)));

    let engine = engine_with(&clock, &source, false).await;
    let dir = engine.target().relay().dir().unwrap();
    let probe = engine.target().relay().probe();
    drop(engine);
    assert!(!dir.exists(), "removed by the drop");
    poll_until("probe.ended()", PATIENCE, async || probe.ended()).await;

    let migrations = MigrationEngine::builder(settings())
        .token_source(source.clone())
        .auth_options(on(&clock, false))
        .build()
        .await
        .unwrap();
    let relay = migrations.target().relay();
    let dir = relay.dir().unwrap();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    let probe = relay.probe();
    migrations.dispose().await;
    assert!(!dir.exists());
    assert!(probe.ended());
}

/// What sqlx receives when the relay cannot open the server connection: a FATAL
/// ErrorResponse it reports as a database error.
#[test]
fn the_relay_answers_with_a_postgres_error_response() {
    let bytes = error_response("08001", "no\0 way");
    assert_eq!(bytes[0], b'E');
    let length = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
    assert_eq!(length, bytes.len() - 1);
    assert_eq!(
        &bytes[5..],
        b"SFATAL\0VFATAL\0C08001\0Mno way\0\0".as_slice()
    );
}

#[tokio::test]
async fn defaults() {
    assert_eq!(DEFAULT_MAX_SIZE, 10);
    assert_eq!(DEFAULT_MAX_LIFETIME, Duration::from_secs(55 * 60));
    assert_eq!(DEFAULT_CONNECTION_TIMEOUT, Duration::from_secs(30));
    assert_eq!(DEFAULT_DISPOSE_TIMEOUT, Duration::from_secs(10));
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
    poll_until(
        "installed(&engine).as_deref() == Some('fake-token-2')",
        PATIENCE,
        async || installed(&engine).as_deref() == Some("fake-token-2"),
    )
    .await;
    clock.advance(Duration::from_secs(3300));
    poll_until(
        "installed(&engine).as_deref() == Some('fake-token-3')",
        PATIENCE,
        async || installed(&engine).as_deref() == Some("fake-token-3"),
    )
    .await;
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
    assert!(engine.is_disposed() && engine.clone().is_disposed());
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
    let clone = migrations.clone();
    migrations.dispose().await;
    assert!(dropped.load(Ordering::SeqCst));
    assert!(clone.is_disposed());
    assert!(matches!(clone.connect().await, Err(Error::Disposed)));
}

#[tokio::test]
async fn dropping_the_engine_ends_its_tasks_even_while_the_pool_lives_on() {
    let (clock, source) = fake();
    let dropped = source.drop_flag();
    let engine = engine_with(&clock, &source, true).await;
    drop(source);
    let pool = engine.pool().clone();
    let auth = engine.auth().clone();
    let clone = engine.clone();
    drop(engine);
    assert!(!pool.is_closed(), "a clone of the engine is left");
    assert!(auth.refresher_running());
    drop(clone);
    assert!(pool.is_closed());
    assert!(
        !format!("{:?}", pool.connect_options()).contains("fake-token"),
        "the token left the pool's options"
    );
    assert!(matches!(
        auth.token().await,
        Err(cloud_pg_auth::Error::Disposed)
    ));
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
