//! The scenario list. Each function is one behaviour every adapter must show; the
//! [`conformance_tests!`](crate::conformance_tests) macro turns them into tests per adapter.
//!
//! Why one long file: the list is read as one catalogue of guarantees, in the order the macro
//! runs them. Several scenarios here still time themselves by wall clock (rollover, outage,
//! throttling); they are to be rewritten on the emulator's events and a manual clock (issue
//! 12), and the file split by theme in that same change rather than moved twice.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cloud_pg_auth::{
    AccessToken, AuthMethod, BoxError, Secret, Settings, SourceInfo, SslMode, StaticPassword,
    TokenError, TokenSource, chain_text,
};
use cloud_pg_auth_testkit::{Emulator, EmulatorOptions, Faults};

use crate::{Adapter, EngineOptions, Method};

/// Starts an emulator whose Azure tokens live `lifetime`.
pub async fn emulator(lifetime: Duration) -> Emulator {
    Emulator::start(EmulatorOptions {
        token_lifetime: lifetime,
        ..EmulatorOptions::default()
    })
    .await
    .expect("the emulator starts")
}

/// Polls `cond` every 20 ms until it holds; fails after `limit` (a guard, not a measurement).
pub async fn eventually(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not reached within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn token_requests(emulator: &Emulator) -> u64 {
    emulator.stats().token_requests.total
}

fn text(error: &BoxError) -> String {
    chain_text(error.as_ref())
}

/// Every method logs in as its mapped role through the pool and through the migration
/// engine; migrations apply once; status shows the method and counters.
pub async fn logins_for_every_method<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(3600)).await;
    for method in Method::ALL {
        let db = format!("logins_{}", method.name().replace('-', "_"));
        let settings = method
            .settings_in_new_database(&emulator, &db)
            .await
            .unwrap();
        let role = method.expected_role(&emulator);
        let engine = A::pooled(settings.clone(), EngineOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{} {}: {}", A::NAME, method.name(), text(&e)));
        for _ in 0..3 {
            let user = A::current_user_on_new_connection(&engine)
                .await
                .unwrap_or_else(|e| panic!("{} {}: {}", A::NAME, method.name(), text(&e)));
            assert_eq!(user, role, "{} {}", A::NAME, method.name());
        }
        assert_eq!(A::current_user(&engine).await.unwrap(), role);
        let status = A::status(&engine);
        let expected_method = if method == Method::Password {
            "password"
        } else if method == Method::Aws {
            "aws"
        } else {
            "azure"
        };
        assert_eq!(status.auth.method, expected_method, "{status:?}");
        assert!(status.connections_opened >= 3, "{status:?}");
        assert!(status.pool.is_some(), "{status:?}");
        if method == Method::AzureManagedIdentity {
            assert_eq!(
                status.auth.username.as_deref(),
                Some(role.as_str()),
                "derived from xms_mirid: {status:?}"
            );
        }
        A::dispose(&engine).await;

        let migration = A::migration(settings).await.unwrap_or_else(|e| {
            panic!(
                "{} {} migration engine: {}",
                A::NAME,
                method.name(),
                text(&e)
            )
        });
        let first = A::migrate(&migration)
            .await
            .unwrap_or_else(|e| panic!("{}", text(&e)));
        let again = A::migrate(&migration).await.unwrap();
        assert_eq!((first, again), (1, 0), "migrations apply once");
        assert!(A::migration_status(&migration).pool.is_none());
        A::dispose_migration(&migration).await;
    }
    emulator.stop().await.unwrap();
}

/// 200 concurrent checkouts on a cold pool cause exactly one token request.
pub async fn cold_herd_makes_one_token_request<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(3600)).await;
    let settings = Method::AzureManagedIdentity.settings(&emulator);
    let engine = Arc::new(
        A::pooled(
            settings,
            EngineOptions {
                max_size: 20,
                connection_timeout: Duration::from_secs(60),
                ..EngineOptions::default()
            },
        )
        .await
        .unwrap(),
    );
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let engine = Arc::clone(&engine);
            tokio::spawn(async move { A::current_user(&engine).await.map_err(|e| text(&e)) })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(token_requests(&emulator), 1, "{:?}", emulator.stats());
    A::dispose(&engine).await;
}

