//! The figures each bench phase produces, as they appear in `bench.json`.

use serde::Serialize;

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
