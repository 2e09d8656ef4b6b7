//! One cache for every source: refresh ahead of expiry, single flight, backoff, background refresh.

mod flight;
mod policy;
mod refresher;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_faults;
#[cfg(test)]
mod tests_health;
#[cfg(test)]
mod tests_spans;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, TokenError, TokenErrorKind};
use crate::source::{SourceInfo, TokenSource};
use crate::status::AuthStatus;
use crate::token::TokenDetails;
use crate::{AccessToken, Secret};
use flight::{Flight, Waited};
pub use policy::{CacheOptions, RefreshPolicy};
pub use refresher::RefreshTask;

/// How many times one call starts over after the fetch it waited for was lost with its
/// runtime, before it gives up (a runtime shutting down under the caller loses each one).
const LOST_FLIGHT_RETRIES: usize = 3;

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
    /// The last fetch's error, until a fetch succeeds, and when it happened.
    last_error: Option<(TokenError, SystemTime)>,
    last_refresh: Option<SystemTime>,
    fetch_count: u64,
    failure_count: u64,
    fallback_count: u64,
    /// The last credential handed out was the fallback password; cleared by a fetched token.
    fallback_in_use: bool,
    /// Background refreshers alive; each task takes itself off when it ends, however it ends.
    refreshers: usize,
    /// When `invalidate` last dropped a token.
    last_invalidated: Option<SystemTime>,
    /// The fetch in progress: at most one.
    flight: Option<Flight>,
    flights_started: u64,
    details: TokenDetails,
}

/// What a call does next, decided under the state lock.
enum Step {
    /// Use this valid token now.
    Use(AccessToken),
    /// No valid token and backing off: report the last failure.
    Fail,
    /// Wait for this fetch; on failure use the token given (still valid), if any.
    Wait(Flight, Option<AccessToken>),
}

