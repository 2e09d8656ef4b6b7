//! Test helpers: a fake token source that counts calls, fails on demand and records its drop.
//! Enabled by the `test-util` feature; used by this workspace's adapter tests.

use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use crate::AccessToken;
use crate::clock::Clock;
use crate::error::{TokenError, TokenErrorKind};
use crate::source::{SourceInfo, TokenSource};

/// A token source for tests: tokens `fake-token-N` living `lifetime` on its clock.
pub struct FakeSource {
    clock: Arc<dyn Clock>,
    lifetime: Mutex<Option<Duration>>,
    failure: Mutex<Option<(TokenErrorKind, Option<Duration>)>>,
    delay: Mutex<Duration>,
    calls: AtomicU64,
    dropped: Arc<AtomicBool>,
}

impl FakeSource {
    /// A source whose tokens live `lifetime` (`None`: never expire).
    #[must_use]
    pub fn new(clock: Arc<dyn Clock>, lifetime: Option<Duration>) -> Arc<Self> {
        Arc::new(Self {
            clock,
            lifetime: Mutex::new(lifetime),
            failure: Mutex::new(None),
            delay: Mutex::new(Duration::ZERO),
            calls: AtomicU64::new(0),
            dropped: Arc::new(AtomicBool::new(false)),
        })
    }

    /// How many fetches were made.
    #[must_use]
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Makes every fetch fail with `kind` (and a retry-after hint) until [`FakeSource::recover`].
    pub fn fail(&self, kind: TokenErrorKind, retry_after: Option<Duration>) {
        *self.failure.lock().unwrap() = Some((kind, retry_after));
    }

    /// Makes fetches succeed again.
    pub fn recover(&self) {
        *self.failure.lock().unwrap() = None;
    }

    /// Makes each fetch take `delay` (on tokio's timer).
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    /// Changes the lifetime of tokens issued from now on.
    pub fn set_lifetime(&self, lifetime: Option<Duration>) {
        *self.lifetime.lock().unwrap() = lifetime;
    }

    /// A flag that turns true when the source is dropped (dispose tests).
    #[must_use]
    pub fn drop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.dropped)
    }
}

impl Drop for FakeSource {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

impl fmt::Debug for FakeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeSource")
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TokenSource for FakeSource {
    async fn fetch(&self) -> Result<AccessToken, TokenError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let failure = *self.failure.lock().unwrap();
        if let Some((kind, retry_after)) = failure {
            let mut error = TokenError::new(kind, "fake source", "the endpoint is down")
                .with_cause(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "connection refused",
                ));
            if let Some(after) = retry_after {
                error = error.with_retry_after(after);
            }
            return Err(error);
        }
        let lifetime = *self.lifetime.lock().unwrap();
        let token = AccessToken::new(format!("fake-token-{n}"));
        Ok(match lifetime {
            Some(l) => token.with_expiry(self.clock.now() + l),
            None => token,
        })
    }

    fn info(&self) -> SourceInfo {
        SourceInfo::new("callback")
            .credential_kind("fake")
            .identity("fake-identity")
    }
}