/// With 5 s tokens, 30 s of new connections: no failure, about one fetch per lifetime.
pub async fn rollover_keeps_opening_connections<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(5)).await;
    let settings = Method::AzureManagedIdentity.settings(&emulator);
    let engine = A::pooled(settings, EngineOptions::default()).await.unwrap();
    let run = Duration::from_secs(30);
    let start = tokio::time::Instant::now();
    let mut opened = 0_u32;
    while start.elapsed() < run {
        if let Err(e) = A::current_user_on_new_connection(&engine).await {
            panic!(
                "open {opened} failed at {:?}: {}",
                start.elapsed(),
                text(&e)
            );
        }
        opened += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let requests = token_requests(&emulator);
    // 30 s of 5 s tokens refreshed when a third of their life remains: about 9 fetches.
    assert!(
        (6..=14).contains(&requests),
        "{requests} token requests for {opened} opens"
    );
    assert!(opened >= 30, "{opened}");
    assert_eq!(
        emulator.stats().logins_rejected.values().sum::<u64>(),
        0,
        "{:?}",
        emulator.stats()
    );
    A::dispose(&engine).await;
}

/// The identity endpoint is down past the refresh time: no failed open while the token is
/// valid; after expiry a clear error naming the endpoint and the cause; recovery after.
pub async fn outage_is_ridden_out_while_the_token_is_valid<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(8)).await;
    let settings = Method::AzureManagedIdentity.settings(&emulator);
    let engine = A::pooled(settings, EngineOptions::default()).await.unwrap();
    A::current_user_on_new_connection(&engine).await.unwrap();
    emulator
        .set_faults(Faults {
            down: Some(true),
            ..Faults::default()
        })
        .await
        .unwrap();
    // The window is the token's own: issued before this point, with a whole-second `exp`,
    // it may have less than 8 s left; a slow machine must not make a valid token look late.
    let expires_at = A::status(&engine)
        .auth
        .expires_at
        .expect("the engine holds a token");
    let until_expiry = || {
        expires_at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
    };
    // Refresh is due a third of the lifetime before expiry; keep opening until shortly
    // before the expiry itself.
    let mut opens = 0;
    while until_expiry() > Duration::from_millis(700) {
        if let Err(e) = A::current_user_on_new_connection(&engine).await {
            let left = until_expiry();
            // An open that began inside the window may end after the expiry.
            if left > Duration::ZERO {
                panic!(
                    "open failed {left:?} before the token expired: {}",
                    text(&e)
                );
            }
        }
        opens += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(opens > 10, "{opens} opens while the token was valid");
    assert!(
        A::status(&engine).auth.failure_count >= 1,
        "the refresher tried and failed"
    );
    tokio::time::sleep(until_expiry() + Duration::from_millis(500)).await;
    let error = A::current_user_on_new_connection(&engine)
        .await
        .unwrap_err();
    let message = text(&error);
    assert!(
        message.contains("127.0.0.1"),
        "names the endpoint: {message}"
    );
    assert!(message.contains("no valid token"), "{message}");
    assert!(
        message.contains("refused") || message.contains("connect") || message.contains("reset"),
        "gives the cause: {message}"
    );
    emulator
        .set_faults(Faults {
            down: Some(false),
            ..Faults::default()
        })
        .await
        .unwrap();
    let mut recovered = false;
    for _ in 0..100 {
        if A::current_user_on_new_connection(&engine).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "the engine recovers once the endpoint is back");
    A::dispose(&engine).await;
}

