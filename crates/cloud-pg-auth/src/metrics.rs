//! The crate's metrics, recorded through the [`metrics`](https://docs.rs/metrics) facade when
//! the `metrics` feature is on (install any recorder, for example a Prometheus exporter);
//! without it every function here does nothing, so call sites carry no `cfg`.
//!
//! Labels: `source` is the token source's method (`azure`, `aws`, `password`, `callback`),
//! `outcome` is `ok` or the kind of failure (`transient`, `throttled`, `rejected`, `config`,
//! `expired`), `target` is `host:port as user`. No label ever holds a secret.

use std::time::Duration;

/// Counter of token fetches, labelled `source` and `outcome`.
pub const TOKEN_FETCHES: &str = "cloud_pg_auth_token_fetches_total";
/// Histogram of the seconds each token fetch took, labelled `source`.
pub const TOKEN_FETCH_SECONDS: &str = "cloud_pg_auth_token_fetch_seconds";
/// Gauge of the seconds of validity left on the cached token, set after each fetch (0 when
/// no valid token is cached), labelled `source`. Not set for a password that never expires.
pub const TOKEN_VALIDITY_SECONDS: &str = "cloud_pg_auth_token_validity_seconds";
/// Counter of physical connections opened, labelled `target`.
pub const CONNECTIONS_OPENED: &str = "cloud_pg_auth_connections_opened_total";
/// Counter of logins the server refused (SQLSTATE 28P01 or 28000), labelled `target`.
pub const LOGINS_REFUSED: &str = "cloud_pg_auth_logins_refused_total";
/// Counter of logins retried with a new token after a refusal, labelled `target`.
pub const LOGIN_RETRIES: &str = "cloud_pg_auth_login_retries_total";
/// Counter of logins made with the fallback password, labelled `source`.
pub const FALLBACK_USES: &str = "cloud_pg_auth_fallback_uses_total";

/// A token fetch ended with `outcome` after `took`.
pub(crate) fn token_fetched(source: &'static str, outcome: &'static str, took: Duration) {
    #[cfg(feature = "metrics")]
    {
        ::metrics::counter!(TOKEN_FETCHES, "source" => source, "outcome" => outcome).increment(1);
        ::metrics::histogram!(TOKEN_FETCH_SECONDS, "source" => source).record(took.as_secs_f64());
    }
    #[cfg(not(feature = "metrics"))]
    let _ = (source, outcome, took);
}

/// The cached token has `seconds` of validity left.
pub(crate) fn token_validity(source: &'static str, seconds: f64) {
    #[cfg(feature = "metrics")]
    ::metrics::gauge!(TOKEN_VALIDITY_SECONDS, "source" => source).set(seconds);
    #[cfg(not(feature = "metrics"))]
    let _ = (source, seconds);
}

/// A physical connection to `target` was opened.
pub(crate) fn connection_opened(target: String) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(CONNECTIONS_OPENED, "target" => target).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = target;
}

/// `target` refused a login's credentials.
pub(crate) fn login_refused(target: String) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(LOGINS_REFUSED, "target" => target).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = target;
}

/// A login to `target` is retried with a new token.
pub(crate) fn login_retried(target: String) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(LOGIN_RETRIES, "target" => target).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = target;
}

/// No valid token: a login uses the fallback password.
pub(crate) fn fallback_used(source: &'static str) {
    #[cfg(feature = "metrics")]
    ::metrics::counter!(FALLBACK_USES, "source" => source).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = source;
}

#[cfg(all(test, feature = "metrics"))]
mod tests;
