//! `cargo xtask bench`: figures, not assertions. Each adapter is measured against one
//! emulator, one phase at a time (faults and counters are the emulator's, so phases never
//! overlap), and the Python peer (`xtask/peer/phoenix_peer.py`) runs against the same
//! emulator in the same run, so the figures are comparable.
//!
//! Token requests are always read as a difference of the emulator's counter around the
//! phase, so nothing depends on a reset happening at the right moment.
//!
//! Why one long file: the six adapter phases share the emulator set-up, the statistics and the
//! table rendering defined here; the split by job (machine facts, statistics, phases, the
//! Python driver, rendering) is planned with issue 12. New phases go in modules of their own
//! (`latency.rs`, `bench_proxy.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use cloud_pg_auth::{BoxError, chain_text};
use cloud_pg_auth_testkit::{Emulator, Faults};
use serde::Serialize;
use serde_json::Value;

use crate::{Adapter, EngineOptions, Method};

/// The machine the figures were taken on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Cores this process may use.
    pub cores: usize,
    /// The CPU's model name.
    pub cpu_model: String,
    /// Distribution and kernel.
    pub os: String,
}

impl Machine {
    /// Reads `/proc/cpuinfo`, `/etc/os-release` and the kernel release; `unknown` where a
    /// file is missing (another OS).
    #[must_use]
    pub fn detect() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        Self {
            cores: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            cpu_model: read("/proc/cpuinfo")
                .as_deref()
                .and_then(cpu_model)
                .unwrap_or_else(|| "unknown".into()),
            os: os_name(
                read("/etc/os-release").as_deref(),
                read("/proc/sys/kernel/osrelease").as_deref(),
            ),
        }
    }
}

/// The CPU model from `/proc/cpuinfo`: `model name` on x86, `Model` or `Hardware` on ARM.
#[must_use]
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    ["model name", "Model", "Hardware", "cpu model"]
        .iter()
        .find_map(|key| {
            cpuinfo.lines().find_map(|line| {
                let (k, v) = line.split_once(':')?;
                (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_string())
            })
        })
}

/// `PRETTY_NAME` from `/etc/os-release` and the kernel release, e.g.
/// `Debian GNU/Linux 12 (bookworm), Linux 6.1.0`.
#[must_use]
pub fn os_name(os_release: Option<&str>, kernel: Option<&str>) -> String {
    let pretty = os_release.and_then(|text| {
        text.lines().find_map(|line| {
            let value = line.strip_prefix("PRETTY_NAME=")?;
            Some(value.trim().trim_matches('"').to_string())
        })
    });
    let kernel = kernel
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| format!("{} {k}", capitalised(std::env::consts::OS)));
    match (pretty, kernel) {
        (Some(p), Some(k)) => format!("{p}, {k}"),
        (Some(p), None) => p,
        (None, Some(k)) => k,
        (None, None) => std::env::consts::OS.to_string(),
    }
}

fn capitalised(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

/// How much each measurement does. [`Sizes::full`] is what the figures are meant to be;
/// [`Sizes::quick`] fits the whole bench in under two minutes on the 2-core machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sizes {
    /// Concurrent checkouts on a cold pool.
    pub herd_checkouts: usize,
    /// The pool's maximum size in the herd.
    pub herd_pool_max: usize,
    /// New connections the churn opens at least.
    pub churn_min_opens: u64,
    /// Token lifetimes the churn spans at least.
    pub churn_lifetimes: u32,
    /// Token lifetime during the churn, seconds.
    pub churn_token_lifetime_s: u64,
    /// Concurrent tasks opening connections in the churn.
    pub churn_tasks: usize,
    /// The churn stops here even if it has not opened `churn_min_opens` yet, seconds.
    pub churn_max_s: u64,
    /// Timed opens per credential in the connect-overhead comparison.
    pub overhead_samples: usize,
    /// Token lifetime in the slow-endpoint phases, seconds (each phase spans a refresh).
    pub slow_token_lifetime_s: u64,
    /// Latency added to the identity endpoint in the slow phase.
    pub slow_latency_ms: u64,
    /// Token lifetime in the outage phase, seconds (the outage spans the refresh time).
    pub outage_token_lifetime_s: u64,
    /// New connections in the Python-vs-Rust opens comparison.
    pub opens: usize,
    /// Concurrent workers in the opens comparison.
    pub opens_concurrency: usize,
}

impl Sizes {
    /// The sizes the figures are specified with.
    #[must_use]
    pub fn full() -> Self {
        Self {
            herd_checkouts: 200,
            herd_pool_max: 20,
            churn_min_opens: 3000,
            churn_lifetimes: 3,
            churn_token_lifetime_s: 5,
            churn_tasks: 8,
            churn_max_s: 180,
            overhead_samples: 200,
            slow_token_lifetime_s: 5,
            slow_latency_ms: 500,
            outage_token_lifetime_s: 8,
            opens: 1000,
            opens_concurrency: 8,
        }
    }

