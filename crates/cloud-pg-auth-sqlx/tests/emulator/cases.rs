//! Through the local emulator (a real PostgreSQL behind a token-checking front), with the
//! password method, over TLS checked as verify-full against the emulator's CA. Written once
//! for both sqlx versions: `super::adapter` is the crate root (sqlx 0.9) or `v0_8`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::adapter::sqlx::migrate::Migrator;
use super::adapter::{Error, MigrationEngine, PooledEngine, sqlx};
use cloud_pg_auth::engine::chain_text;
use cloud_pg_auth::testing::{on_throwaway_runtime, password_settings_from};
use cloud_pg_auth::{AccessToken, CallbackSource, RootCerts, Settings, SslMode};
use cloud_pg_auth_testkit::tls::TestCa;
use cloud_pg_auth_testkit::{Emulator, EmulatorOptions};
use cloud_pg_auth_testkit::{PATIENCE, poll_until};

/// A name only the emulator's certificate knows: it resolves nowhere, so only `hostaddr`
/// reaches the server.
const SERVER_NAME: &str = "db.pgauth.test";

pub(crate) async fn emulator() -> Emulator {
    Emulator::start(EmulatorOptions::default())
        .await
        .expect("the emulator starts")
}

fn settings_with(emulator: &Emulator, password: &str, drop_vars: &[&str]) -> Settings {
    let env = emulator
        .env()
        .into_iter()
        .filter(|(k, _)| !drop_vars.contains(&k.as_str()));
    password_settings_from(env, emulator.password_role(), password)
}

pub(crate) fn settings(emulator: &Emulator) -> Settings {
    settings_with(emulator, emulator.password(), &[])
}

async fn migrator() -> Migrator {
    Migrator::new(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/migrations"
    )))
    .await
    .unwrap()
}

async fn current_user(engine: &PooledEngine) -> Result<String, Error> {
    let mut connection = engine.get().await?;
    Ok(sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut *connection)
        .await?)
}

/// Waits until every connection is back in the pool (sqlx returns a dropped connection on a
/// task of its own), at most [`PATIENCE`].
async fn settle(engine: &PooledEngine) {
    poll_until(
        "engine.pool().num_idle() == engine.pool().size() as usize",
        PATIENCE,
        async || engine.pool().num_idle() == engine.pool().size() as usize,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_login_migrations_status_and_dispose() {
    let emulator = emulator().await;
    let migrations = MigrationEngine::from_settings(settings(&emulator))
        .await
        .unwrap();
    let migrator = migrator().await;
    let report = migrations.run_migrations(&migrator).await.unwrap();
    assert_eq!(report.applied_versions(), ["1"]);
    assert_eq!(report.applied[0].name, "adapter items");
    assert_eq!(report.already_applied, 0);
    assert!(report.duration >= report.applied[0].duration, "{report:?}");
    let report = migrations.run_migrations(&migrator).await.unwrap();
    assert!(report.applied.is_empty());
    assert_eq!(report.already_applied, 1);
    let status = migrations.status();
    assert_eq!(status.connections_opened, 2);
    assert!(status.pool.is_none());
    migrations.dispose().await;
    assert!(matches!(migrations.connect().await, Err(Error::Disposed)));

    let engine = PooledEngine::from_settings(settings(&emulator))
        .await
        .unwrap();
    assert_eq!(
        current_user(&engine).await.unwrap(),
        emulator.password_role()
    );
    settle(&engine).await;
    assert_eq!(
        current_user(&engine).await.unwrap(),
        emulator.password_role()
    );
    settle(&engine).await;
    let status = engine.status();
    assert_eq!(
        status.connections_opened, 1,
        "the second checkout reuses the first connection"
    );
    assert_eq!(status.auth_retries, 0);
    let pool = status.pool.unwrap();
    assert_eq!(
        (pool.max_size, pool.size, pool.idle, pool.waiting),
        (10, 1, 1, 0)
    );
    engine.dispose().await;
    assert!(matches!(engine.get().await, Err(Error::Disposed)));
    emulator.stop().await.unwrap();
}

/// dispose() with a connection still checked out returns within its bound (the connection
/// closes when it comes back) instead of waiting for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispose_returns_within_its_bound_while_a_connection_is_checked_out() {
    let emulator = emulator().await;
    let engine = PooledEngine::builder(settings(&emulator))
        .dispose_timeout(Duration::from_millis(50))
        .build()
        .await
        .unwrap();
    let mut leaked = engine.get().await.unwrap();
    engine.dispose().await;
    assert!(engine.is_disposed());
    assert!(engine.pool().is_closed());
    assert!(matches!(engine.get().await, Err(Error::Disposed)));
    // The checked-out connection still works until it is returned.
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut *leaked)
        .await
        .unwrap();
    assert_eq!(one, 1);
    drop(leaked);
    poll_until("engine.pool().size() == 0", PATIENCE, async || {
        engine.pool().size() == 0
    })
    .await;
    emulator.stop().await.unwrap();
}

