//! One cache for every source: refresh ahead of expiry, single flight, backoff, background refresh.

use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, TokenError, TokenErrorKind};
use crate::source::{SourceInfo, TokenSource};
use crate::status::AuthStatus;
use crate::token::TokenDetails;
use crate::{AccessToken, Secret};

/// When to refresh and how to back off. Defaults follow what the field learned: refresh when
/// less than max(5 min, 10 % of the lifetime) remains, at half-life for tokens living over
/// 2 h, and back off exponentially with jitter after a failure.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RefreshPolicy {
    /// The least time before expiry at which to refresh.
    pub min_margin: Duration,
    /// The margin as a share of the token's lifetime, when that is larger than `min_margin`.
    pub margin_fraction: f64,
    /// The margin never exceeds this share of the lifetime, so that very short tokens
    /// (test set-ups) are not refreshed on every call.
    pub max_margin_fraction: f64,
    /// Tokens living longer than this refresh at half-life.
    pub long_lived: Duration,
    /// First wait after a failed fetch.
    pub backoff_initial: Duration,
    /// Longest wait between failed fetches.
    pub backoff_max: Duration,
    /// Random spread applied to each backoff wait, as a share of it (0.0 to 1.0).
    pub jitter: f64,
    /// A fetch that takes longer fails with a timeout.
    pub fetch_timeout: Duration,
    /// The background refresher wakes at least this often to notice wall-clock jumps
    /// (a suspended laptop or VM does not advance tokio's timers).
    pub max_sleep: Duration,
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

impl RefreshPolicy {
    /// The instant at which a token obtained at `obtained` should be refreshed.
    #[must_use]
    pub fn refresh_at(&self, obtained: SystemTime, token: &AccessToken) -> Option<SystemTime> {
        let expires = token.expires_at()?;
        let lifetime = expires.duration_since(obtained).unwrap_or_default();
        let planned = if lifetime > self.long_lived {
            obtained + lifetime / 2
        } else {
            let margin = self
                .min_margin
                .max(lifetime.mul_f64(self.margin_fraction))
                .min(lifetime.mul_f64(self.max_margin_fraction));
            expires - margin
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
}

/// Options of a [`TokenCache`].
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct CacheOptions {
    /// Refresh timing and backoff.
    pub policy: RefreshPolicy,
    /// A password used when the source fails and no valid token remains. Only when
    /// explicitly configured (`PGAUTH_FALLBACK_PASSWORD`); each use is counted and logged.
    pub fallback_password: Option<Secret>,
}

impl fmt::Debug for CacheOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheOptions")
            .field("policy", &self.policy)
            .field("fallback_password", &self.fallback_password)
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
}

/// A caching, refreshing wrapper around one [`TokenSource`].
///
/// Cheap to clone (an `Arc` inside); clones share the token. Each engine owns its own cache
/// and source: never share one between engines or runtimes.
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<Inner>,
}

struct Inner {
    source: Arc<dyn TokenSource>,
    info: SourceInfo,
    clock: Arc<dyn Clock>,
    options: CacheOptions,
    state: Mutex<State>,
    /// Held while fetching: exactly one fetch in flight.
    fetch_lock: tokio::sync::Mutex<()>,
    /// Wakes the background refresher early (after `invalidate`).
    wake: Arc<Notify>,
    /// Counts successful fetches, for engines that must act on a new token (sqlx's
    /// `set_connect_options`).
    changes: tokio::sync::watch::Sender<u64>,
}

#[derive(Default)]
struct State {
    token: Option<AccessToken>,
    refresh_at: Option<SystemTime>,
    /// No fetch before this instant (backoff after a failure).
    retry_not_before: Option<SystemTime>,
    consecutive_failures: u32,
    last_error: Option<TokenError>,
    last_refresh: Option<SystemTime>,
    fetch_count: u64,
    failure_count: u64,
    fallback_count: u64,
    background: bool,
    details: TokenDetails,
}

enum Plan {
    Ready(AccessToken),
    /// The token is valid but due: refresh if nobody else is, else use it.
    RefreshOrUse(AccessToken),
    /// No valid token: wait for a fetch.
    MustFetch,
}

impl TokenCache {
    /// Wraps `source` with the default options and the system clock.
    #[must_use]
    pub fn new(source: Arc<dyn TokenSource>) -> Self {
        Self::with_options(source, CacheOptions::default(), Arc::new(SystemClock))
    }