    /// Reduced sizes for `--quick`; [`Sizes::reductions`] lists what differs.
    #[must_use]
    pub fn quick() -> Self {
        Self {
            churn_min_opens: 500,
            churn_lifetimes: 2,
            churn_token_lifetime_s: 3,
            churn_max_s: 20,
            overhead_samples: 60,
            slow_token_lifetime_s: 3,
            outage_token_lifetime_s: 4,
            opens: 300,
            ..Self::full()
        }
    }

    /// `name: full -> this` for every size that differs from [`Sizes::full`].
    #[must_use]
    pub fn reductions(&self) -> Vec<String> {
        let (Ok(Value::Object(full)), Ok(Value::Object(this))) = (
            serde_json::to_value(Self::full()),
            serde_json::to_value(self),
        ) else {
            return Vec::new();
        };
        full.iter()
            .filter_map(|(name, f)| {
                let t = this.get(name)?;
                (t != f).then(|| format!("{name}: {f} -> {t}"))
            })
            .collect()
    }
}

/// The nearest-rank percentile `p` (0 to 100) of `values`; `None` when empty.
#[must_use]
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10_f64.powi(places);
    (x * f).round() / f
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(round(a / b, 3)),
        _ => None,
    }
}

fn token_requests(emulator: &Emulator) -> u64 {
    emulator.stats().token_requests.total
}

fn tokens_issued(emulator: &Emulator) -> u64 {
    emulator.stats().tokens_issued.total
}

fn text(error: &BoxError) -> String {
    chain_text(error.as_ref())
}

/// Puts the emulator back to its start state (no faults, default token lifetime) and then
/// applies `faults`.
async fn fresh_faults(emulator: &Emulator, faults: Faults) -> Result<(), BoxError> {
    emulator.reset().await;
    emulator.set_faults(faults).await?;
    Ok(())
}

fn lifetime(secs: u64) -> Faults {
    Faults {
        token_lifetime: Some(secs),
        ..Faults::default()
    }
}

/// A cold pool meets `herd_checkouts` concurrent checkouts.
#[derive(Debug, Clone, Serialize)]
pub struct Herd {
    /// Token requests the emulator saw, from building the engine to the last checkout.
    pub token_requests: u64,
    /// Checkouts made.
    pub checkouts: usize,
    /// The pool's maximum size.
    pub pool_max: usize,
    /// Checkouts that failed.
    pub failures: u64,
    /// Wall time of the herd.
    pub seconds: f64,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

/// New connections, all the time, over several token lifetimes.
#[derive(Debug, Clone, Serialize)]
pub struct Churn {
    /// Connections opened.
    pub opens: u64,
    /// Opens that failed.
    pub failures: u64,
    /// Token requests the emulator saw during the churn (including the first fetch).
    pub token_requests: u64,
    /// Token lifetimes the churn spanned.
    pub lifetimes: f64,
    /// The token lifetime, seconds.
    pub token_lifetime_s: u64,
    /// Concurrent tasks.
    pub tasks: usize,
    /// Wall time.
    pub seconds: f64,
    /// Opens per second.
    pub opens_per_s: f64,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

/// Open time with a cached cloud token against open time with a static password.
#[derive(Debug, Clone, Serialize)]
pub struct Overhead {
    /// Timed opens per credential.
    pub samples: usize,
    /// Median open (+ `SELECT current_user`) with a cached Azure managed-identity token.
    pub median_ms_cloud_token: f64,
    /// The same with `Method::Password`.
    pub median_ms_password: f64,
}

/// One phase of the slow-endpoint comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// Latency added to the identity endpoint.
    pub latency_ms: u64,
    /// Connections opened.
    pub opens: usize,
    /// Opens that failed.
    pub failures: u64,
    /// Tokens issued during the phase (background refreshes).
    pub refreshes: u64,
    /// Median open time.
    pub median_ms: f64,
    /// 99th percentile open time.
    pub p99_ms: f64,
    /// Slowest open.
    pub max_ms: f64,
    /// Wall time.
    pub seconds: f64,
}

/// The slow-endpoint comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Slow {
    /// The token lifetime, seconds.
    pub token_lifetime_s: u64,
    /// No added latency.
    pub none: Phase,
    /// `slow_latency_ms` added.
    pub slow: Phase,
}

