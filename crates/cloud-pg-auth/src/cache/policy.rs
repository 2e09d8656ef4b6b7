//! Refresh timing, backoff and the cache's options; time arithmetic that cannot overflow.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::{AccessToken, Secret};

/// When to refresh and how to back off. Defaults follow what the field learned: refresh when
/// less than max(5 min, 10 % of the lifetime) remains, at half-life for tokens living over
/// 2 h, and back off exponentially with jitter after a failure.
///
/// Build with `RefreshPolicy::default()` and the builder methods, each named after the
/// setting.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshPolicy {
    /// The least time before expiry at which to refresh.
    pub(crate) min_margin: Duration,
    /// The margin as a share of the token's lifetime, when that is larger than `min_margin`.
    pub(crate) margin_fraction: f64,
    /// The margin never exceeds this share of the lifetime, so that very short tokens
    /// (test set-ups) are not refreshed on every call.
    pub(crate) max_margin_fraction: f64,
    /// Tokens living longer than this refresh at half-life.
    pub(crate) long_lived: Duration,
    /// First wait after a failed fetch.
    pub(crate) backoff_initial: Duration,
    /// Longest wait between failed fetches. Also caps a source's `Retry-After` hint: a
    /// longer hint waits this long.
    pub(crate) backoff_max: Duration,
    /// Random spread applied to each backoff wait, as a share of it (0.0 to 1.0).
    pub(crate) jitter: f64,
    /// A fetch that takes longer fails with a timeout.
    pub(crate) fetch_timeout: Duration,
    /// The background refresher wakes at least this often to notice wall-clock jumps
    /// (a suspended laptop or VM does not advance tokio's timers).
    pub(crate) max_sleep: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            min_margin: Duration::from_secs(300),
            margin_fraction: 0.10,
            max_margin_fraction: 1.0 / 3.0,
            long_lived: Duration::from_secs(2 * 3600),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            jitter: 0.2,
            fetch_timeout: Duration::from_secs(30),
            max_sleep: Duration::from_secs(30),
        }
    }
}

/// Builder methods: each sets one setting and returns the policy.
impl RefreshPolicy {
    /// Sets the least time before expiry at which to refresh.
    #[must_use]
    pub fn min_margin(mut self, margin: Duration) -> Self {
        self.min_margin = margin;
        self
    }

    /// Sets the margin as a share of the token's lifetime, used when larger than the least one.
    #[must_use]
    pub fn margin_fraction(mut self, fraction: f64) -> Self {
        self.margin_fraction = fraction;
        self
    }

    /// Sets the largest share of the lifetime the margin may take.
    #[must_use]
    pub fn max_margin_fraction(mut self, fraction: f64) -> Self {
        self.max_margin_fraction = fraction;
        self
    }

    /// Sets the lifetime above which tokens refresh at half-life.
    #[must_use]
    pub fn long_lived(mut self, lifetime: Duration) -> Self {
        self.long_lived = lifetime;
        self
    }

    /// Sets the first wait after a failed fetch.
    #[must_use]
    pub fn backoff_initial(mut self, wait: Duration) -> Self {
        self.backoff_initial = wait;
        self
    }

    /// Sets the longest wait between failed fetches (also the cap on `Retry-After` hints).
    #[must_use]
    pub fn backoff_max(mut self, wait: Duration) -> Self {
        self.backoff_max = wait;
        self
    }

    /// Sets the random spread of each backoff wait, as a share of it (0.0 to 1.0).
    #[must_use]
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the time after which a fetch fails with a timeout.
    #[must_use]
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// Sets how often at least the background refresher wakes to notice wall-clock jumps.
    #[must_use]
    pub fn max_sleep(mut self, sleep: Duration) -> Self {
        self.max_sleep = sleep;
        self
    }
}

impl RefreshPolicy {
    /// The instant at which a token obtained at `obtained` should be refreshed.
    #[must_use]
    pub fn refresh_at(&self, obtained: SystemTime, token: &AccessToken) -> Option<SystemTime> {
        let expires = token.expires_at()?;
        let lifetime = expires.duration_since(obtained).unwrap_or_default();
        let planned = if lifetime > self.long_lived {
            saturating_add(obtained, lifetime / 2)
        } else {
            let margin = self
                .min_margin
                .max(scale(lifetime, self.margin_fraction))
                .min(scale(lifetime, self.max_margin_fraction));
            expires.checked_sub(margin).unwrap_or(obtained)
        };
        Some(match token.refresh_hint() {
            Some(hint) if hint < planned && hint >= obtained => hint,
            _ => planned,
        })
    }

    /// The wait after the `failures`-th consecutive failure, before jitter.
    #[must_use]
    pub fn backoff(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(20);
        self.backoff_initial
            .saturating_mul(1 << exp)
            .min(self.backoff_max)
    }

    /// The wait after the `failures`-th consecutive failure: the backoff with jitter, or the
    /// source's `Retry-After` hint when longer, capped at `backoff_max`.
    pub(crate) fn wait_after_failure(&self, failures: u32, hint: Option<Duration>) -> Duration {
        let mut wait = self.backoff(failures);
        let spread = self.jitter.clamp(0.0, 1.0);
        if spread > 0.0 {
            wait = scale(wait, 1.0 + rand::random_range(-spread..=spread));
        }
        // A hint can be anything a server sends (u64::MAX seconds, a year): cap it so the
        // cache asks again in reasonable time and the arithmetic stays in range.
        match hint {
            Some(hint) => wait.max(hint.min(self.backoff_max)),
            None => wait,
        }
    }
}