/// Locks `mutex` even if a thread panicked while holding it: the state is a set of plain
/// values that each update leaves consistent, and one panic must not fail every later call.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
    /// The fetch runs as a task of its own on the current runtime: a caller that gives up
    /// (a pool's timeout) does not cancel it, and its token is cached for the next caller.
    pub async fn token(&self) -> Result<AccessToken, Error> {
        let inner = &self.inner;
        for _ in 0..LOST_FLIGHT_RETRIES {
            let (flight, still_valid) = match inner.next_step(false)? {
                Step::Use(token) => return Ok(token),
                Step::Fail => return inner.no_valid_token(),
                Step::Wait(flight, still_valid) => (flight, still_valid),
            };
            let id = flight.id();
            match flight.wait(inner.patience()).await {
                Waited::Done(Some(token)) => return Ok(token),
                Waited::Done(None) => {
                    return still_valid.map_or_else(|| inner.no_valid_token(), Ok);
                }
                Waited::Lost => inner.forget_flight(id),
            }
        }
        Err(inner.lost_flight_error())
    }

    /// Marks `rejected` as refused by the server (a login failed for auth reasons), so the
    /// next call fetches a new token. A newer token already in the cache is kept, and so is
    /// the backoff after failed fetches. Tokens are dropped this way at most once per
    /// [`CacheOptions::min_invalidate_interval`]: within that interval after a drop, a refused
    /// token stays (it was fetched after the last refusal, and a role the server keeps
    /// refusing refuses the next one too), so refusals cannot storm the identity endpoint.
    pub fn invalidate(&self, rejected: &Secret) {
        let inner = &self.inner;
        let now = inner.clock.now();
        let mut state = lock(&inner.state);
        if state.token.as_ref().is_some_and(|t| t.secret() == rejected) {
            let interval = inner.options.min_invalidate_interval;
            // A clock that went back counts as time passed, so a jump cannot pin a token.
            let recent = state
                .last_invalidated
                .and_then(|at| now.duration_since(at).ok())
                .is_some_and(|since| since < interval);
            if recent {
                tracing::debug!(
                    source = %inner.info.label(),
                    interval_s = interval.as_secs_f64(),
                    "refused token kept: a new one was fetched after a refusal less than the interval ago"
                );
                return;
            }
            tracing::debug!(source = %inner.info.label(), "cached token invalidated after an auth failure");
            state.token = None;
            state.refresh_at = None;
            state.last_invalidated = Some(now);
        }
        drop(state);
        inner.wake.notify_one();
    }

    /// Fetches now, whatever the cached token's age, and returns the new token. Shares the
    /// fetch with concurrent callers. Used by tools (`pgauth token`) and tests.
    pub async fn refresh_now(&self) -> Result<AccessToken, Error> {
        let inner = &self.inner;
        for _ in 0..LOST_FLIGHT_RETRIES {
            let flight = {
                let mut state = lock(&inner.state);
                match &state.flight {
                    Some(flight) => flight.clone(),
                    None => inner
                        .start_flight(&mut state)
                        .ok_or_else(|| inner.no_runtime_error())?,
                }
            };
            let id = flight.id();
            match flight.wait(inner.patience()).await {
                Waited::Done(Some(token)) => return Ok(token),
                Waited::Done(None) => return inner.no_valid_token(),
                Waited::Lost => inner.forget_flight(id),
            }
        }
        Err(inner.lost_flight_error())
    }

    /// Starts a background task that keeps the token fresh so no connection open waits on
    /// the identity endpoint. The task stops when the returned handle is dropped or
    /// [`RefreshTask::stop`]ped, or when every clone of this cache is gone. Should the task
    /// end otherwise (its runtime shut down), callers refresh inline again.
    ///
    /// Must be called inside a tokio runtime; the task lives on that runtime.
    #[must_use = "dropping the handle stops the refresher"]
    pub fn spawn_refresher(&self) -> RefreshTask {
        let registration = refresher::Registration::new(&self.inner);
        // The task owns the guard from the start: dropped even if never polled.
        let guard = refresher::EndOnDrop(Arc::clone(&registration));
        let handle = tokio::spawn(refresher::run(Arc::downgrade(&self.inner), guard));
        RefreshTask {
            handle: Some(handle),
            registration,
        }
    }

    /// The current status: method, identity, expiry, counters, last error. No secrets.
    #[must_use]
    pub fn status(&self) -> AuthStatus {
        let inner = &self.inner;
        let now = inner.clock.now();
        let state = lock(&inner.state);
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
            last_error: state.last_error.as_ref().map(|(e, _)| e.chain_text()),
            last_error_at: state.last_error.as_ref().map(|(_, at)| *at),
            token_valid: state.token.as_ref().is_some_and(|t| t.is_valid_at(now)),
            fallback_configured: inner.options.fallback_password.is_some(),
            fallback_user: inner
                .options
                .fallback_password
                .as_ref()
                .and(inner.options.fallback_user.clone()),
            fallback_in_use: state.fallback_in_use,
            background_refresh: state.refreshers > 0,
        }
    }

    /// The non-secret details of the last fetched token (derived username and so on).
    #[must_use]
    pub fn details(&self) -> TokenDetails {
        lock(&self.inner.state).details.clone()
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
    /// Decides, under one lock, whether to use the cached token, join the fetch in progress
    /// or start one. `by_refresher`: the background refresher asks, so refresh when due.
    fn next_step(self: &Arc<Self>, by_refresher: bool) -> Result<Step, Error> {
        let now = self.clock.now();
        let mut state = lock(&self.state);
        let valid = state.token.as_ref().filter(|t| t.is_valid_at(now)).cloned();
        if let Some(token) = valid {
            let due = state.refresh_at.is_some_and(|t| now >= t);
            let backing_off = state.retry_not_before.is_some_and(|t| now < t);
            if !due || backing_off {
                return Ok(Step::Use(token));
            }
            if !by_refresher && state.refreshers > 0 {
                self.wake.notify_one();
                return Ok(Step::Use(token));
            }
            // Someone is refreshing: callers take the valid token at once.
            if let Some(flight) = &state.flight {
                return Ok(if by_refresher {
                    Step::Wait(flight.clone(), Some(token))
                } else {
                    Step::Use(token)
                });
            }
            return Ok(match self.start_flight(&mut state) {
                Some(flight) => Step::Wait(flight, Some(token)),
                None => Step::Use(token),
            });
        }
        if let Some(flight) = &state.flight {
            return Ok(Step::Wait(flight.clone(), None));
        }
        if state.retry_not_before.is_some_and(|t| now < t) {
            return Ok(Step::Fail);
        }
        match self.start_flight(&mut state) {
            Some(flight) => Ok(Step::Wait(flight, None)),
            None => Err(self.no_runtime_error()),
        }
    }

    /// Records the result of flight `id` (called by its task); returns the new token, or
    /// `None` after recording the failure.
    fn record(&self, id: u64, result: Result<AccessToken, TokenError>) -> Option<AccessToken> {
        let label = self.info.label();
        let now = self.clock.now();
        let mut state = lock(&self.state);
        if state.flight.as_ref().is_some_and(|f| f.id() == id) {
            state.flight = None;
        }
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
                state.last_error = None;
                state.fallback_in_use = false;
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
        state.consecutive_failures = state.consecutive_failures.saturating_add(1);
        let wait = self
            .options
            .policy
            .wait_after_failure(state.consecutive_failures, error.retry_after());
        state.retry_not_before = Some(policy::saturating_add(now, wait));
        let still_valid = state.token.as_ref().is_some_and(|t| t.is_valid_at(now));
        tracing::warn!(
            source = %self.info.label(),
            error = %error.chain_text(),
            retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            still_valid,
            "token fetch failed"
        );
        state.last_error = Some((error, now));
    }

    fn no_valid_token(&self) -> Result<AccessToken, Error> {
        let mut state = lock(&self.state);
        if let Some(password) = &self.options.fallback_password {
            state.fallback_count += 1;
            state.fallback_in_use = true;
            crate::metrics::fallback_used(self.info.get_method());
            let user = self.options.fallback_user.as_deref();
            tracing::warn!(
                source = %self.info.label(),
                uses = state.fallback_count,
                fallback_user = user.unwrap_or("<the service's user: PGAUTH_FALLBACK_USER unset>"),
                "no valid token; logging in with the fallback password (PGAUTH_FALLBACK_PASSWORD)"
            );
            return Ok(AccessToken::fallback(password.clone(), user));
        }
        let error = match &state.last_error {
            Some((last, _)) => last.duplicate().context("no valid token"),
            None => TokenError::new(
                TokenErrorKind::Transient,
                self.info.label(),
                "no valid token and no fetch has completed yet",
            ),
        };
        Err(Error::Token(error))
    }

    fn lost_flight_error(&self) -> Error {
        Error::Token(TokenError::new(
            TokenErrorKind::Transient,
            self.info.label(),
            "the token fetch ended before it finished (its tokio runtime shut down); try again",
        ))
    }

    fn no_runtime_error(&self) -> Error {
        Error::Token(TokenError::new(
            TokenErrorKind::Config,
            self.info.label(),
            "no tokio runtime to fetch a token on; call this from inside a tokio runtime",
        ))
    }

    /// How long the refresher may sleep before it has something to do.
    fn next_wake(&self) -> Duration {
        let now = self.clock.now();
        let state = lock(&self.state);
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