/// New connections while the identity endpoint is down and the token is still valid.
#[derive(Debug, Clone, Serialize)]
pub struct Outage {
    /// Opens attempted while down.
    pub opens: u64,
    /// Of which failed.
    pub failures: u64,
    /// Refreshes the credential tried and failed while down.
    pub refresh_failures: u64,
    /// Whether the outage lasted past the credential's planned refresh time.
    pub spanned_refresh_time: bool,
    /// The token lifetime, seconds.
    pub token_lifetime_s: u64,
    /// How long the endpoint was down.
    pub seconds: f64,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

/// New connections with a cached token, `concurrency` at a time (the Rust side of the
/// comparison with the Python peer).
#[derive(Debug, Clone, Serialize)]
pub struct Opens {
    /// The adapter measured.
    pub adapter: &'static str,
    /// Connections opened.
    pub opens: usize,
    /// Concurrent workers.
    pub concurrency: usize,
    /// Opens that failed.
    pub failures: u64,
    /// Wall time.
    pub seconds: f64,
    /// Opens per second.
    pub opens_per_s: f64,
}

/// Every figure of one adapter. A phase that could not run leaves its figure `null` and
/// says why in `errors`.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterFigures {
    /// Token requests for `herd_checkouts` concurrent checkouts on a cold pool.
    pub herd_token_requests: Option<u64>,
    /// The herd in detail.
    pub herd: Option<Herd>,
    /// The churn.
    pub churn: Option<Churn>,
    /// Median open time with a cached cloud token / the same with a static password.
    pub connect_overhead_ratio: Option<f64>,
    /// The two medians.
    pub connect_overhead: Option<Overhead>,
    /// p99 open time with a slow identity endpoint / the same with none.
    pub slow_endpoint_p99_ratio: Option<f64>,
    /// The two phases.
    pub slow_endpoint: Option<Slow>,
    /// Failed opens while the identity endpoint was down and the token still valid.
    pub outage_failures: Option<u64>,
    /// The outage in detail.
    pub outage: Option<Outage>,
    /// Seconds this adapter's measurements took.
    pub seconds: f64,
    /// Phases that could not run, with the error.
    pub errors: Vec<String>,
}

/// Runs every measurement for adapter `A`, one after the other. `progress` gets a line per
/// phase.
pub async fn run_adapter<A: Adapter>(
    emulator: &Emulator,
    sizes: &Sizes,
    progress: &(dyn Fn(String) + Sync),
) -> AdapterFigures {
    let started = Instant::now();
    let say = |what: &str| progress(format!("{:<13} {what}", A::NAME));
    let mut errors = Vec::new();

    say(&format!(
        "herd: {} checkouts on a cold pool of {}",
        sizes.herd_checkouts, sizes.herd_pool_max
    ));
    let herd = keep(&mut errors, "herd", herd::<A>(emulator, sizes).await);
    say(&format!(
        "churn: >= {} new connections over >= {} lifetimes of {} s tokens",
        sizes.churn_min_opens, sizes.churn_lifetimes, sizes.churn_token_lifetime_s
    ));
    let churn = keep(&mut errors, "churn", churn::<A>(emulator, sizes).await);
    say(&format!(
        "connect overhead: {} interleaved opens per credential",
        sizes.overhead_samples
    ));
    let overhead = keep(
        &mut errors,
        "connect overhead",
        connect_overhead::<A>(emulator, sizes).await,
    );
    say(&format!(
        "slow endpoint: {} ms identity latency vs none, {} s tokens",
        sizes.slow_latency_ms, sizes.slow_token_lifetime_s
    ));
    let slow = keep(
        &mut errors,
        "slow endpoint",
        slow_endpoint::<A>(emulator, sizes).await,
    );
    say(&format!(
        "outage: identity endpoint down, {} s token still valid",
        sizes.outage_token_lifetime_s
    ));
    let outage = keep(&mut errors, "outage", outage::<A>(emulator, sizes).await);
    // Leave the emulator as the next adapter expects it, whatever failed above.
    emulator.reset().await;

    AdapterFigures {
        herd_token_requests: herd.as_ref().map(|h| h.token_requests),
        herd,
        churn,
        connect_overhead_ratio: overhead
            .as_ref()
            .and_then(|o| ratio(Some(o.median_ms_cloud_token), Some(o.median_ms_password))),
        connect_overhead: overhead,
        slow_endpoint_p99_ratio: slow
            .as_ref()
            .and_then(|s| ratio(Some(s.slow.p99_ms), Some(s.none.p99_ms))),
        slow_endpoint: slow,
        outage_failures: outage.as_ref().map(|o| o.failures),
        outage,
        seconds: round(started.elapsed().as_secs_f64(), 1),
        errors,
    }
}

