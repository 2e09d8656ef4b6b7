//! The single flight: one fetch at a time, run as a task of its own so that no caller's
//! cancellation cancels it, its result recorded by the task and broadcast to the waiters.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::sync::watch;
use tokio::task::AbortHandle;

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
        let fetch = run(
            Arc::downgrade(self),
            Arc::clone(&self.source),
            id,
            tx,
            self.options.policy.fetch_timeout,
            self.info.label(),
        );
        let task = runtime.spawn(fetch).abort_handle();
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
) {
    let result = fetch(source, timeout, &label).await;
    let recorded = match cache.upgrade() {
        Some(inner) => inner.record(id, result),
        None => result.ok(),
    };
    outcome.send_replace(Some(recorded));
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