/// A source whose first token the server refuses and whose later ones are the password
/// role's password, with the count of its calls.
fn stale_then_valid(emulator: &Emulator) -> (Arc<CallbackSource>, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let password = emulator.password().to_string();
    let counter = Arc::clone(&calls);
    let source = CallbackSource::sync("rotating", move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let secret = if n == 0 {
            "stale-password".to_string()
        } else {
            password.clone()
        };
        Ok::<_, std::io::Error>(AccessToken::new(secret))
    });
    (Arc::new(source), calls)
}

/// The server refuses the first token: the checkout drops it, installs a new one and tries
/// once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_is_retried_once_with_a_new_token() {
    let emulator = emulator().await;
    let (source, calls) = stale_then_valid(&emulator);
    let engine = PooledEngine::builder(settings(&emulator))
        .token_source(source)
        .build()
        .await
        .unwrap();
    assert_eq!(
        current_user(&engine).await.unwrap(),
        emulator.password_role()
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let status = engine.status();
    assert_eq!((status.auth_retries, status.connections_opened), (1, 1));
    engine.dispose().await;

    // The migration engine retries the same way.
    let (source, _) = stale_then_valid(&emulator);
    let migrations = MigrationEngine::builder(settings(&emulator))
        .token_source(source)
        .build()
        .await
        .unwrap();
    drop(migrations.connect().await.unwrap());
    assert_eq!(migrations.status().auth_retries, 1);
    migrations.dispose().await;
    emulator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_reaches_the_caller_with_the_servers_refusal() {
    let emulator = emulator().await;
    let engine = PooledEngine::from_settings(settings_with(&emulator, "not-the-password", &[]))
        .await
        .unwrap();
    let error = engine.get().await.err().unwrap();
    assert!(error.is_auth_failure(), "{error:?}");
    let text = chain_text(&error);
    assert!(text.contains("refused the credentials twice"), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
    assert_eq!(engine.status().auth_retries, 1);
    engine.dispose().await;
    emulator.stop().await.unwrap();
}

/// Without the emulator's CA, verify-full fails: sqlx really checks the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_refused_with_a_hint() {
    let emulator = emulator().await;
    let engine = PooledEngine::from_settings(settings_with(
        &emulator,
        emulator.password(),
        &["PGSSLROOTCERT"],
    ))
    .await
    .unwrap();
    let error = engine.get().await.err().unwrap();
    let text = chain_text(&error);
    assert!(text.contains("PGSSLROOTCERT"), "{text}");
    engine.dispose().await;
    emulator.stop().await.unwrap();
}

/// The error of a login that failed on the server's certificate: the core's own, typed (a
/// rustls certificate error in its chain), not a sqlx TLS error matched by its text.
fn assert_certificate_error(error: &Error, what: &str) {
    let text = chain_text(error);
    assert!(
        matches!(error, Error::Auth(cloud_pg_auth::Error::Connect { source, .. }) if source.downcast_ref::<sqlx::Error>().is_none()),
        "{what}: {error:?}"
    );
    assert!(
        cloud_pg_auth::tls::certificate_hint(error).is_some(),
        "{what}: {text}"
    );
    assert!(text.contains("PGSSLROOTCERT"), "{what}: {text}");
}

/// libpq's meaning of a root file: it replaces the public roots (sqlx's own TLS would add
/// it to them). A file with an unrelated CA is refused, for pooled and migration engines and
/// for verify-ca as for verify-full; the emulator's own CA file is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_file_replaces_the_public_roots() {
    let emulator = emulator().await;
    let unrelated = emulator.dir().join("unrelated-ca.pem");
    std::fs::write(&unrelated, TestCa::generate().cert_pem()).unwrap();
    for mode in [SslMode::VerifyFull, SslMode::VerifyCa] {
        let settings = settings(&emulator)
            .ssl_mode(mode)
            .root_certs(RootCerts::File(unrelated.clone()));
        let engine = PooledEngine::from_settings(settings.clone()).await.unwrap();
        let error = engine.get().await.err().unwrap();
        assert_certificate_error(&error, &format!("pooled, {mode:?}"));
        assert_eq!(engine.status().connections_opened, 0);
        engine.dispose().await;
        let migrations = MigrationEngine::from_settings(settings).await.unwrap();
        let error = migrations.connect().await.err().unwrap();
        assert_certificate_error(&error, &format!("migration, {mode:?}"));
        migrations.dispose().await;

        let trusted = settings_with(&emulator, emulator.password(), &[]).ssl_mode(mode);
        let engine = PooledEngine::from_settings(trusted).await.unwrap();
        assert_eq!(
            current_user(&engine).await.unwrap(),
            emulator.password_role(),
            "{mode:?}"
        );
        engine.dispose().await;
    }
    emulator.stop().await.unwrap();
}

