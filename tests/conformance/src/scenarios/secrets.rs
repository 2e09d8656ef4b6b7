//! No secret in `Debug` output or in logs at any level, for every method.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloud_pg_auth::Secret;

use super::emulator;
use crate::{Adapter, EngineOptions, Method};

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
