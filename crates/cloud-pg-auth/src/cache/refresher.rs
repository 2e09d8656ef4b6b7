//! The background refresher: a task that keeps the token fresh so no connection open waits
//! on the identity endpoint, and that callers stop relying on as soon as it is gone.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use tokio::task::JoinHandle;
use tracing::Instrument as _;

use super::flight::Waited;
use super::{Inner, Step, lock};

/// One refresher's entry in the cache's count of live refreshers. Ends once, whichever
/// comes first: the task ending (however it ends) or its handle stopping it.
pub(super) struct Registration {
    cache: Weak<Inner>,
    active: AtomicBool,
}

impl Registration {
    /// Registers a refresher with `cache`.
    pub(super) fn new(cache: &Arc<Inner>) -> Arc<Self> {
        lock(&cache.state).refreshers += 1;
        Arc::new(Self {
            cache: Arc::downgrade(cache),
            active: AtomicBool::new(true),
        })
    }

    fn end(&self) {
        if self.active.swap(false, Ordering::SeqCst)
            && let Some(inner) = self.cache.upgrade()
        {
            let mut state = lock(&inner.state);
            state.refreshers = state.refreshers.saturating_sub(1);
        }
    }
}

/// Owned by the task: dropped when the task returns, is aborted, panics, or its runtime
/// shuts down (which drops the task, even one never polled), so callers then refresh inline.
pub(super) struct EndOnDrop(pub(super) Arc<Registration>);

impl Drop for EndOnDrop {
    fn drop(&mut self) {
        self.0.end();
    }
}

pub(super) async fn run(weak: Weak<Inner>, registration: EndOnDrop) {
    let _registration = registration;
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
        // The fetch this refresh starts nests under its span.
        let span = tracing::info_span!(
            "cloud_pg_auth.token_refresh",
            source = %inner.info.label(),
            outcome = tracing::field::Empty,
        );
        let step = span.in_scope(|| inner.next_step(true));
        let patience = inner.patience();
        drop(inner);
        match step {
            Ok(Step::Wait(flight, _)) => {
                let id = flight.id();
                let waited = flight.wait(patience).instrument(span.clone()).await;
                let outcome = match &waited {
                    Waited::Done(Some(_)) => "ok",
                    Waited::Done(None) => "failed",
                    Waited::Lost => "lost",
                };
                span.record("outcome", outcome);
                if let Waited::Lost = waited
                    && let Some(inner) = weak.upgrade()
                {
                    inner.forget_flight(id);
                }
            }
            // Nothing to do after all (the clock moved between the two looks): let others run.
            _ => {
                span.record("outcome", "skipped");
                tokio::task::yield_now().await;
            }
        }
    }
}

/// The handle of a background refresher; dropping it stops the task.
pub struct RefreshTask {
    pub(super) handle: Option<JoinHandle<()>>,
    pub(super) registration: Arc<Registration>,
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
        // At once: an aborted task is dropped only when its runtime gets to it.
        self.registration.end();
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