    /// Wraps `source` with explicit options and clock.
    #[must_use]
    pub fn with_options(
        source: Arc<dyn TokenSource>,
        options: CacheOptions,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let info = source.info();
        Self {
            inner: Arc::new(Inner {
                source,
                info,
                clock,
                options,
                state: Mutex::new(State::default()),
                fetch_lock: tokio::sync::Mutex::new(()),
                wake: Arc::new(Notify::new()),
                changes: tokio::sync::watch::Sender::new(0),
            }),
        }
    }

    /// The source's description.
    #[must_use]
    pub fn source_info(&self) -> &SourceInfo {
        &self.inner.info
    }

    /// A token valid now: the cached one, or a fresh one when none is valid.
    ///
    /// Concurrent callers share one fetch. When the cached token is due for refresh but
    /// still valid, one caller refreshes (unless a background refresher does) while the
    /// others get the valid token at once. A failed refresh keeps the valid token in use.
    pub async fn token(&self) -> Result<AccessToken, Error> {
        let inner = &self.inner;
        match inner.plan() {
            Plan::Ready(token) => Ok(token),
            Plan::RefreshOrUse(token) => {
                let background = inner.state.lock().unwrap().background;
                if background {
                    inner.wake.notify_one();
                    return Ok(token);
                }
                match inner.fetch_lock.try_lock() {
                    Ok(guard) => {
                        let result = inner.fetch_locked().await;
                        drop(guard);
                        Ok(result.unwrap_or(token))
                    }
                    Err(_) => Ok(token),
                }
            }
            Plan::MustFetch => {
                let guard = inner.fetch_lock.lock().await;
                // Someone else may have fetched while we waited.
                if let Plan::Ready(token) | Plan::RefreshOrUse(token) = inner.plan() {
                    return Ok(token);
                }
                let now = inner.clock.now();
                let gated = {
                    let state = inner.state.lock().unwrap();
                    state.retry_not_before.is_some_and(|t| now < t)
                };
                let result = if gated {
                    Err(())
                } else {
                    inner.fetch_locked().await.ok_or(())
                };
                drop(guard);
                match result {
                    Ok(token) => Ok(token),
                    Err(()) => inner.no_valid_token(),
                }
            }
        }
    }

    /// Marks `rejected` as refused by the server (a login failed for auth reasons), so the
    /// next call fetches a new token. A newer token already in the cache is kept.
    pub fn invalidate(&self, rejected: &Secret) {
        let mut state = self.inner.state.lock().unwrap();
        if state.token.as_ref().is_some_and(|t| t.secret() == rejected) {
            tracing::debug!(source = %self.inner.info.label(), "cached token invalidated after an auth failure");
            state.token = None;
            state.refresh_at = None;
            state.retry_not_before = None;
        }
        drop(state);
        self.inner.wake.notify_one();
    }

    /// Fetches now, whatever the cached token's age, and returns the new token. Shares the
    /// fetch with concurrent callers. Used by tools (`pgauth token`) and tests.
    pub async fn refresh_now(&self) -> Result<AccessToken, Error> {
        let guard = self.inner.fetch_lock.lock().await;
        let result = self.inner.fetch_locked().await;
        drop(guard);
        result.map_or_else(|| self.inner.no_valid_token(), Ok)
    }

    /// Starts a background task that keeps the token fresh so no connection open waits on
    /// the identity endpoint. The task stops when the returned handle is dropped or
    /// [`RefreshTask::stop`]ped, or when every clone of this cache is gone.
    ///
    /// Must be called inside a tokio runtime; the task lives on that runtime.
    #[must_use = "dropping the handle stops the refresher"]
    pub fn spawn_refresher(&self) -> RefreshTask {
        self.inner.state.lock().unwrap().background = true;
        let weak = Arc::downgrade(&self.inner);
        let handle = tokio::spawn(refresher(weak));
        RefreshTask {
            handle: Some(handle),
            cache: Arc::downgrade(&self.inner),
        }
    }