/// 429 with `Retry-After`: no failed open while the token is valid, and no request storm.
pub async fn throttling_is_honoured<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(8)).await;
    let settings = Method::AzureManagedIdentity.settings(&emulator);
    let engine = A::pooled(settings, EngineOptions::default()).await.unwrap();
    A::current_user_on_new_connection(&engine).await.unwrap();
    let warm = tokio::time::Instant::now();
    emulator
        .set_faults(Faults {
            status: Some(429),
            count: Some(1000),
            retry_after: Some(30),
            ..Faults::default()
        })
        .await
        .unwrap();
    while warm.elapsed() < Duration::from_millis(7000) {
        A::current_user_on_new_connection(&engine)
            .await
            .unwrap_or_else(|e| panic!("open failed with a valid token: {}", text(&e)));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Warm-up, then the refresh at about 5.3 s answered 429 "retry after 30 s": nothing more.
    let requests = token_requests(&emulator);
    assert!(
        (2..=3).contains(&requests),
        "{requests} token requests: {:?}",
        emulator.stats()
    );
    let status = A::status(&engine).auth;
    assert!(
        status.last_error.as_deref().unwrap_or("").contains("429"),
        "{status:?}"
    );
    A::dispose(&engine).await;
}

/// A slow identity endpoint: once warm, opens do not wait for the refresh in flight.
pub async fn slow_endpoint_does_not_delay_opens<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(6)).await;
    let settings = Method::AzureManagedIdentity.settings(&emulator);
    let engine = A::pooled(settings, EngineOptions::default()).await.unwrap();
    A::current_user_on_new_connection(&engine).await.unwrap();
    assert_eq!(emulator.stats().tokens_issued.total, 1);
    emulator
        .set_faults(Faults {
            latency_ms: Some(3000),
            ..Faults::default()
        })
        .await
        .unwrap();
    // The background refresh (due at 4 s) reaches the endpoint and waits there 3 s.
    eventually("a refresh in flight", Duration::from_secs(8), || {
        token_requests(&emulator) == 2
    })
    .await;
    for _ in 0..10 {
        A::current_user_on_new_connection(&engine).await.unwrap();
    }
    // Ten new connections opened while that refresh had not been answered yet.
    assert_eq!(
        emulator.stats().tokens_issued.total,
        1,
        "opens waited for the endpoint"
    );
    eventually("the refresh completes", Duration::from_secs(8), || {
        emulator.stats().tokens_issued.total == 2
    })
    .await;
    A::current_user_on_new_connection(&engine).await.unwrap();
    A::dispose(&engine).await;
}

/// PostgreSQL restarted under a live pool: the pool recovers with fresh logins.
pub async fn postgres_restart_is_survived<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(3600)).await;
    let settings = Method::AzureManagedIdentity.settings(&emulator);
    let role = Method::AzureManagedIdentity.expected_role(&emulator);
    let engine = A::pooled(settings, EngineOptions::default()).await.unwrap();
    // Leave a live idle connection in the pool for the restart to kill.
    assert_eq!(A::current_user(&engine).await.unwrap(), role);
    let before = A::status(&engine).connections_opened;
    emulator.restart_postgres().await.unwrap();
    // Checkout validation discards the dead connections; allow one failed checkout for a
    // connection that died between validation and use.
    let mut user = A::current_user(&engine).await;
    if user.is_err() {
        user = A::current_user(&engine).await;
    }
    assert_eq!(user.map_err(|e| text(&e)).unwrap(), role);
    assert!(
        A::status(&engine).connections_opened > before,
        "new connections were opened"
    );
    A::dispose(&engine).await;
}

