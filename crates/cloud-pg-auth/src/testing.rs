//! Test helpers: a fake token source that counts calls, fails on demand and records its drop,
//! and the fixtures the adapters' tests share (settings, a throwaway runtime).
//! Enabled by the `test-util` feature; used by this workspace's adapter tests.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::{Clock, ManualClock};
use crate::error::{TokenError, TokenErrorKind};
use crate::settings::{AuthMethod, Settings};
use crate::source::{SourceInfo, TokenSource};
use crate::{AccessToken, Env};

/// A token source for tests: tokens `fake-token-N` living `lifetime` on its clock.
pub struct FakeSource {
    clock: Arc<dyn Clock>,
    lifetime: Mutex<Option<Duration>>,
    failure: Mutex<Option<(TokenErrorKind, Option<Duration>)>>,
    delay: Mutex<Duration>,
    panics: AtomicBool,
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
            panics: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            dropped: Arc::new(AtomicBool::new(false)),
        })
    }

    /// A source on a [`ManualClock`] standing at 2026-01-01 whose tokens live `lifetime`;
    /// pass the clock to the cache or engine too.
    #[must_use]
    pub fn with_manual_clock(lifetime: Option<Duration>) -> (ManualClock, Arc<Self>) {
        let clock = ManualClock::at_epoch_2026();
        let source = Self::new(Arc::new(clock.clone()), lifetime);
        (clock, source)
    }

    /// How many fetches were made.
    #[must_use]
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Makes every fetch fail with `kind` (and a retry-after hint) until [`FakeSource::recover`].
    pub fn fail(&self, kind: TokenErrorKind, retry_after: Option<Duration>) {
        *lock(&self.failure) = Some((kind, retry_after));
    }

    /// Makes fetches succeed again.
    pub fn recover(&self) {
        *lock(&self.failure) = None;
    }

    /// Makes each fetch take `delay` (on tokio's timer).
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.delay) = delay;
    }

    /// Makes every fetch panic (after counting the call) until `set_panic(false)`. The panic
    /// message quotes a token-like string, `fake-token-panic`, so tests can check that it
    /// is never passed on.
    pub fn set_panic(&self, on: bool) {
        self.panics.store(on, Ordering::SeqCst);
    }

    /// Changes the lifetime of tokens issued from now on.
    pub fn set_lifetime(&self, lifetime: Option<Duration>) {
        *lock(&self.lifetime) = lifetime;
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
        let delay = *lock(&self.delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if self.panics.load(Ordering::SeqCst) {
            panic!("fake source panics on purpose, holding fake-token-panic");
        }
        let failure = *lock(&self.failure);
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
        let lifetime = *lock(&self.lifetime);
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

/// A test that fails with a panic must not fail every later use of the same fake.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Settings for a server no test reaches: 127.0.0.1 port 1, where nothing listens, as user
/// `app`. The method stays `Auto`: give the engine a token source, or use
/// [`offline_password_settings`].
#[must_use]
pub fn offline_settings() -> Settings {
    Settings::default().host("127.0.0.1").port(1).user("app")
}

/// [`offline_settings`] with the password method and `password`.
#[must_use]
pub fn offline_password_settings(password: &str) -> Settings {
    offline_settings()
        .method(AuthMethod::Password)
        .password(password)
}

/// The settings an application reads from `env` (an emulator's exports) with the password
/// method, `user` and `password` added.
///
/// # Panics
/// When they are not valid settings.
#[must_use]
pub fn password_settings_from(
    env: impl IntoIterator<Item = (String, String)>,
    user: &str,
    password: &str,
) -> Settings {
    let mut pairs: Vec<(String, String)> = env.into_iter().collect();
    pairs.extend([
        ("PGAUTH_METHOD".to_string(), "password".to_string()),
        ("PGUSER".to_string(), user.to_string()),
        ("PGPASSWORD".to_string(), password.to_string()),
    ]);
    Settings::from_env_vars(&Env::from_pairs(pairs)).expect("valid password settings")
}

/// Runs the future `make` returns on a tokio runtime of its own (multi-thread or
/// current-thread), on a thread of its own, and drops the runtime before returning: the way
/// an application runs its migrations at start-up before it starts its main runtime.
///
/// # Panics
/// When the runtime cannot be built, or the future panics.
pub fn on_throwaway_runtime<T, F, Fut>(multi_thread: bool, make: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    std::thread::spawn(move || {
        let runtime = if multi_thread {
            tokio::runtime::Builder::new_multi_thread()
        } else {
            tokio::runtime::Builder::new_current_thread()
        }
        .enable_all()
        .build()
        .unwrap();
        let output = runtime.block_on(make());
        drop(runtime);
        output
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
