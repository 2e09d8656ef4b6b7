//! Part of `cargo xtask bench`: the time to open a new connection and the round trip of a
//! query on a pooled (already open) connection, for every adapter in one phase, so sqlx 0.8,
//! sqlx 0.9 and the tokio-postgres adapters are compared on the same machine state.
//!
//! The adapters take turns sample by sample (the first one rotates), so a slow moment of the
//! shared machine falls on all of them alike rather than on whichever ran then.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use cloud_pg_auth::BoxError;
use cloud_pg_auth::engine::chain_text;
use cloud_pg_auth_testkit::Emulator;
use serde::Serialize;

use crate::bench::{percentile, table};
use crate::{Adapter, EngineOptions, Method};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The adapter the others are compared with: tokio-postgres under deadpool.
pub const REFERENCE: &str = "deadpool";

/// Queries timed per turn of one adapter.
const QUERY_BATCH: usize = 50;

/// How much the phase does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LatencySizes {
    /// Timed opens per adapter.
    pub open_samples: usize,
    /// Timed queries per adapter.
    pub query_samples: usize,
}

impl LatencySizes {
    /// The sizes the figures are meant to be taken with.
    #[must_use]
    pub fn full() -> Self {
        Self {
            open_samples: 300,
            query_samples: 10_000,
        }
    }

    /// `--quick`.
    #[must_use]
    pub fn quick() -> Self {
        Self {
            open_samples: 100,
            query_samples: 2_000,
        }
    }
}

/// One adapter's figures. `null` figures come with an `error`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AdapterLatency {
    /// Opens timed.
    pub open_samples: usize,
    /// Median time to open a new connection (TCP, TLS verify-full, login with a cached Azure
    /// token) and run `SELECT current_user` on it.
    pub open_median_ms: Option<f64>,
    /// 99th percentile of the same.
    pub open_p99_ms: Option<f64>,
    /// `open_median_ms` / the reference adapter's.
    pub open_median_vs_reference: Option<f64>,
    /// Queries timed.
    pub query_samples: usize,
    /// Median round trip of `SELECT 1` (prepared, cached by the connection) on a connection
    /// held out of the pool, microseconds.
    pub query_median_us: Option<f64>,
    /// 99th percentile of the same, microseconds.
    pub query_p99_us: Option<f64>,
    /// `query_median_us` / the reference adapter's.
    pub query_median_vs_reference: Option<f64>,
    /// Why a figure is missing.
    pub error: Option<String>,
}

/// `latency` in `bench.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// The sizes used.
    pub sizes: LatencySizes,
    /// The adapter the ratios divide by.
    pub reference: &'static str,
    /// Figures per adapter.
    pub adapters: BTreeMap<&'static str, AdapterLatency>,
    /// Wall time of the phase.
    pub seconds: f64,
}

/// One adapter's engine in the phase, behind an object so different adapters can take turns.
pub trait Probe: Send {
    /// The adapter's name.
    fn name(&self) -> &'static str;
    /// Opens a new connection, runs `SELECT current_user` and discards it; milliseconds.
    fn open(&mut self) -> BoxFuture<'_, Result<f64, BoxError>>;
    /// Checks out the connection the queries run on.
    fn hold(&mut self) -> BoxFuture<'_, Result<(), BoxError>>;
    /// One `SELECT 1` on the held connection; microseconds.
    fn query(&mut self) -> BoxFuture<'_, Result<f64, BoxError>>;
    /// Returns the held connection and disposes of the engine.
    fn dispose(&mut self) -> BoxFuture<'_, ()>;
}

struct Engine<A: Adapter> {
    engine: A::Pooled,
    held: Option<A::Held>,
}

impl<A: Adapter> Probe for Engine<A> {
    fn name(&self) -> &'static str {
        A::NAME
    }

    fn open(&mut self) -> BoxFuture<'_, Result<f64, BoxError>> {
        Box::pin(async move {
            let started = Instant::now();
            A::current_user_on_new_connection(&self.engine).await?;
            Ok(started.elapsed().as_secs_f64() * 1e3)
        })
    }

    fn hold(&mut self) -> BoxFuture<'_, Result<(), BoxError>> {
        Box::pin(async move {
            self.held = Some(A::hold(&self.engine).await?);
            Ok(())
        })
    }

    fn query(&mut self) -> BoxFuture<'_, Result<f64, BoxError>> {
        Box::pin(async move {
            let held = self.held.as_mut().ok_or("no connection held")?;
            let started = Instant::now();
            A::select_one(held).await?;
            Ok(started.elapsed().as_secs_f64() * 1e6)
        })
    }

    fn dispose(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            drop(self.held.take());
            A::dispose(&self.engine).await;
        })
    }
}

/// Builds one adapter's engine for the phase (Azure managed identity, cached token).
pub type Start = for<'a> fn(&'a Emulator) -> BoxFuture<'a, Result<Box<dyn Probe>, BoxError>>;

/// [`Start`] for adapter `A`.
#[must_use]
pub fn start<A: Adapter>(emulator: &Emulator) -> BoxFuture<'_, Result<Box<dyn Probe>, BoxError>> {
    Box::pin(async move {
        let settings = Method::AzureManagedIdentity.settings(emulator);
        let engine = A::pooled(settings, EngineOptions::default()).await?;
        Ok(Box::new(Engine::<A> { engine, held: None }) as Box<dyn Probe>)
    })
}

/// What one adapter collected.
struct Samples {
    probe: Box<dyn Probe>,
    opens: Vec<f64>,
    queries: Vec<f64>,
    error: Option<String>,
}

