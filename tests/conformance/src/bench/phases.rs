//! The bench's phases for one adapter: herd, churn, connect overhead, slow endpoint, outage
//! and opens, each against the one emulator, one after the other.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use cloud_pg_auth::BoxError;
use cloud_pg_auth::engine::chain_text;
use cloud_pg_auth_testkit::{Emulator, Faults};

use super::stats::{ms, percentile, ratio, round};
use super::{AdapterFigures, Churn, Herd, Opens, Outage, Overhead, Phase, Sizes, Slow};
use crate::{Adapter, EngineOptions, Method};
pub(super) fn token_requests(emulator: &Emulator) -> u64 {
    emulator.stats().token_requests.total
}

fn tokens_issued(emulator: &Emulator) -> u64 {
    emulator.stats().tokens_issued.total
}

pub(super) fn text(error: &BoxError) -> String {
    chain_text(error.as_ref())
}

/// Puts the emulator back to its start state (no faults, default token lifetime) and then
/// applies `faults`.
pub(super) async fn fresh_faults(emulator: &Emulator, faults: Faults) -> Result<(), BoxError> {
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