/// The Python "event loop is closed" bug class: a migration engine created and used in a
/// throwaway runtime that is then dropped must not break the pooled engine.
pub fn runtime_affinity<A: Adapter>() {
    let main = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let emulator = main.block_on(emulator(Duration::from_secs(3600)));
    let settings = Method::AzureManagedIdentity.settings(&emulator);
    let role = Method::AzureManagedIdentity.expected_role(&emulator);
    let engine = main
        .block_on(A::pooled(settings.clone(), EngineOptions::default()))
        .unwrap();
    assert_eq!(main.block_on(A::current_user(&engine)).unwrap(), role);

    let migration_settings = main
        .block_on(Method::AzureManagedIdentity.settings_in_new_database(&emulator, "affinity"))
        .unwrap();
    for round in 0..2 {
        let settings = migration_settings.clone();
        std::thread::spawn(move || {
            let throwaway = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            throwaway.block_on(async {
                let migration = A::migration(settings).await.unwrap();
                A::migrate(&migration).await.unwrap();
                // Not disposed: the runtime is dropped under it, as a migration script's
                // `asyncio.run` loop would be.
                std::mem::forget(migration);
            });
            drop(throwaway);
        })
        .join()
        .unwrap_or_else(|_| panic!("migration round {round} panicked"));
    }

    main.block_on(async {
        // The pooled engine's own credential still fetches (new token) and logs in.
        A::auth(&engine).refresh_now().await.unwrap();
        for _ in 0..3 {
            assert_eq!(
                A::current_user_on_new_connection(&engine).await.unwrap(),
                role
            );
        }
        A::dispose(&engine).await;
    });
    main.block_on(emulator.stop()).unwrap();
}

/// A source that records its drop, around a static password.
pub struct DropRecorder {
    inner: StaticPassword,
    dropped: Arc<AtomicBool>,
}

impl DropRecorder {
    /// A recorder for `password`, and its flag.
    #[must_use]
    pub fn new(password: &str) -> (Arc<Self>, Arc<AtomicBool>) {
        let dropped = Arc::new(AtomicBool::new(false));
        (
            Arc::new(Self {
                inner: StaticPassword::new(password),
                dropped: Arc::clone(&dropped),
            }),
            dropped,
        )
    }
}

impl Drop for DropRecorder {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

impl fmt::Debug for DropRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DropRecorder")
            .field("inner", &self.inner)
            .finish()
    }
}

#[async_trait]
impl TokenSource for DropRecorder {
    async fn fetch(&self) -> Result<AccessToken, TokenError> {
        self.inner.fetch().await
    }

    fn info(&self) -> SourceInfo {
        self.inner.info()
    }
}

/// `dispose()` closes the pool, stops every task of ours and drops the credential.
pub async fn dispose_leaves_no_task_and_no_credential<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(3600)).await;
    // The emulator starts some tasks of its own on its first login; let it, before counting.
    emulator
        .connect(emulator.password_role(), emulator.password())
        .await
        .unwrap();
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    let settings = Method::Password.settings(&emulator);
    let (source, dropped) = DropRecorder::new(emulator.password());
    let settings = Settings {
        password: None,
        method: AuthMethod::Auto,
        ..settings
    }
    .for_custom_source();
    let engine = A::pooled_with_source(settings, source, EngineOptions::default())
        .await
        .unwrap();
    for _ in 0..3 {
        A::current_user(&engine).await.unwrap();
        A::current_user_on_new_connection(&engine).await.unwrap();
    }
    assert!(A::auth(&engine).refresher_running());
    A::dispose(&engine).await;
    assert!(
        dropped.load(Ordering::SeqCst),
        "the credential's last reference is gone"
    );
    assert!(!A::auth(&engine).refresher_running());
    eventually("our tasks end", Duration::from_secs(10), || {
        metrics.num_alive_tasks() <= baseline
    })
    .await;
    let after = A::current_user(&engine).await.unwrap_err();
    assert!(text(&after).contains("disposed"), "{}", text(&after));
    drop(engine);
    emulator.stop().await.unwrap();
}

