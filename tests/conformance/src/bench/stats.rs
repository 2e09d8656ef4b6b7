//! How much each measurement does ([`Sizes`]) and the statistics the figures are made of.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

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

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(super) fn round(x: f64, places: i32) -> f64 {
    let f = 10_f64.powi(places);
    (x * f).round() / f
}

pub(super) fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(round(a / b, 3)),
        _ => None,
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
    fn ratios_need_a_positive_denominator() {
        assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
        assert_eq!(ratio(Some(3.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(2.0)), None);
    }
}