    /// The current status: method, identity, expiry, counters, last error. No secrets.
    #[must_use]
    pub fn status(&self) -> AuthStatus {
        let inner = &self.inner;
        let state = inner.state.lock().unwrap();
        let info = &inner.info;
        AuthStatus {
            method: info.method.to_string(),
            cloud: info.cloud.clone(),
            credential_kind: info.credential_kind.clone(),
            identity: state
                .details
                .identity
                .clone()
                .or_else(|| info.identity.clone()),
            username: state.details.username.clone(),
            username_source: state.details.username_source,
            expires_at: state.token.as_ref().and_then(AccessToken::expires_at),
            refresh_at: state.refresh_at,
            last_refresh: state.last_refresh,
            fetch_count: state.fetch_count,
            failure_count: state.failure_count,
            fallback_count: state.fallback_count,
            last_error: state.last_error.as_ref().map(TokenError::chain_text),
            background_refresh: state.background,
        }
    }

    /// The non-secret details of the last fetched token (derived username and so on).
    #[must_use]
    pub fn details(&self) -> TokenDetails {
        self.inner.state.lock().unwrap().details.clone()
    }

    /// A receiver whose value (a count of successful fetches) changes each time a new token
    /// arrives. It does not keep the cache alive: once the cache is gone, `changed()` fails.
    #[must_use]
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// How many `TokenCache` handles share this cache (for dispose checks).
    #[must_use]
    pub fn handle_count(&self) -> usize {
        Arc::strong_count(&self.inner)
    }
}

impl Inner {
    fn plan(&self) -> Plan {
        let now = self.clock.now();
        let state = self.state.lock().unwrap();
        match &state.token {
            Some(token) if token.is_valid_at(now) => {
                let due = state.refresh_at.is_some_and(|t| now >= t);
                let backing_off = state.retry_not_before.is_some_and(|t| now < t);
                if due && !backing_off {
                    Plan::RefreshOrUse(token.clone())
                } else {
                    Plan::Ready(token.clone())
                }
            }
            _ => Plan::MustFetch,
        }
    }

    /// Fetches once; the caller holds `fetch_lock`. Returns the new token, or `None` after
    /// recording the failure.
    async fn fetch_locked(&self) -> Option<AccessToken> {
        let label = self.info.label();
        tracing::debug!(source = %label, "fetching token");
        let timeout = self.options.policy.fetch_timeout;
        let result = match tokio::time::timeout(timeout, self.source.fetch()).await {
            Ok(result) => result,
            Err(_) => Err(TokenError::new(
                TokenErrorKind::Transient,
                label.clone(),
                format!(
                    "no answer within {} s; check that the identity endpoint is reachable",
                    timeout.as_secs_f64()
                ),
            )),
        };
        let now = self.clock.now();
        let mut state = self.state.lock().unwrap();
        state.fetch_count += 1;
        match result {
            Ok(token) if token.is_valid_at(now) => {
                let refresh_at = self.options.policy.refresh_at(now, &token);
                tracing::info!(
                    source = %label,
                    expires_in_s = token.expires_at().and_then(|e| e.duration_since(now).ok()).map(|d| d.as_secs()),
                    "token refreshed"
                );
                state.refresh_at = refresh_at;
                state.retry_not_before = None;
                state.consecutive_failures = 0;
                state.last_refresh = Some(now);
                state.details = token.details().clone();
                state.token = Some(token.clone());
                drop(state);
                self.changes.send_modify(|n| *n += 1);
                Some(token)
            }
            Ok(_) => {
                let error = TokenError::new(
                    TokenErrorKind::Transient,
                    label,
                    "the source returned a token that has already expired; check the clock of this machine",
                );
                self.record_failure(&mut state, error, now);
                None
            }
            Err(error) => {
                self.record_failure(&mut state, error, now);
                None
            }
        }
    }

    fn record_failure(&self, state: &mut State, error: TokenError, now: SystemTime) {
        state.failure_count += 1;
        state.consecutive_failures += 1;
        let policy = &self.options.policy;
        let mut wait = policy.backoff(state.consecutive_failures);
        let spread = policy.jitter.clamp(0.0, 1.0);
        if spread > 0.0 {
            wait = wait.mul_f64(1.0 + rand::random_range(-spread..=spread));
        }
        if let Some(hint) = error.retry_after() {
            wait = wait.max(hint);
        }
        state.retry_not_before = Some(now + wait);
        let still_valid = state.token.as_ref().is_some_and(|t| t.is_valid_at(now));
        tracing::warn!(
            source = %self.info.label(),
            error = %error.chain_text(),
            retry_in_ms = wait.as_millis() as u64,
            still_valid,
            "token fetch failed"
        );
        state.last_error = Some(error);
    }