/// `d × factor`, without the panics of `Duration::mul_f64` (negative, NaN or huge factors).
fn scale(d: Duration, factor: f64) -> Duration {
    let secs = d.as_secs_f64() * factor;
    if secs.is_nan() || secs <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

/// `t + d`, or the latest representable instant on the way there: never panics.
pub(crate) fn saturating_add(t: SystemTime, mut d: Duration) -> SystemTime {
    loop {
        if let Some(later) = t.checked_add(d) {
            return later;
        }
        // Halving ends: `t + 0` always fits.
        d /= 2;
    }
}

/// Options of a [`TokenCache`](crate::TokenCache): `CacheOptions::default()` and the builder
/// methods, each named after the setting.
#[derive(Clone)]
pub struct CacheOptions {
    /// Refresh timing and backoff.
    pub(crate) policy: RefreshPolicy,
    /// A password used when the source fails and no valid token remains. Only when
    /// explicitly configured (`PGAUTH_FALLBACK_PASSWORD`); each use is counted and logged.
    pub(crate) fallback_password: Option<Secret>,
    /// The role the fallback password logs in as (`PGAUTH_FALLBACK_USER`): a password role,
    /// since a token role (`rds_iam`, Entra-mapped) accepts no password. `None`: the
    /// service's own user, as before this setting existed.
    pub(crate) fallback_user: Option<String>,
    /// After the server refuses a token, [`TokenCache::invalidate`](crate::TokenCache::invalidate)
    /// drops it so the next call fetches a new one, but at most once per this interval:
    /// within it, a refused token is kept, so a role the server keeps refusing does not cost
    /// one identity request per login attempt. Default 10 s.
    pub(crate) min_invalidate_interval: Duration,
}

impl Default for CacheOptions {
    fn default() -> Self {
        Self {
            policy: RefreshPolicy::default(),
            fallback_password: None,
            fallback_user: None,
            min_invalidate_interval: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for CacheOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheOptions")
            .field("policy", &self.policy)
            .field("fallback_password", &self.fallback_password)
            .field("fallback_user", &self.fallback_user)
            .field("min_invalidate_interval", &self.min_invalidate_interval)
            .finish()
    }
}

impl CacheOptions {
    /// Sets the refresh policy.
    #[must_use]
    pub fn policy(mut self, policy: RefreshPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets a fallback password.
    #[must_use]
    pub fn fallback_password(mut self, password: impl Into<Secret>) -> Self {
        self.fallback_password = Some(password.into());
        self
    }

    /// Sets the role the fallback password logs in as (a password role).
    #[must_use]
    pub fn fallback_user(mut self, user: impl Into<String>) -> Self {
        self.fallback_user = Some(user.into());
        self
    }

    /// Sets the least time between two invalidations that force a new fetch.
    #[must_use]
    pub fn min_invalidate_interval(mut self, interval: Duration) -> Self {
        self.min_invalidate_interval = interval;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn refresh_times_follow_the_policy() {
        let policy = RefreshPolicy::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let check = |lifetime_s: u64, expected_after_s: u64| {
            let token = AccessToken::new("x").with_expiry(t0 + Duration::from_secs(lifetime_s));
            let at = policy.refresh_at(t0, &token).unwrap();
            assert_eq!(
                at.duration_since(t0).unwrap().as_secs(),
                expected_after_s,
                "lifetime {lifetime_s}"
            );
        };
        check(900, 600); // RDS: 5 min before expiry
        check(3600, 3240); // 10 % of an hour is more than 5 min
        check(86_400, 43_200); // long-lived: half-life
        check(7200, 6480); // exactly 2 h is not "over 2 h"
        check(6, 4); // very short: the margin is capped at a third
        assert!(policy.refresh_at(t0, &AccessToken::new("x")).is_none());
        // A hint earlier than the plan wins.
        let hinted = AccessToken::new("x")
            .with_expiry(t0 + HOUR)
            .with_refresh_hint(t0 + Duration::from_secs(60));
        assert_eq!(
            policy.refresh_at(t0, &hinted),
            Some(t0 + Duration::from_secs(60))
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RefreshPolicy::default();
        let waits: Vec<u64> = (1..=10)
            .map(|n| policy.backoff(n).as_millis() as u64)
            .collect();
        assert_eq!(
            waits,
            [
                500, 1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000
            ]
        );
    }

    #[test]
    fn retry_after_hints_are_capped_at_the_backoff_maximum() {
        let policy = RefreshPolicy {
            jitter: 0.0,
            ..RefreshPolicy::default()
        };
        let check = |hint: Option<Duration>, expected: Duration| {
            assert_eq!(policy.wait_after_failure(1, hint), expected, "{hint:?}");
        };
        check(None, Duration::from_millis(500));
        check(Some(Duration::from_secs(30)), Duration::from_secs(30));
        check(
            Some(Duration::from_secs(365 * 86_400)),
            Duration::from_secs(60),
        );
        check(Some(Duration::from_secs(u64::MAX)), Duration::from_secs(60));
        check(Some(Duration::MAX), Duration::from_secs(60));
    }

    #[test]
    fn odd_policies_and_instants_do_not_panic() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let odd = RefreshPolicy {
            margin_fraction: f64::NAN,
            max_margin_fraction: 1e300,
            min_margin: Duration::MAX,
            backoff_max: Duration::MAX,
            backoff_initial: Duration::MAX,
            jitter: 1.0,
            ..RefreshPolicy::default()
        };
        let token = AccessToken::new("x").with_expiry(t0 + HOUR);
        assert!(odd.refresh_at(t0, &token).is_some_and(|at| at <= t0 + HOUR));
        assert!(odd.wait_after_failure(30, Some(Duration::MAX)) > Duration::ZERO);
        let far = saturating_add(t0, Duration::MAX);
        assert!(far > t0 + Duration::from_secs(1_000_000_000));
    }
}