impl Samples {
    fn ok(&self) -> bool {
        self.error.is_none()
    }

    fn fail(&mut self, what: &str, error: &BoxError) {
        self.error = Some(format!("{what}: {}", chain_text(error.as_ref())));
    }
}

/// Runs the phase for the adapters `starts` builds. `progress` gets a line per step.
pub async fn measure(
    emulator: &Emulator,
    starts: &[(&'static str, Start)],
    sizes: LatencySizes,
    progress: &(dyn Fn(String) + Sync),
) -> Latency {
    let started = Instant::now();
    emulator.reset().await;
    let mut all = Vec::new();
    let mut failed = BTreeMap::new();
    for (name, start) in starts {
        match start(emulator).await {
            Ok(probe) => all.push(Samples {
                probe,
                opens: Vec::new(),
                queries: Vec::new(),
                error: None,
            }),
            Err(e) => {
                failed.insert(
                    *name,
                    AdapterLatency {
                        error: Some(format!("engine: {}", chain_text(e.as_ref()))),
                        ..AdapterLatency::default()
                    },
                );
            }
        }
    }
    progress(format!(
        "latency: {} opens and {} pooled queries per adapter, adapters taking turns",
        sizes.open_samples, sizes.query_samples
    ));
    // Warm: the token is cached, TLS configs built, the front's role lookups hot.
    for s in &mut all {
        for _ in 0..5 {
            if let Err(e) = s.probe.open().await {
                s.fail("warm-up", &e);
                break;
            }
        }
    }
    for i in 0..sizes.open_samples {
        let n = all.len();
        for k in 0..n {
            let s = &mut all[(i + k) % n];
            if s.ok() {
                match s.probe.open().await {
                    Ok(ms) => s.opens.push(ms),
                    Err(e) => s.fail("open", &e),
                }
            }
        }
    }
    for s in &mut all {
        if s.ok()
            && let Err(e) = s.probe.hold().await
        {
            s.fail("checkout", &e);
        }
        // The first query prepares the statement; a few more settle the connection.
        for _ in 0..20 {
            if s.ok()
                && let Err(e) = s.probe.query().await
            {
                s.fail("warm-up query", &e);
            }
        }
    }
    let rounds = sizes.query_samples.div_ceil(QUERY_BATCH);
    for i in 0..rounds {
        let n = all.len();
        for k in 0..n {
            let s = &mut all[(i + k) % n];
            for _ in 0..QUERY_BATCH {
                if !s.ok() || s.queries.len() >= sizes.query_samples {
                    break;
                }
                match s.probe.query().await {
                    Ok(us) => s.queries.push(us),
                    Err(e) => s.fail("query", &e),
                }
            }
        }
    }
    for s in &mut all {
        s.probe.dispose().await;
    }
    emulator.reset().await;

    let mut adapters = failed;
    for s in &all {
        let median = |v: &[f64], places| percentile(v, 50.0).map(|x| round(x, places));
        let p99 = |v: &[f64], places| percentile(v, 99.0).map(|x| round(x, places));
        adapters.insert(
            s.probe.name(),
            AdapterLatency {
                open_samples: s.opens.len(),
                open_median_ms: median(&s.opens, 3),
                open_p99_ms: p99(&s.opens, 3),
                open_median_vs_reference: None,
                query_samples: s.queries.len(),
                query_median_us: median(&s.queries, 1),
                query_p99_us: p99(&s.queries, 1),
                query_median_vs_reference: None,
                error: s.error.clone(),
            },
        );
    }
    if let Some(reference) = adapters.get(REFERENCE).cloned() {
        for figures in adapters.values_mut() {
            figures.open_median_vs_reference =
                ratio(figures.open_median_ms, reference.open_median_ms);
            figures.query_median_vs_reference =
                ratio(figures.query_median_us, reference.query_median_us);
        }
    }
    Latency {
        sizes,
        reference: REFERENCE,
        adapters,
        seconds: round(started.elapsed().as_secs_f64(), 1),
    }
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

fn show(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

impl Latency {
    /// The figures as a text table, errors below it.
    #[must_use]
    pub fn table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .adapters
            .iter()
            .map(|(name, f)| {
                vec![
                    (*name).to_string(),
                    show(f.open_median_ms),
                    show(f.open_p99_ms),
                    show(f.open_median_vs_reference),
                    show(f.query_median_us),
                    show(f.query_p99_us),
                    show(f.query_median_vs_reference),
                ]
            })
            .collect();
        let vs = format!("/ {}", self.reference);
        let mut out = table(
            &[
                "adapter",
                "open median ms",
                "open p99 ms",
                &vs,
                "pooled query median us",
                "query p99 us",
                &vs,
            ],
            &rows,
        );
        for (name, f) in &self.adapters {
            if let Some(e) = &f.error {
                out.push_str(&format!("  {name}: {e}\n"));
            }
        }
        out
    }
}

/// Notes for `bench.json` on how to read `latency`.
#[must_use]
pub fn notes() -> Vec<String> {
    [
        "latency: every adapter in one phase, taking turns sample by sample; an open is a new connection (TCP, TLS verify-full, login with a cached Azure token) plus SELECT current_user, then the connection is discarded.",
        "latency: the pooled query is SELECT 1 on a connection held out of the pool, prepared once and cached by the connection (sqlx's statement cache, deadpool-postgres's prepare_cached); sqlx's connections go through the engine's local relay (a Unix socket), which adds a hop to every round trip.",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect()
}