    fn no_valid_token(&self) -> Result<AccessToken, Error> {
        let mut state = self.state.lock().unwrap();
        if let Some(password) = &self.options.fallback_password {
            state.fallback_count += 1;
            tracing::warn!(
                source = %self.info.label(),
                uses = state.fallback_count,
                "token source failed; using the configured fallback password (PGAUTH_FALLBACK_PASSWORD)"
            );
            return Ok(AccessToken::new(password.clone()));
        }
        let error = match &state.last_error {
            Some(last) => last.duplicate().context("no valid token"),
            None => TokenError::new(
                TokenErrorKind::Transient,
                self.info.label(),
                "no valid token and no fetch has completed yet",
            ),
        };
        Err(Error::Token(error))
    }

    /// How long the refresher may sleep before it has something to do.
    fn next_wake(&self) -> Duration {
        let now = self.clock.now();
        let state = self.state.lock().unwrap();
        let due = match (&state.token, state.refresh_at) {
            (Some(t), _) if !t.is_valid_at(now) => Some(now),
            (Some(_), refresh_at) => refresh_at,
            (None, _) => Some(now),
        };
        let due = match (due, state.retry_not_before) {
            (Some(d), Some(r)) => Some(d.max(r)),
            (d, _) => d,
        };
        let max = self.options.policy.max_sleep;
        due.map_or(max, |d| d.duration_since(now).unwrap_or_default().min(max))
    }
}

async fn refresher(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let wait = inner.next_wake();
        if !wait.is_zero() {
            let sleep = inner.clock.sleep(wait);
            let wake = Arc::clone(&inner.wake);
            // Do not keep the cache alive while sleeping.
            drop(inner);
            let notified = wake.notified();
            tokio::select! {
                () = sleep => {}
                () = notified => {}
            }
            continue;
        }
        match inner.plan() {
            Plan::Ready(_) => {}
            Plan::RefreshOrUse(_) | Plan::MustFetch => {
                let guard = inner.fetch_lock.lock().await;
                if !matches!(inner.plan(), Plan::Ready(_)) {
                    let _ = inner.fetch_locked().await;
                }
                drop(guard);
            }
        }
    }
}

/// The handle of a background refresher; dropping it stops the task.
pub struct RefreshTask {
    handle: Option<JoinHandle<()>>,
    cache: Weak<Inner>,
}

impl RefreshTask {
    /// Stops the task and waits until it has ended.
    pub async fn stop(mut self) {
        self.halt();
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
    }

    /// Whether the task has ended.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    fn halt(&mut self) {
        if let Some(handle) = &self.handle {
            handle.abort();
        }
        if let Some(inner) = self.cache.upgrade() {
            inner.state.lock().unwrap().background = false;
        }
    }
}

impl Drop for RefreshTask {
    fn drop(&mut self) {
        self.halt();
    }
}