/// Dropping an engine without `dispose()` also stops its refresher and drops the credential.
pub async fn drop_without_dispose_stops_the_refresher<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(3600)).await;
    emulator
        .connect(emulator.password_role(), emulator.password())
        .await
        .unwrap();
    let metrics = tokio::runtime::Handle::current().metrics();
    let baseline = metrics.num_alive_tasks();
    let settings = Method::Password.settings(&emulator);
    let (source, dropped) = DropRecorder::new(emulator.password());
    let settings = Settings {
        password: None,
        method: AuthMethod::Auto,
        ..settings
    }
    .for_custom_source();
    let engine = A::pooled_with_source(settings, source, EngineOptions::default())
        .await
        .unwrap();
    A::current_user(&engine).await.unwrap();
    assert!(A::auth(&engine).refresher_running());
    drop(engine);
    eventually("the credential is dropped", Duration::from_secs(10), || {
        dropped.load(Ordering::SeqCst)
    })
    .await;
    eventually("our tasks end", Duration::from_secs(10), || {
        metrics.num_alive_tasks() <= baseline
    })
    .await;
    emulator.stop().await.unwrap();
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes records of the `log` crate into the captured output, each line marked
/// `<LEVEL> log-crate <target>:`. rustls, tokio-postgres, sqlx and reqwest log through `log`,
/// not `tracing`, so without this their records would escape the check. A `log::Log` of our
/// own rather than tracing-log's `LogTracer`: `log` is already in the tree, and the scenario
/// asserts on the marker to prove the bridge carries records.
struct LogBridge(Captured);

impl log::Log for LogBridge {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        // Formatted before the lock: an argument's `Debug` may itself log.
        let line = format!(
            "{} {LOG_CRATE_MARK} {}: {}\n",
            record.level(),
            record.target(),
            record.args()
        );
        self.0.0.lock().unwrap().extend_from_slice(line.as_bytes());
    }

    fn flush(&self) {}
}

const LOG_CRATE_MARK: &str = "log-crate";

/// Captures every tracing event and every `log` record of the test binary at TRACE level,
/// from every thread.
///
/// A process-wide subscriber rather than a thread-local one: callsites first hit by other
/// tests before a thread-local subscriber exists can keep a cached "not interested".
fn capture_all_logs() -> Captured {
    static CAPTURE: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in the conformance tests");
            log::set_logger(Box::leak(Box::new(LogBridge(captured.clone()))))
                .expect("no other log logger in the conformance tests");
            log::set_max_level(log::LevelFilter::Trace);
            captured
        })
        .clone()
}

/// No token in `Debug` output or in TRACE-level logs, for every method.
pub async fn no_token_in_debug_or_logs<A: Adapter>() {
    // The emulator first: its start-up sets its (random) fixture password with SQL that
    // tokio-postgres logs at debug. That is the test kit's setup, not the code under test.
    let emulator = emulator(Duration::from_secs(3600)).await;
    let captured = capture_all_logs();
    let mut secrets: Vec<Secret> = vec![Secret::new(emulator.password())];
    let mut printed = String::new();
    for method in Method::ALL {
        let db = format!("debug_{}", method.name().replace('-', "_"));
        let settings = method
            .settings_in_new_database(&emulator, &db)
            .await
            .unwrap();
        printed += &format!("{settings:?}");
        let engine = A::pooled(settings.clone(), EngineOptions::default())
            .await
            .unwrap();
        A::current_user_on_new_connection(&engine).await.unwrap();
        secrets.push(A::auth(&engine).token().await.unwrap().secret().clone());
        printed += &A::debug(&engine);
        printed += &format!(
            "{:?} {}",
            A::status(&engine),
            serde_json::to_string(&A::status(&engine)).unwrap()
        );
        let migration = A::migration(settings).await.unwrap();
        A::migrate(&migration).await.unwrap();
        printed += &format!("{:?}", A::migration_status(&migration));
        A::dispose_migration(&migration).await;
        A::dispose(&engine).await;
    }
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        logs.contains("token refreshed"),
        "TRACE logs were captured: {}",
        &logs[..logs.len().min(3000)]
    );
    // The bridge works: every adapter's logins go through rustls, which logs through `log`.
    let rustls_record = format!(" {LOG_CRATE_MARK} rustls");
    assert!(
        logs.lines().any(|line| line.contains(&rustls_record)),
        "log crate records were captured: {}",
        &logs[..logs.len().min(3000)]
    );
    let everything = format!("{printed}\n{logs}");
    // On failure, say where, with the secret cut out of the lines shown.
    let lines_with = |needle: &str| {
        everything
            .lines()
            .filter(|line| line.contains(needle))
            .map(|line| {
                let cut: String = line.replace(needle, "<SECRET>").chars().take(300).collect();
                cut
            })
            .take(5)
            .collect::<Vec<_>>()
    };
    for secret in &secrets {
        assert!(
            !everything.contains(secret.expose()),
            "a secret was printed: {:#?}",
            lines_with(secret.expose())
        );
    }
    assert!(
        !everything.contains("eyJ"),
        "a JWT was printed: {:#?}",
        lines_with("eyJ")
    );
    assert!(
        !everything.contains("X-Amz-Signature"),
        "an RDS token was printed: {:#?}",
        lines_with("X-Amz-Signature")
    );
    emulator.stop().await.unwrap();
}

