//! The single flight: one fetch at a time, run as a task of its own so that no caller's
//! cancellation cancels it, its result recorded by the task and broadcast to the waiters.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tracing::Instrument as _;
use tracing::field::Empty;

use super::{Inner, State, lock};
use crate::AccessToken;
use crate::error::{TokenError, TokenErrorKind};
use crate::source::TokenSource;

/// What a finished fetch left: the new token, or `None` after a failure (recorded in the
/// cache's state, where `no_valid_token` finds it).
type Fetched = Option<AccessToken>;

/// A fetch in progress, as its waiters see it.
#[derive(Clone)]
pub(super) struct Flight {
    id: u64,
    outcome: watch::Receiver<Option<Fetched>>,
    task: AbortHandle,
}

/// How waiting for a flight ended.
pub(super) enum Waited {
    Done(Fetched),
    /// The task ended without an outcome (its runtime shut down) or overran every timeout
    /// (its runtime is no longer driven): nobody will record this fetch.
    Lost,
}

impl Flight {
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// Waits for the outcome. `patience` bounds the wait on the waiter's own timer, so a
    /// fetch stuck on a runtime that is no longer driven is given up.
    pub(super) async fn wait(mut self, patience: Duration) -> Waited {
        let waited = tokio::time::timeout(patience, self.outcome.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(outcome)) => Waited::Done(outcome.clone().flatten()),
            Ok(Err(_closed)) => Waited::Lost,
            Err(_elapsed) => {
                self.task.abort();
                Waited::Lost
            }
        }
    }
}

impl Inner {
    /// Starts a fetch on the current tokio runtime and notes it in `state`; `None` outside
    /// a runtime. The caller holds the state lock, so at most one flight starts.
    pub(super) fn start_flight(self: &Arc<Self>, state: &mut State) -> Option<Flight> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        state.flights_started += 1;
        let id = state.flights_started;
        let (tx, rx) = watch::channel(None);
        // Opened here, in the caller's context, so the fetch nests under the login or the
        // refresh that started it. The identity is a label (client id, ARN), never a secret.
        let span = tracing::info_span!(
            "cloud_pg_auth.token_fetch",
            source = %self.info.label(),
            identity = Empty,
            attempt = state.consecutive_failures.saturating_add(1),
            duration_ms = Empty,
            outcome = Empty,
        );
        if let Some(identity) = self.info.get_identity() {
            span.record("identity", identity);
        }
        let fetch = run(
            Arc::downgrade(self),
            Arc::clone(&self.source),
            id,
            tx,
            self.options.policy.fetch_timeout,
            self.info.label(),
            self.info.get_method(),
        );
        let task = runtime.spawn(fetch.instrument(span)).abort_handle();
        let flight = Flight {
            id,
            outcome: rx,
            task,
        };
        state.flight = Some(flight.clone());
        Some(flight)
    }

    /// Forgets flight `id` after it was lost, so the next caller starts a new one.
    pub(super) fn forget_flight(&self, id: u64) {
        let mut state = lock(&self.state);
        if state.flight.as_ref().is_some_and(|f| f.id == id) {
            state.flight = None;
        }
    }

    /// Seconds of validity left on the cached token (0 without a valid one); `None` for a
    /// token that never expires (a static password), which has no such gauge.
    fn seconds_left(&self) -> Option<f64> {
        let now = self.clock.now();
        let state = lock(&self.state);
        match &state.token {
            Some(token) if token.is_valid_at(now) => token
                .expires_at()
                .map(|at| at.duration_since(now).unwrap_or_default().as_secs_f64()),
            _ => Some(0.0),
        }
    }

    /// How long a waiter waits for a flight: the fetch timeout with as much again in hand,
    /// so the task's own timeout normally ends it first.
    pub(super) fn patience(&self) -> Duration {
        self.options.policy.fetch_timeout.saturating_mul(2)
    }
}

/// The task of one flight. Holds the cache only weakly: a fetch in progress does not keep a
/// dropped cache alive, and the source is released before the waiters hear the outcome.
async fn run(
    cache: Weak<Inner>,
    source: Arc<dyn TokenSource>,
    id: u64,
    outcome: watch::Sender<Option<Fetched>>,
    timeout: Duration,
    label: String,
    method: &'static str,
) {
    let started = tokio::time::Instant::now();
    let result = fetch(source, timeout, &label).await;
    let took = started.elapsed();
    let failed = result.as_ref().err().map(TokenError::kind);
    let (recorded, seconds_left) = match cache.upgrade() {
        Some(inner) => {
            let recorded = inner.record(id, result);
            (recorded, inner.seconds_left())
        }
        None => (result.ok(), None),
    };
    // The cache refuses a token that arrived already expired: a failure too.
    let how = match (&recorded, failed) {
        (Some(_), _) => "ok",
        (None, Some(kind)) => outcome_label(kind),
        (None, None) => "expired",
    };
    let span = tracing::Span::current();
    span.record(
        "duration_ms",
        u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
    );
    span.record("outcome", how);
    crate::metrics::token_fetched(method, how, took);
    if let Some(seconds) = seconds_left {
        crate::metrics::token_validity(method, seconds);
    }
    outcome.send_replace(Some(recorded));
}

/// The `outcome` of a failed fetch, in spans and metrics: the kind of its error.
fn outcome_label(kind: TokenErrorKind) -> &'static str {
    match kind {
        TokenErrorKind::Transient => "transient",
        TokenErrorKind::Throttled => "throttled",
        TokenErrorKind::Rejected => "rejected",
        TokenErrorKind::Config => "config",
    }
}

/// One call to the source, bounded by `timeout`; a panic in the source is a failed fetch.
async fn fetch(
    source: Arc<dyn TokenSource>,
    timeout: Duration,
    label: &str,
) -> Result<AccessToken, TokenError> {
    // The call itself inside the future, so a panic before the first await is caught too.
    let call = AssertUnwindSafe(async { source.fetch().await }).catch_unwind();
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(result)) => result,
        Ok(Err(_payload)) => {
            // The payload may quote anything the source held (a token): never print it.
            tracing::error!(source = %label, "the token source panicked during a fetch");
            Err(TokenError::new(
                TokenErrorKind::Transient,
                label,
                "the token source panicked during a fetch (a bug in the source); the fetch is retried with backoff",
            ))
        }
        Err(_) => Err(TokenError::new(
            TokenErrorKind::Transient,
            label,
            format!(
                "no answer within {} s; check that the identity endpoint is reachable",
                timeout.as_secs_f64()
            ),
        )),
    }
}
