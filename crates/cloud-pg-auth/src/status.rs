//! The auth status an engine reports: what a `/health` endpoint shows. No secrets.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use crate::token::UsernameSource;

/// Where tokens come from and how fetching has gone. Serialises to JSON with RFC 3339 times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AuthStatus {
    /// `password`, `callback`, `azure` or `aws`.
    pub method: String,
    /// The cloud or region, for cloud methods.
    pub cloud: Option<String>,
    /// The credential kind (`managed-identity`, `workload-identity`, `default-chain`, ...).
    pub credential_kind: Option<String>,
    /// The identity label (client id, object id, ARN), never a secret.
    pub identity: Option<String>,
    /// The login name derived from the token, when `PGUSER` was not set.
    pub username: Option<String>,
    /// Where the login name came from.
    pub username_source: Option<UsernameSource>,
    /// When the cached token expires.
    #[serde(serialize_with = "rfc3339_opt")]
    pub expires_at: Option<SystemTime>,
    /// When the cache plans to refresh it.
    #[serde(serialize_with = "rfc3339_opt")]
    pub refresh_at: Option<SystemTime>,
    /// When the last successful fetch happened.
    #[serde(serialize_with = "rfc3339_opt")]
    pub last_refresh: Option<SystemTime>,
    /// Fetches attempted.
    pub fetch_count: u64,
    /// Fetches that failed.
    pub failure_count: u64,
    /// Times the fallback password was used.
    pub fallback_count: u64,
    /// The last fetch error with its causes, if the last fetch failed or an error is recent.
    pub last_error: Option<String>,
    /// Whether a background refresher is running.
    pub background_refresh: bool,
}

fn rfc3339_opt<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}

/// Formats a time as RFC 3339 in UTC with second precision (`2026-11-22T20:25:17Z`).
#[must_use]
pub fn rfc3339(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn check(secs: u64, expected: &str) {
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(secs)), expected);
    }

    #[test]
    fn formats_rfc3339() {
        check(0, "1970-01-01T00:00:00Z");
        check(951_782_400, "2000-02-29T00:00:00Z");
        check(1_724_709_600, "2024-08-26T22:00:00Z");
        check(1_767_225_599, "2025-12-31T23:59:59Z");
    }
}

/// What an adapter engine reports (its `/health` payload): the credential's status, the
/// engine's connection counters and, for pooled engines, the pool's own figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct EngineStatus {
    /// The credential.
    pub auth: AuthStatus,
    /// Physical connections this engine opened.
    pub connections_opened: u64,
    /// Logins retried after the server refused a token.
    pub auth_retries: u64,
    /// Pool figures; `None` for a migration engine.
    pub pool: Option<PoolStatus>,
}

impl EngineStatus {
    /// Assembles a status.
    #[must_use]
    pub fn new(
        auth: AuthStatus,
        connections_opened: u64,
        auth_retries: u64,
        pool: Option<PoolStatus>,
    ) -> Self {
        Self {
            auth,
            connections_opened,
            auth_retries,
            pool,
        }
    }
}

/// A pool's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PoolStatus {
    /// The most connections the pool opens.
    pub max_size: usize,
    /// Connections open now (idle and in use).
    pub size: usize,
    /// Connections idle now.
    pub idle: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

impl PoolStatus {
    /// Assembles pool figures.
    #[must_use]
    pub fn new(max_size: usize, size: usize, idle: usize, waiting: usize) -> Self {
        Self {
            max_size,
            size,
            idle,
            waiting,
        }
    }
}