/// Tokens never cross the network in clear: refused at start, and refused by a server that
/// requires TLS when a loopback test set-up opts out.
pub async fn plaintext_is_refused<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(3600)).await;
    let settings = Method::AzureManagedIdentity.settings(&emulator);
    let clear = settings.clone().ssl_mode(SslMode::Disable);
    let error = A::pooled(clear.clone(), EngineOptions::default())
        .await
        .err()
        .expect("refused at start");
    assert!(text(&error).contains("PGSSLMODE"), "{}", text(&error));
    let opted_out = Settings {
        insecure_loopback: true,
        ..clear
    };
    let engine = A::pooled(opted_out, EngineOptions::default())
        .await
        .unwrap();
    let error = A::current_user(&engine).await.unwrap_err();
    assert!(
        text(&error).contains("no encryption"),
        "the server refuses plaintext: {}",
        text(&error)
    );
    A::dispose(&engine).await;
    emulator.stop().await.unwrap();
}

/// Bad settings fail when the engine is built, naming the setting.
pub async fn bad_settings_are_refused<A: Adapter>() {
    async fn check<A: Adapter>(settings: Settings, expected: &str) {
        match A::pooled(settings.clone(), EngineOptions::default()).await {
            Ok(_) => panic!("{settings:?} was accepted"),
            Err(e) => assert!(text(&e).contains(expected), "{}: {}", expected, text(&e)),
        }
        match A::migration(settings.clone()).await {
            Ok(_) => panic!("{settings:?} was accepted by the migration engine"),
            Err(e) => assert!(text(&e).contains(expected), "{}: {}", expected, text(&e)),
        }
    }
    let azure = Settings::default()
        .host("srv.postgres.database.azure.com")
        .method(AuthMethod::Azure);
    check::<A>(azure.clone().password("hunter2"), "PGPASSWORD").await;
    check::<A>(azure.clone().ssl_mode(SslMode::Prefer), "PGSSLMODE").await;
    check::<A>(
        Settings::default()
            .method(AuthMethod::Aws)
            .host("db.abc.eu-west-1.rds.amazonaws.com"),
        "PGUSER",
    )
    .await;
    check::<A>(
        Settings::default()
            .method(AuthMethod::Password)
            .host("db")
            .user("u"),
        "PGPASSWORD",
    )
    .await;
    check::<A>(Settings::default().user("u").password("hunter2"), "PGHOST").await;
    check::<A>(
        Settings {
            insecure_loopback: true,
            ..azure.clone()
        },
        "PGAUTH_INSECURE_LOOPBACK",
    )
    .await;
    // verify-ca with a token checks only the chain: never against the public roots.
    check::<A>(azure.clone().ssl_mode(SslMode::VerifyCa), "PGSSLMODE").await;
    // Host lists are not supported yet, and refused the same way by every adapter.
    check::<A>(
        Settings::default()
            .host("h1.example.com,h2.example.com")
            .user("u")
            .password("hunter2"),
        "several hosts",
    )
    .await;
    // The opt-out is for loopback: the address dialled decides, not the name.
    check::<A>(
        Settings {
            insecure_loopback: true,
            ..Settings::default()
                .host("localhost")
                .hostaddr("10.0.0.5".parse().unwrap())
                .method(AuthMethod::Azure)
                .ssl_mode(SslMode::Disable)
        },
        "PGAUTH_INSECURE_LOOPBACK",
    )
    .await;
}