impl fmt::Debug for RefreshTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTask")
            .field("finished", &self.is_finished())
            .finish()
    }
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.status();
        f.debug_struct("TokenCache")
            .field("source", &self.inner.source)
            .field("expires_at", &status.expires_at)
            .field("fetch_count", &status.fetch_count)
            .field("failure_count", &status.failure_count)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::chain_text;
    use crate::clock::ManualClock;
    use crate::testing::{FakeSource, eventually};

    const HOUR: Duration = Duration::from_secs(3600);

    fn setup(lifetime: Option<Duration>) -> (ManualClock, Arc<FakeSource>, TokenCache) {
        setup_with(lifetime, CacheOptions::default())
    }

    fn setup_with(
        lifetime: Option<Duration>,
        options: CacheOptions,
    ) -> (ManualClock, Arc<FakeSource>, TokenCache) {
        let (clock, source) = FakeSource::with_manual_clock(lifetime);
        let cache = TokenCache::with_options(source.clone(), options, Arc::new(clock.clone()));
        (clock, source, cache)
    }

    async fn secret(cache: &TokenCache) -> String {
        cache.token().await.unwrap().secret().expose().to_string()
    }

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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cold_herd_of_500_causes_one_fetch() {
        let (_clock, source, cache) = setup(Some(HOUR));
        source.set_delay(Duration::from_millis(50));
        let tasks: Vec<_> = (0..500)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { secret(&cache).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), "fake-token-1");
        }
        assert_eq!(source.calls(), 1);
        assert_eq!(cache.status().fetch_count, 1);
    }

    #[tokio::test]
    async fn refreshes_ahead_of_expiry_inline() {
        let (clock, source, cache) = setup(Some(HOUR));
        assert_eq!(secret(&cache).await, "fake-token-1");
        clock.advance(Duration::from_secs(3000));
        assert_eq!(secret(&cache).await, "fake-token-1");
        assert_eq!(source.calls(), 1);
        clock.advance(Duration::from_secs(300)); // past 3240 s, still valid
        assert_eq!(secret(&cache).await, "fake-token-2");
        assert_eq!(source.calls(), 2);
    }

    #[tokio::test]
    async fn callers_during_a_refresh_get_the_valid_token_at_once() {
        let (clock, source, cache) = setup(Some(HOUR));
        secret(&cache).await;
        clock.advance(Duration::from_secs(3300));
        source.set_delay(Duration::from_millis(200));
        let refreshing = tokio::spawn({
            let cache = cache.clone();
            async move { secret(&cache).await }
        });
        eventually(|| source.calls() == 2).await;
        // The refresh is in flight; this caller does not wait for it.
        assert_eq!(secret(&cache).await, "fake-token-1");
        assert_eq!(refreshing.await.unwrap(), "fake-token-2");
    }

    #[tokio::test]
    async fn background_refresher_keeps_the_token_fresh() {
        let (clock, source, cache) = setup(Some(HOUR));
        let task = cache.spawn_refresher();
        eventually(|| source.calls() == 1).await; // warms up on start
        assert_eq!(secret(&cache).await, "fake-token-1");
        clock.advance(Duration::from_secs(3250));
        eventually(|| source.calls() == 2).await;
        eventually(|| cache.status().last_refresh == Some(clock.now())).await;
        assert_eq!(secret(&cache).await, "fake-token-2");
        assert!(cache.status().background_refresh);
        task.stop().await;
        assert!(!cache.status().background_refresh);
    }

    #[tokio::test]
    async fn failed_refresh_keeps_serving_and_backs_off() {
        let (clock, source, cache) = setup(Some(HOUR));
        secret(&cache).await;
        source.fail(TokenErrorKind::Transient, None);
        clock.advance(Duration::from_secs(3300));
        assert_eq!(secret(&cache).await, "fake-token-1");
        assert_eq!(source.calls(), 2);
        // Within the backoff window nobody asks the endpoint again.
        for _ in 0..50 {
            assert_eq!(secret(&cache).await, "fake-token-1");
        }
        assert_eq!(source.calls(), 2);
        clock.advance(Duration::from_millis(700)); // first wait: 500 ms ± 20 %
        assert_eq!(secret(&cache).await, "fake-token-1");
        assert_eq!(source.calls(), 3);
        clock.advance(Duration::from_millis(700)); // second wait: 1 s ± 20 %, not over yet
        assert_eq!(secret(&cache).await, "fake-token-1");
        assert_eq!(source.calls(), 3);
        let status = cache.status();
        assert_eq!(status.failure_count, 2);
        assert!(status.last_error.unwrap().contains("connection refused"));
        source.recover();
        clock.advance(Duration::from_secs(2));
        assert_eq!(secret(&cache).await, "fake-token-4");
    }

    #[tokio::test]
    async fn expired_token_and_failing_source_give_the_cause() {
        let (clock, source, cache) = setup(Some(HOUR));
        secret(&cache).await;
        source.fail(TokenErrorKind::Transient, None);
        clock.advance(HOUR);
        let error = cache.token().await.unwrap_err();
        let text = chain_text(&error);
        assert!(
            text.starts_with("fake source: no valid token: the endpoint is down"),
            "{text}"
        );
        assert!(text.contains("connection refused"), "{text}");
        assert!(matches!(error, Error::Token(ref e) if e.kind() == TokenErrorKind::Transient));
        // While backing off, errors come without asking the endpoint.
        assert!(cache.token().await.is_err());
        assert_eq!(source.calls(), 2);
    }

    #[tokio::test]
    async fn retry_after_is_honoured() {
        let (clock, source, cache) = setup(Some(HOUR));
        source.fail(TokenErrorKind::Throttled, Some(Duration::from_secs(30)));
        assert!(cache.token().await.is_err());
        clock.advance(Duration::from_secs(20));
        assert!(cache.token().await.is_err());
        assert_eq!(source.calls(), 1);
        source.recover();
        clock.advance(Duration::from_secs(11));
        assert_eq!(secret(&cache).await, "fake-token-2");
    }

    #[tokio::test]
    async fn subscribers_see_each_new_token_until_the_cache_is_gone() {
        let (_clock, _source, cache) = setup(Some(HOUR));
        let mut changes = cache.subscribe();
        secret(&cache).await;
        secret(&cache).await;
        assert_eq!(*changes.borrow_and_update(), 1);
        cache.refresh_now().await.unwrap();
        assert!(changes.has_changed().unwrap());
        assert_eq!(*changes.borrow_and_update(), 2);
        drop(cache);
        assert!(
            changes.changed().await.is_err(),
            "a receiver must not keep the cache alive"
        );
    }

    #[tokio::test]
    async fn invalidate_drops_only_the_rejected_token() {
        let (_clock, source, cache) = setup(Some(HOUR));
        let first = cache.token().await.unwrap();
        cache.invalidate(first.secret());
        let second = cache.token().await.unwrap();
        assert_eq!(second.secret().expose(), "fake-token-2");
        cache.invalidate(first.secret());
        assert_eq!(secret(&cache).await, "fake-token-2");
        assert_eq!(source.calls(), 2);
    }

    #[tokio::test]
    async fn dropping_the_cache_drops_the_source_and_the_task_ends_with_its_handle() {
        let (_clock, source, cache) = setup(Some(HOUR));
        let dropped = source.drop_flag();
        let task = cache.spawn_refresher();
        eventually(|| source.calls() == 1).await;
        drop(source);
        assert!(!dropped.load(Ordering::SeqCst));
        drop(cache);
        assert!(
            dropped.load(Ordering::SeqCst),
            "the refresher must not keep the source alive"
        );
        task.stop().await;
    }

    #[test]
    fn options_debug_hides_the_fallback_password() {
        let options = CacheOptions::default().fallback_password("fallback-secret");
        let printed = format!("{options:?} {options:#?}");
        assert!(!printed.contains("fallback-secret"), "{printed}");
        assert!(printed.contains("redacted"), "{printed}");
    }

    #[tokio::test]
    async fn fallback_password_is_used_and_counted() {
        let options = CacheOptions::default().fallback_password("fallback-pw");
        let (_clock, source, cache) = setup_with(Some(HOUR), options);
        source.fail(TokenErrorKind::Rejected, None);
        assert_eq!(secret(&cache).await, "fallback-pw");
        assert_eq!(secret(&cache).await, "fallback-pw");
        assert_eq!(cache.status().fallback_count, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_source_times_out_with_a_clear_error() {
        let policy = RefreshPolicy {
            fetch_timeout: Duration::from_secs(2),
            ..RefreshPolicy::default()
        };
        let (_clock, source, cache) =
            setup_with(Some(HOUR), CacheOptions::default().policy(policy));
        source.set_delay(Duration::from_secs(60));
        let text = chain_text(&cache.token().await.unwrap_err());
        assert!(text.contains("no answer within 2 s"), "{text}");
    }

    #[tokio::test]
    async fn an_already_expired_token_is_an_error() {
        let (_clock, source, cache) = setup(Some(Duration::ZERO));
        let text = chain_text(&cache.token().await.unwrap_err());
        assert!(text.contains("already expired"), "{text}");
        assert_eq!(source.calls(), 1);
    }

    #[tokio::test]
    async fn nothing_prints_the_token() {
        use std::io::Write;

        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl Write for Buffer {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let (clock, source, cache) = setup(Some(HOUR));
        let token = cache.token().await.unwrap();
        cache.invalidate(token.secret());
        source.fail(TokenErrorKind::Transient, None);
        clock.advance(HOUR * 2);
        let error = cache.token().await.unwrap_err();
        let printed = format!(
            "{token:?} {cache:?} {error} {error:?} {} {}",
            serde_json::to_string(&cache.status()).unwrap(),
            String::from_utf8_lossy(&buffer.0.lock().unwrap())
        );
        assert!(
            printed.contains("token fetch failed"),
            "logs were captured: {printed}"
        );
        assert!(!printed.contains("fake-token"), "{printed}");
    }
}