/// The figure of a phase, or `None` with the error noted: one failed phase does not stop
/// the others.
fn keep<T>(errors: &mut Vec<String>, phase: &str, result: Result<T, BoxError>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(format!("{phase}: {}", text(&e)));
            None
        }
    }
}

fn managed_identity(emulator: &Emulator) -> cloud_pg_auth::Settings {
    Method::AzureManagedIdentity.settings(emulator)
}

/// Collects failures of concurrent workers: a count and the first message.
#[derive(Default)]
struct Failures {
    count: AtomicU64,
    first: Mutex<Option<String>>,
}

impl Failures {
    fn record(&self, message: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .first
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        first.get_or_insert(message);
    }

    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn first(&self) -> Option<String> {
        self.first
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

async fn herd<A: Adapter>(emulator: &Emulator, sizes: &Sizes) -> Result<Herd, BoxError> {
    fresh_faults(emulator, Faults::default()).await?;
    // Counted from before the engine exists, so a fetch made while building it is included.
    let before = token_requests(emulator);
    let options = EngineOptions {
        max_size: sizes.herd_pool_max,
        connection_timeout: Duration::from_secs(60),
        ..EngineOptions::default()
    };
    let engine = Arc::new(A::pooled(managed_identity(emulator), options).await?);
    let failures = Arc::new(Failures::default());
    let started = Instant::now();
    let tasks: Vec<_> = (0..sizes.herd_checkouts)
        .map(|_| {
            let engine = Arc::clone(&engine);
            let failures = Arc::clone(&failures);
            tokio::spawn(async move {
                if let Err(e) = A::current_user(&engine).await {
                    failures.record(text(&e));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let token_requests = token_requests(emulator) - before;
    A::dispose(&engine).await;
    Ok(Herd {
        token_requests,
        checkouts: sizes.herd_checkouts,
        pool_max: sizes.herd_pool_max,
        failures: failures.count(),
        seconds: round(seconds, 3),
        first_error: failures.first(),
    })
}

async fn churn<A: Adapter>(emulator: &Emulator, sizes: &Sizes) -> Result<Churn, BoxError> {
    let token_lifetime = Duration::from_secs(sizes.churn_token_lifetime_s);
    fresh_faults(emulator, lifetime(sizes.churn_token_lifetime_s)).await?;
    let before = token_requests(emulator);
    let options = EngineOptions {
        max_size: sizes.churn_tasks.max(10),
        ..EngineOptions::default()
    };
    let engine = Arc::new(A::pooled(managed_identity(emulator), options).await?);
    let min_run = token_lifetime * sizes.churn_lifetimes;
    let max_run = Duration::from_secs(sizes.churn_max_s).max(min_run);
    let opens = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Failures::default());
    let started = Instant::now();
    let min_opens = sizes.churn_min_opens;
    let tasks: Vec<_> = (0..sizes.churn_tasks)
        .map(|_| {
            let (engine, opens, failures) = (
                Arc::clone(&engine),
                Arc::clone(&opens),
                Arc::clone(&failures),
            );
            tokio::spawn(async move {
                loop {
                    let done = opens.load(Ordering::Relaxed) + failures.count();
                    let elapsed = started.elapsed();
                    if elapsed >= max_run || (elapsed >= min_run && done >= min_opens) {
                        break;
                    }
                    match A::current_user_on_new_connection(&engine).await {
                        Ok(_) => {
                            opens.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => failures.record(text(&e)),
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let token_requests = token_requests(emulator) - before;
    A::dispose(&engine).await;
    let opens = opens.load(Ordering::Relaxed);
    Ok(Churn {
        opens,
        failures: failures.count(),
        token_requests,
        lifetimes: round(seconds / token_lifetime.as_secs_f64(), 2),
        token_lifetime_s: sizes.churn_token_lifetime_s,
        tasks: sizes.churn_tasks,
        seconds: round(seconds, 2),
        opens_per_s: round(opens as f64 / seconds, 1),
        first_error: failures.first(),
    })
}

async fn timed_open<A: Adapter>(engine: &A::Pooled) -> Result<f64, BoxError> {
    let started = Instant::now();
    A::current_user_on_new_connection(engine).await?;
    Ok(ms(started.elapsed()))
}

async fn connect_overhead<A: Adapter>(
    emulator: &Emulator,
    sizes: &Sizes,
) -> Result<Overhead, BoxError> {
    fresh_faults(emulator, Faults::default()).await?;
    let cloud = A::pooled(managed_identity(emulator), EngineOptions::default()).await?;
    let password = A::pooled(
        Method::Password.settings(emulator),
        EngineOptions::default(),
    )
    .await?;
    let outcome = async {
        // Warm both: the cloud token is fetched and cached, TLS configs built, the front's
        // role lookups are hot.
        for _ in 0..5 {
            timed_open::<A>(&cloud).await?;
            timed_open::<A>(&password).await?;
        }
        let (mut with_token, mut with_password) = (Vec::new(), Vec::new());
        for i in 0..sizes.overhead_samples {
            // Alternate which goes first, so neither always runs right after the other.
            if i % 2 == 0 {
                with_token.push(timed_open::<A>(&cloud).await?);
                with_password.push(timed_open::<A>(&password).await?);
            } else {
                with_password.push(timed_open::<A>(&password).await?);
                with_token.push(timed_open::<A>(&cloud).await?);
            }
        }
        Ok::<_, BoxError>(Overhead {
            samples: sizes.overhead_samples,
            median_ms_cloud_token: round(percentile(&with_token, 50.0).unwrap_or(0.0), 3),
            median_ms_password: round(percentile(&with_password, 50.0).unwrap_or(0.0), 3),
        })
    }
    .await;
    A::dispose(&cloud).await;
    A::dispose(&password).await;
    outcome
}

/// Opens connections one after another for at least `min_run` and until a token has been
/// issued during the phase (so the phase spans a refresh), or `max_run`.
async fn phase<A: Adapter>(
    engine: &A::Pooled,
    emulator: &Emulator,
    latency_ms: u64,
    min_run: Duration,
    max_run: Duration,
) -> Phase {
    let issued_before = tokens_issued(emulator);
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut failures = 0;
    loop {
        let elapsed = started.elapsed();
        let refreshed = tokens_issued(emulator) > issued_before;
        if elapsed >= max_run || (elapsed >= min_run && refreshed) {
            break;
        }
        match timed_open::<A>(engine).await {
            Ok(t) => samples.push(t),
            Err(_) => failures += 1,
        }
    }
    let stat = |p| round(percentile(&samples, p).unwrap_or(0.0), 3);
    Phase {
        latency_ms,
        opens: samples.len(),
        failures,
        refreshes: tokens_issued(emulator) - issued_before,
        median_ms: stat(50.0),
        p99_ms: stat(99.0),
        max_ms: stat(100.0),
        seconds: round(started.elapsed().as_secs_f64(), 2),
    }
}

async fn slow_endpoint<A: Adapter>(emulator: &Emulator, sizes: &Sizes) -> Result<Slow, BoxError> {
    let token_lifetime = Duration::from_secs(sizes.slow_token_lifetime_s);
    fresh_faults(emulator, lifetime(sizes.slow_token_lifetime_s)).await?;
    let engine = A::pooled(managed_identity(emulator), EngineOptions::default()).await?;
    let outcome = async {
        // Warm-up: the first token, TLS, the front's caches.
        let warm = Instant::now();
        while warm.elapsed() < Duration::from_millis(500) {
            timed_open::<A>(&engine).await?;
        }
        let (min_run, max_run) = (token_lifetime, token_lifetime * 4 + Duration::from_secs(2));
        let none = phase::<A>(&engine, emulator, 0, min_run, max_run).await;
        emulator
            .set_faults(Faults {
                latency_ms: Some(sizes.slow_latency_ms),
                ..Faults::default()
            })
            .await?;
        let slow = phase::<A>(&engine, emulator, sizes.slow_latency_ms, min_run, max_run).await;
        Ok::<_, BoxError>(Slow {
            token_lifetime_s: sizes.slow_token_lifetime_s,
            none,
            slow,
        })
    }
    .await;
    A::dispose(&engine).await;
    outcome
}

async fn outage<A: Adapter>(emulator: &Emulator, sizes: &Sizes) -> Result<Outage, BoxError> {
    fresh_faults(emulator, lifetime(sizes.outage_token_lifetime_s)).await?;
    let engine = A::pooled(managed_identity(emulator), EngineOptions::default()).await?;
    let outcome = async {
        A::current_user_on_new_connection(&engine).await?;
        let status = A::status(&engine);
        let expires_at = status
            .auth
            .expires_at
            .ok_or("the credential reports no token expiry")?;
        emulator
            .set_faults(Faults {
                down: Some(true),
                ..Faults::default()
            })
            .await?;
        let started = Instant::now();
        // Stop short of the expiry: the figure is about opens while the token is valid.
        let until = expires_at - Duration::from_millis(600);
        let (mut opens, mut failures, mut first_error) = (0, 0, None);
        while SystemTime::now() < until {
            opens += 1;
            if let Err(e) = A::current_user_on_new_connection(&engine).await {
                failures += 1;
                first_error.get_or_insert_with(|| text(&e));
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let after = A::status(&engine);
        Ok::<_, BoxError>(Outage {
            opens,
            failures,
            refresh_failures: after
                .auth
                .failure_count
                .saturating_sub(status.auth.failure_count),
            spanned_refresh_time: status.auth.refresh_at.is_some_and(|r| r < until),
            token_lifetime_s: sizes.outage_token_lifetime_s,
            seconds: round(seconds, 2),
            first_error,
        })
    }
    .await;
    let up = emulator
        .set_faults(Faults {
            down: Some(false),
            ..Faults::default()
        })
        .await;
    A::dispose(&engine).await;
    let outage = outcome?;
    up?;
    Ok(outage)
}

/// `n` new connections with a warm Azure managed-identity credential, `concurrency` at a
/// time: the same workload as the peer's `opens N CONCURRENCY`.
pub async fn opens<A: Adapter>(
    emulator: &Emulator,
    n: usize,
    concurrency: usize,
) -> Result<Opens, BoxError> {
    fresh_faults(emulator, Faults::default()).await?;
    let options = EngineOptions {
        max_size: concurrency.max(10),
        ..EngineOptions::default()
    };
    let engine = Arc::new(A::pooled(managed_identity(emulator), options).await?);
    let outcome = async {
        // Warm, like the peer: the token is cached before the clock starts.
        A::current_user_on_new_connection(&engine).await?;
        let next = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(Failures::default());
        let started = Instant::now();
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (engine, next, failures) = (
                    Arc::clone(&engine),
                    Arc::clone(&next),
                    Arc::clone(&failures),
                );
                tokio::spawn(async move {
                    while next.fetch_add(1, Ordering::Relaxed) < n {
                        if let Err(e) = A::current_user_on_new_connection(&engine).await {
                            failures.record(text(&e));
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await?;
        }
        let seconds = started.elapsed().as_secs_f64();
        Ok::<_, BoxError>(Opens {
            adapter: A::NAME,
            opens: n,
            concurrency,
            failures: failures.count(),
            seconds: round(seconds, 3),
            opens_per_s: round(n as f64 / seconds, 1),
        })
    }
    .await;
    A::dispose(&engine).await;
    outcome
}

/// How to run the Python peer.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The interpreter (the bench's virtual environment's `python`).
    pub python: PathBuf,
    /// `xtask/peer/phoenix_peer.py`.
    pub script: PathBuf,
}

/// The Python peer's figures, measured against the same emulator.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PeerFigures {
    /// Token requests the emulator saw for the peer's herd.
    pub herd_token_requests: Option<u64>,
    /// New connections per second, same `opens` and `opens_concurrency` as the Rust side.
    pub opens_per_s: Option<f64>,
    /// Installed package versions (and Python's).
    pub packages: BTreeMap<String, String>,
    /// The script's own report of its herd.
    pub herd: Option<Value>,
    /// The script's own report of its opens.
    pub opens: Option<Value>,
    /// What could not run, with the error.
    pub errors: Vec<String>,
}

/// The last line of `stdout` that parses as a JSON object.
#[must_use]
pub fn last_json_object(stdout: &str) -> Option<Value> {
    stdout
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
        .find(Value::is_object)
}

impl Peer {
    /// Runs the script with the emulator's exports as its environment; returns its JSON.
    /// A non-zero exit with a JSON report (failed checkouts) still returns the report.
    pub async fn run(&self, emulator: &Emulator, args: &[String]) -> Result<Value, BoxError> {
        let child = tokio::process::Command::new(&self.python)
            .arg(&self.script)
            .args(args)
            .envs(emulator.env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", self.python.display()))?;
        let output = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
            .await
            .map_err(|_| {
                format!(
                    "{} {} did not finish within 300 s",
                    self.script.display(),
                    args.join(" ")
                )
            })??;
        let stdout = String::from_utf8_lossy(&output.stdout);
        match last_json_object(&stdout) {
            Some(report) => Ok(report),
            None => {
                // The script prints no secret; a Python traceback names code, not values.
                let stderr = String::from_utf8_lossy(&output.stderr);
                let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                Err(format!(
                    "{} {} exited with {} and no report: {}",
                    self.script.display(),
                    args.join(" "),
                    output.status,
                    tail.join(" | ")
                )
                .into())
            }
        }
    }

    /// The peer's herd (token requests measured here, around the script) and opens.
    pub async fn measure(&self, emulator: &Emulator, sizes: &Sizes) -> PeerFigures {
        let mut figures = PeerFigures::default();
        let herd_args = vec![
            "herd".to_string(),
            sizes.herd_checkouts.to_string(),
            sizes.herd_pool_max.to_string(),
        ];
        let outcome = async {
            fresh_faults(emulator, Faults::default()).await?;
            let before = token_requests(emulator);
            let report = self.run(emulator, &herd_args).await?;
            Ok::<_, BoxError>((token_requests(emulator) - before, report))
        }
        .await;
        match outcome {
            Ok((requests, report)) => {
                figures.herd_token_requests = Some(requests);
                figures.herd = Some(report);
            }
            Err(e) => figures.errors.push(format!("herd: {}", text(&e))),
        }
        let opens_args = vec![
            "opens".to_string(),
            sizes.opens.to_string(),
            sizes.opens_concurrency.to_string(),
        ];
        let outcome = async {
            fresh_faults(emulator, Faults::default()).await?;
            self.run(emulator, &opens_args).await
        }
        .await;
        match outcome {
            Ok(report) => {
                figures.opens_per_s = report.get("opens_per_s").and_then(Value::as_f64);
                figures.opens = Some(report);
            }
            Err(e) => figures.errors.push(format!("opens: {}", text(&e))),
        }
        let packages = figures
            .herd
            .iter()
            .chain(figures.opens.iter())
            .find_map(|r| r.get("packages").cloned());
        let packages = match packages {
            Some(p) => Some(p),
            None => self.run(emulator, &["versions".to_string()]).await.ok(),
        };
        // Kept once, at the top of the peer's figures, not in each report.
        for report in [&mut figures.herd, &mut figures.opens]
            .into_iter()
            .flatten()
        {
            if let Some(map) = report.as_object_mut() {
                map.remove("packages");
            }
        }
        if let Some(Value::Object(map)) = packages {
            figures.packages = map
                .into_iter()
                .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                .collect();
        }
        for (what, report) in [("herd", &figures.herd), ("opens", &figures.opens)] {
            if let Some(r) = report
                && r.get("failures").and_then(Value::as_u64).unwrap_or(0) > 0
            {
                let first = r.get("first_error").and_then(Value::as_str).unwrap_or("?");
                figures
                    .errors
                    .push(format!("{what}: failed checkouts, first: {first}"));
            }
        }
        emulator.reset().await;
        figures
    }
}

/// `bench.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where the figures were taken.
    pub machine: Machine,
    /// The command that produced them.
    pub command: String,
    /// Whether the sizes were reduced.
    pub quick: bool,
    /// Figures per adapter.
    pub adapters: BTreeMap<String, AdapterFigures>,
    /// The Python peer.
    pub peer_python: PeerFigures,
    /// The Rust side of the opens comparison (deadpool).
    pub rust_opens_per_s: Option<f64>,
    /// It in detail.
    pub rust_opens: Option<Opens>,
    /// Open time and pooled query round trip, every adapter in one phase.
    pub latency: Option<crate::latency::Latency>,
    /// `pgauth proxy` ÷ direct: `proxy_pgbench_select_ratio`, `proxy_open_ratio` and their
    /// raw figures, as top-level keys.
    #[serde(flatten)]
    pub proxy: crate::bench_proxy::ProxyFigures,
    /// The sizes used.
    pub sizes: Sizes,
    /// What `--quick` reduced, `name: full -> quick`.
    pub reduced: Vec<String>,
    /// What the figures include and what they do not.
    pub notes: Vec<String>,
    /// Wall time of the whole bench.
    pub seconds: f64,
}

/// What a reader of `bench.json` needs to know to read the figures right.
#[must_use]
pub fn notes() -> Vec<String> {
    [
        "Everything runs on one machine: the emulator (PostgreSQL, its token-checking front, the identity endpoints), the adapters and the Python peer share the same cores.",
        "An 'open' is a new physical connection (TCP, TLS verify-full, login) plus one SELECT current_user, then the connection is discarded.",
        "connect_overhead_ratio also reflects the front's own check of the credential: an RS256 JWT for the cloud token, a SCRAM-SHA-256 verifier (PBKDF2) for the password.",
        "herd_token_requests counts identity requests from building a cold engine to the last of the concurrent checkouts; the peer's is counted around the whole script run.",
        "Token requests are differences of the emulator's counters around each phase; phases never overlap.",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect()
}

/// A plain text table: a header, a rule, rows; columns padded to their widest cell.
#[must_use]
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            } else {
                widths.push(cell.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            let _ = write!(out, "{cell}{}  ", " ".repeat(pad));
        }
        out.trim_end().to_string()
    };
    let mut out = line(&mut headers.iter().copied());
    out.push('\n');
    out.push_str(&line(
        &mut widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
    ));
    out.push('\n');
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
        out.push('\n');
    }
    out
}

fn show<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

impl Report {
    /// The figures as text tables.
    #[must_use]
    pub fn tables(&self) -> String {
        let headers = [
            "adapter",
            "herd token req",
            "churn opens",
            "fail",
            "token req",
            "lifetimes",
            "overhead ratio",
            "slow p99 ratio",
            "p99 ms none/slow",
            "outage fails",
        ];
        let rows: Vec<Vec<String>> = self
            .adapters
            .iter()
            .map(|(name, f)| {
                let churn = f.churn.as_ref();
                let slow = f.slow_endpoint.as_ref();
                vec![
                    name.clone(),
                    show(f.herd_token_requests),
                    show(churn.map(|c| c.opens)),
                    show(churn.map(|c| c.failures)),
                    show(churn.map(|c| c.token_requests)),
                    show(churn.map(|c| c.lifetimes)),
                    show(f.connect_overhead_ratio),
                    show(f.slow_endpoint_p99_ratio),
                    show(slow.map(|s| format!("{}/{}", s.none.p99_ms, s.slow.p99_ms))),
                    show(f.outage_failures),
                ]
            })
            .collect();
        let mut out = table(&headers, &rows);
        out.push('\n');
        let peer = &self.peer_python;
        let rows = vec![
            vec![
                "python peer (SQLAlchemy + asyncpg + azure-identity)".to_string(),
                show(peer.herd_token_requests),
                show(peer.opens_per_s),
            ],
            vec![
                format!(
                    "rust ({})",
                    self.rust_opens.as_ref().map_or("deadpool", |o| o.adapter)
                ),
                show(
                    self.adapters
                        .get("deadpool")
                        .and_then(|f| f.herd_token_requests),
                ),
                show(self.rust_opens_per_s),
            ],
        ];
        out.push_str(&table(
            &[
                "same emulator, same workload",
                "herd token req",
                &format!(
                    "opens/s ({} opens, {} at a time)",
                    self.sizes.opens, self.sizes.opens_concurrency
                ),
            ],
            &rows,
        ));
        let errors: Vec<String> = self
            .adapters
            .iter()
            .flat_map(|(name, f)| f.errors.iter().map(move |e| format!("{name}: {e}")))
            .chain(peer.errors.iter().map(|e| format!("python peer: {e}")))
            .collect();
        if !errors.is_empty() {
            out.push_str("\nnot measured or failed:\n");
            for e in errors {
                let _ = writeln!(out, "  {e}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), Some(2.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn cpu_model_is_read_on_x86_and_arm() {
        let x86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nflags\t: fpu\n";
        assert_eq!(cpu_model(x86).as_deref(), Some("AMD EPYC 7B13"));
        let arm = "processor\t: 0\nBogoMIPS\t: 50.00\n\nModel\t: Raspberry Pi 4 Model B Rev 1.4\n";
        assert_eq!(
            cpu_model(arm).as_deref(),
            Some("Raspberry Pi 4 Model B Rev 1.4")
        );
        assert_eq!(cpu_model("processor : 0\n"), None);
    }

    #[test]
    fn os_name_joins_distribution_and_kernel() {
        let release = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n";
        let kernel = Some("6.1.0-18-amd64\n");
        let name = os_name(Some(release), kernel);
        assert!(
            name.starts_with("Debian GNU/Linux 12 (bookworm), "),
            "{name}"
        );
        assert!(name.ends_with(" 6.1.0-18-amd64"), "{name}");
        assert_eq!(
            os_name(Some(release), None),
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(os_name(None, None), std::env::consts::OS);
    }

    #[test]
    fn machine_is_detected_here() {
        let machine = Machine::detect();
        assert!(machine.cores >= 1);
        assert!(!machine.os.is_empty());
        assert!(!machine.cpu_model.is_empty());
    }

    #[test]
    fn quick_lists_what_it_reduced() {
        assert!(Sizes::full().reductions().is_empty());
        let reduced = Sizes::quick().reductions();
        assert!(
            reduced.contains(&"churn_min_opens: 3000 -> 500".to_string()),
            "{reduced:?}"
        );
        assert!(
            !reduced.iter().any(|r| r.starts_with("herd_checkouts")),
            "the herd is not reduced: {reduced:?}"
        );
    }

    #[test]
    fn tables_pad_columns() {
        let t = table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "a    bb\n---  --\nxxx  y\n");
    }

    #[test]
    fn the_peer_report_is_the_last_json_object() {
        let out = "warming up\n{\"mode\": \"opens\", \"opens_per_s\": 84.4}\n";
        let report = last_json_object(out).unwrap();
        assert_eq!(report["opens_per_s"], 84.4);
        assert_eq!(
            last_json_object("Traceback (most recent call last):\n  [1, 2]\n"),
            None
        );
    }

    #[test]
    fn ratios_need_a_positive_denominator() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(2.0)), None);
    }
}