/// Counters of a short password session add up: one fetch, two migration connections, one
/// connection per forced open, a held connection that answers queries, and a disposed engine
/// that refuses checkouts.
pub async fn counters_add_up<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(3600)).await;
    let db = format!("counters_{}", A::NAME.replace(['-', '.'], "_"));
    let settings = Method::Password
        .settings_in_new_database(&emulator, &db)
        .await
        .unwrap();
    let role = emulator.password_role().to_string();

    let migration = A::migration(settings.clone()).await.unwrap();
    assert_eq!(A::migrate(&migration).await.unwrap(), 1);
    assert_eq!(A::migrate(&migration).await.unwrap(), 0);
    assert_eq!(A::migration_status(&migration).connections_opened, 2);
    A::dispose_migration(&migration).await;

    let engine = A::pooled(settings, EngineOptions::default()).await.unwrap();
    assert_eq!(A::current_user(&engine).await.unwrap(), role);
    assert_eq!(A::current_user(&engine).await.unwrap(), role);
    assert_eq!(
        A::current_user_on_new_connection(&engine).await.unwrap(),
        role
    );
    assert_eq!(
        A::current_user_on_new_connection(&engine).await.unwrap(),
        role
    );
    let status = A::status(&engine);
    // Two forced opens plus the reused one; sqlx hands a connection back to its pool from a
    // spawned task, so the second checkout may open one more.
    assert!((3..=4).contains(&status.connections_opened), "{status:?}");
    assert_eq!(status.auth_retries, 0, "{status:?}");
    assert_eq!(status.auth.method, "password");
    assert_eq!(status.auth.fetch_count, 1);
    // A held connection answers repeated queries (what the bench times).
    let mut held = A::hold(&engine).await.unwrap();
    for _ in 0..3 {
        A::select_one(&mut held).await.unwrap();
    }
    drop(held);
    A::dispose(&engine).await;
    let error = A::current_user(&engine).await.unwrap_err();
    assert!(text(&error).contains("disposed"), "{}", text(&error));
    assert!(!A::auth(&engine).refresher_running());
    emulator.stop().await.unwrap();
}

/// Generates the conformance tests for one adapter: one test per scenario.
#[macro_export]
macro_rules! conformance_tests {
    ($adapter:ty) => {
        $crate::conformance_tests!(@multi_thread $adapter;
            logins_for_every_method,
            counters_add_up,
            cold_herd_makes_one_token_request,
            rollover_keeps_opening_connections,
            outage_is_ridden_out_while_the_token_is_valid,
            throttling_is_honoured,
            slow_endpoint_does_not_delay_opens,
            postgres_restart_is_survived,
            dispose_leaves_no_task_and_no_credential,
            drop_without_dispose_stops_the_refresher,
            no_token_in_debug_or_logs,
            plaintext_is_refused,
            bad_settings_are_refused,
        );

        // Builds its own runtimes: the point is a runtime that ends under a credential.
        #[test]
        fn runtime_affinity() {
            $crate::scenarios::runtime_affinity::<$adapter>();
        }
    };
    (@multi_thread $adapter:ty; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                $crate::scenarios::$scenario::<$adapter>().await;
            }
        )*
    };
}
