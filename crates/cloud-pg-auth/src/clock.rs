//! Wall-clock time, injectable so tests can move it.

/// Formats a time as RFC 3339 in UTC, second precision (`2026-11-22T20:25:17Z`), as the
/// status output shows it.
pub use crate::status::rfc3339;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use futures_util::future::BoxFuture;
use tokio::sync::watch;

/// The time source of a token cache.
///
/// Token expiries are wall-clock instants (JWT `exp`, SigV4 `X-Amz-Date`), so the cache
/// compares them with wall-clock time; sleeping goes through the clock too, so that a
/// [`ManualClock`] drives the background refresher in tests.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current wall-clock time.
    fn now(&self) -> SystemTime;
    /// Completes after `duration` has passed on this clock.
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

/// The system clock and tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A clock that moves only when told to, for tests.
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<ManualInner>,
}

struct ManualInner {
    now: Mutex<SystemTime>,
    tick: watch::Sender<SystemTime>,
}

impl ManualClock {
    /// A clock standing at `start`.
    #[must_use]
    pub fn new(start: SystemTime) -> Self {
        let (tick, _) = watch::channel(start);
        Self {
            inner: Arc::new(ManualInner {
                now: Mutex::new(start),
                tick,
            }),
        }
    }

    /// A clock standing at a fixed, arbitrary instant (2026-01-01T00:00:00Z).
    #[must_use]
    pub fn at_epoch_2026() -> Self {
        Self::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600))
    }

    /// Moves the clock forward and wakes sleepers whose deadline has passed.
    ///
    /// # Panics
    /// When the clock would move past the last instant `SystemTime` can hold.
    pub fn advance(&self, by: Duration) {
        let now = {
            let mut now = self.lock();
            let Some(later) = now.checked_add(by) else {
                drop(now);
                panic!("ManualClock::advance({by:?}) moves past the last representable instant");
            };
            *now = later;
            later
        };
        self.inner.tick.send_replace(now);
    }

    /// A test that panicked holding the lock must not fail every later use of the clock.
    fn lock(&self) -> MutexGuard<'_, SystemTime> {
        self.inner
            .now
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &self.now())
            .finish()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.lock()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        // A deadline past the last representable instant is never reached.
        let Some(deadline) = self.now().checked_add(duration) else {
            return Box::pin(std::future::pending());
        };
        let mut rx = self.inner.tick.subscribe();
        Box::pin(async move {
            // Resolves when the clock reaches the deadline; never if the clock is dropped.
            if rx.wait_for(|now| *now >= deadline).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleep_wakes_on_advance() {
        let clock = ManualClock::at_epoch_2026();
        let start = clock.now();
        let sleeper = tokio::spawn(clock.sleep(Duration::from_secs(10)));
        clock.advance(Duration::from_secs(5));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(5));
        sleeper.await.unwrap();
        assert_eq!(clock.now(), start + Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_sleep_past_the_last_instant_never_wakes_and_does_not_panic() {
        let clock = ManualClock::at_epoch_2026();
        let sleeper = tokio::spawn(clock.sleep(Duration::MAX));
        clock.advance(Duration::from_secs(365 * 86_400));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        sleeper.abort();
        assert!(sleeper.await.unwrap_err().is_cancelled());
    }
}