/// libpq's `hostaddr`: the engine dials 127.0.0.1 while the certificate is verified against
/// the name in PGHOST, which resolves nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostaddr_dials_the_address_and_verifies_the_host_name() {
    let emulator = Emulator::start(EmulatorOptions {
        extra_server_names: vec![SERVER_NAME.into()],
        ..EmulatorOptions::default()
    })
    .await
    .expect("the emulator starts");
    let settings = settings(&emulator)
        .host(SERVER_NAME)
        .hostaddr(IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(settings.effective_ssl_mode().unwrap(), SslMode::VerifyFull);
    let engine = PooledEngine::from_settings(settings.clone()).await.unwrap();
    assert_eq!(
        current_user(&engine).await.unwrap(),
        emulator.password_role()
    );
    engine.dispose().await;
    let migrations = MigrationEngine::from_settings(settings).await.unwrap();
    drop(migrations.connect().await.unwrap());
    migrations.dispose().await;

    // The name is still what is verified: one the certificate lacks is refused.
    let settings = settings_with(&emulator, emulator.password(), &[])
        .host("other.pgauth.test")
        .hostaddr(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let engine = PooledEngine::from_settings(settings).await.unwrap();
    let error = engine.get().await.err().unwrap();
    let text = chain_text(&error);
    assert!(
        cloud_pg_auth::tls::certificate_hint(&error).is_some() && text.contains("PGHOSTADDR"),
        "{text}"
    );
    engine.dispose().await;
    emulator.stop().await.unwrap();
}

/// The relay's accept task lives on a runtime: a migration engine built on a runtime that is
/// gone by the time it connects starts its relay again on the current one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_engine_built_on_a_dropped_runtime_still_connects() {
    let emulator = emulator().await;
    let settings = settings(&emulator);
    let migrations = on_throwaway_runtime(false, move || async move {
        let migrations = MigrationEngine::from_settings(settings).await.unwrap();
        drop(migrations.connect().await.unwrap());
        migrations
    });
    let mut connection = migrations.connect().await.unwrap();
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(user, emulator.password_role());
    drop(connection);
    assert_eq!(migrations.status().connections_opened, 2);
    migrations.dispose().await;
    emulator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_in_a_throwaway_runtime_leave_the_pool_healthy() {
    let emulator = emulator().await;
    let engine = PooledEngine::from_settings(settings(&emulator))
        .await
        .unwrap();
    assert_eq!(
        current_user(&engine).await.unwrap(),
        emulator.password_role()
    );
    for flavor in ["current_thread", "multi_thread"] {
        let settings = settings(&emulator);
        let applied = on_throwaway_runtime(flavor == "multi_thread", move || async move {
            let migrations = MigrationEngine::from_settings(settings).await.unwrap();
            let applied = migrations.run_migrations(&migrator().await).await.unwrap();
            migrations.dispose().await;
            applied
        });
        assert_eq!(
            applied.applied.len(),
            usize::from(flavor == "current_thread"),
            "{flavor}"
        );
        // A connection opened now, on the engine's runtime, after the other runtime is gone.
        settle(&engine).await;
        while let Some(idle) = engine.pool().try_acquire() {
            idle.close().await.unwrap();
        }
        assert_eq!(
            current_user(&engine).await.unwrap(),
            emulator.password_role()
        );
    }
    assert_eq!(engine.status().connections_opened, 3);
    engine.dispose().await;
    emulator.stop().await.unwrap();
}
