//! The auth status an engine reports: what a `/health` endpoint shows, with one verdict
//! computed here for every adapter. No secrets.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use crate::engine::PoolConfig;
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
    /// The last fetch's error with its causes, if the last fetch failed; cleared by the next
    /// successful fetch.
    pub last_error: Option<String>,
    /// When [`AuthStatus::last_error`] happened.
    #[serde(serialize_with = "rfc3339_opt")]
    pub last_error_at: Option<SystemTime>,
    /// Whether the cache holds a token valid now (by the credential's clock).
    pub token_valid: bool,
    /// Whether a fallback password is configured (`PGAUTH_FALLBACK_PASSWORD`).
    pub fallback_configured: bool,
    /// The role the fallback password logs in as (`PGAUTH_FALLBACK_USER`), when a fallback
    /// is configured; `None` with a fallback configured means it is sent as the service's
    /// user (`PGUSER`), which a token role refuses. Never the password.
    pub fallback_user: Option<String>,
    /// Whether the fallback is in use now: the last credential handed out was the fallback
    /// password and no token has been fetched since.
    pub fallback_in_use: bool,
    /// Whether a background refresher is running.
    pub background_refresh: bool,
}

impl AuthStatus {
    /// The credential's verdict and, unless healthy, why (see [`Health`] for the rules).
    #[must_use]
    pub fn verdict(&self) -> (Health, Option<String>) {
        let Some(error) = &self.last_error else {
            if self.fallback_in_use {
                // The cache hands out the fallback only after a failed fetch and a success
                // clears both, so this is a status assembled by hand: still degraded.
                let reason = format!(
                    "new connections log in with the fallback password {}",
                    self.fallback_role()
                );
                return (Health::Degraded, Some(reason));
            }
            // Nothing failed: a missing token (none fetched yet, or one dropped after a
            // refusal) is fetched by the next connection.
            return (Health::Healthy, None);
        };
        let failed = match self.last_error_at {
            Some(at) => format!("the last token fetch failed at {}: {error}", rfc3339(at)),
            None => format!("the last token fetch failed: {error}"),
        };
        if self.token_valid {
            let until = self
                .expires_at
                .map_or_else(String::new, |at| format!(" until {}", rfc3339(at)));
            let reason = format!("{failed}; the cached token stays valid{until}");
            (Health::Degraded, Some(reason))
        } else if self.fallback_configured {
            let reason = format!(
                "no valid token ({failed}); new connections log in with the fallback password {}",
                self.fallback_role()
            );
            (Health::Degraded, Some(reason))
        } else {
            let reason = format!(
                "no valid token and no fallback password ({failed}); new connections fail until a fetch succeeds"
            );
            (Health::Failing, Some(reason))
        }
    }

    /// As whom the fallback password logs in, for the verdict's reason.
    fn fallback_role(&self) -> String {
        match &self.fallback_user {
            Some(user) => format!("as role {user:?} (PGAUTH_FALLBACK_USER)"),
            None => "as PGUSER (PGAUTH_FALLBACK_USER is unset; a token role refuses it)".into(),
        }
    }
}

/// An engine's verdict on itself, for a `/health` endpoint. Serialises lowercase.
///
/// - `healthy`: a valid token is cached and its last fetch succeeded, or nothing has failed
///   yet (the next connection fetches a token).
/// - `degraded`: connections still open, but not as they should: the last refresh failed
///   while the cached token is still valid, or no token is valid and the fallback password is
///   in use.
/// - `failing`: no valid token, the last fetch failed and no fallback password is set (new
///   connections fail), or the engine was disposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Health {
    /// All is well.
    Healthy,
    /// Connections open, but the credential needs attention.
    Degraded,
    /// New connections fail.
    Failing,
}

impl Health {
    /// `healthy`, `degraded` or `failing`, as in JSON.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Failing => "failing",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn rfc3339_opt<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}

fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn seconds_opt<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => seconds(d, s),
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

/// What an adapter engine reports (its `/health` payload): the verdict, the credential's
/// status, the engine's connection counters and, for pooled engines, the pool's figures and
/// configured options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct EngineStatus {
    /// The verdict: `failing` means new connections fail (answer a probe with 503).
    pub health: Health,
    /// Why the verdict is not `healthy`; `None` when it is.
    pub reason: Option<String>,
    /// Whether the engine was disposed (its verdict is then `failing`).
    pub disposed: bool,
    /// The credential.
    pub auth: AuthStatus,
    /// Physical connections this engine opened.
    pub connections_opened: u64,
    /// Logins retried after the server refused a token.
    pub auth_retries: u64,
    /// Pool figures; `None` for a migration engine.
    pub pool: Option<PoolStatus>,
    /// The pool's configured options; `None` for a migration engine.
    pub pool_settings: Option<PoolSettings>,
}

impl EngineStatus {
    /// Assembles a status, its verdict taken from the credential's.
    #[must_use]
    pub fn new(
        auth: AuthStatus,
        connections_opened: u64,
        auth_retries: u64,
        pool: Option<PoolStatus>,
    ) -> Self {
        let (health, reason) = auth.verdict();
        Self {
            health,
            reason,
            disposed: false,
            auth,
            connections_opened,
            auth_retries,
            pool,
            pool_settings: None,
        }
    }

    /// Adds the pool's configured options.
    #[must_use]
    pub fn with_pool_settings(mut self, settings: PoolSettings) -> Self {
        self.pool_settings = Some(settings);
        self
    }

    /// Records whether the engine was disposed: a disposed engine is `failing`, whatever its
    /// credential's last state.
    #[must_use]
    pub fn with_disposed(mut self, disposed: bool) -> Self {
        self.disposed = disposed;
        (self.health, self.reason) = if disposed {
            let reason = "the engine was disposed; it opens no more connections";
            (Health::Failing, Some(reason.to_string()))
        } else {
            self.auth.verdict()
        };
        self
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

/// A pooled engine's configured options, as its builder checked them ([`PoolConfig::check`]):
/// pool hygiene made visible. Durations serialise as seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PoolSettings {
    /// The most connections the pool opens.
    pub max_size: usize,
    /// Connections older than this are replaced (`None`: kept).
    #[serde(serialize_with = "seconds_opt")]
    pub max_lifetime: Option<Duration>,
    /// How long a checkout may take.
    #[serde(serialize_with = "seconds")]
    pub connection_timeout: Duration,
    /// How long `dispose()` waits for checked-out connections.
    #[serde(serialize_with = "seconds")]
    pub dispose_timeout: Duration,
    /// Whether idle connections are checked (a query) before they are handed out.
    pub checkout_validated: bool,
}

impl PoolSettings {
    /// Sets whether checkouts are validated (the adapter's own option; on by default).
    #[must_use]
    pub fn with_checkout_validation(mut self, validated: bool) -> Self {
        self.checkout_validated = validated;
        self
    }
}

impl From<&PoolConfig> for PoolSettings {
    /// The options of `config`, with checkout validation on (every adapter's default).
    fn from(config: &PoolConfig) -> Self {
        Self {
            max_size: config.max_size(),
            max_lifetime: config.max_lifetime(),
            connection_timeout: config.connection_timeout(),
            dispose_timeout: config.dispose_timeout(),
            checkout_validated: true,
        }
    }
}

#[cfg(test)]
mod tests;
