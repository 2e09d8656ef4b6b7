//! An engine's ownership of its credential: the disposed flag, the dispose contract, and the
//! drop guard that ends the credential with the last engine handle.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::auth::Auth;
use crate::error::Error;

type OnDrop = Box<dyn FnOnce() + Send>;

/// The part of an engine that owns its credential. Engines hold one and are `Clone`; clones
/// share it.
///
/// - [`Lifecycle::dispose`] is the dispose contract: mark the engine disposed, close the
///   pool to new checkouts (the adapter's step), stop the refresher and drop the credential,
///   then wait for checked-out connections at most the engine's dispose timeout. It never
///   hangs, and is idempotent.
/// - When the last handle is dropped without `dispose`, the same happens without waiting:
///   the engine is marked disposed, the adapter's drop step runs (it closes the pool where
///   the pool can be closed without awaiting), and the credential is dropped at once
///   ([`Auth::close`]). A clone of the pool or of the `Auth` kept by the application no
///   longer keeps a refresher running or a cloud credential alive: new logins through it
///   fail with [`Error::Disposed`].
#[derive(Clone)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

struct Inner {
    auth: Auth,
    disposed: Arc<AtomicBool>,
    dispose_timeout: Duration,
    on_drop: Mutex<Option<OnDrop>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.disposed.store(true, Ordering::SeqCst);
        let on_drop = self
            .on_drop
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(on_drop) = on_drop {
            on_drop();
        }
        self.auth.close();
    }
}

/// Tells whether an engine was disposed or dropped, without keeping its credential alive:
/// for a pool's manager, which pool clones keep after the engine is gone.
#[derive(Clone)]
pub struct LifecycleWatch {
    disposed: Arc<AtomicBool>,
}

impl LifecycleWatch {
    /// Whether the engine was disposed or its last handle dropped.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.disposed.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for LifecycleWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LifecycleWatch")
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Lifecycle {
    /// Takes ownership of `auth`. `dispose_timeout` bounds the wait in
    /// [`Lifecycle::dispose`].
    #[must_use]
    pub fn new(auth: Auth, dispose_timeout: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                auth,
                disposed: Arc::new(AtomicBool::new(false)),
                dispose_timeout,
                on_drop: Mutex::new(None),
            }),
        }
    }

    /// The step to run when the last handle is dropped (close the pool, stop the adapter's
    /// tasks). It must not block. Set once, by the adapter's builder.
    #[must_use]
    pub fn on_last_drop(self, step: impl FnOnce() + Send + 'static) -> Self {
        *self
            .inner
            .on_drop
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Box::new(step));
        self
    }

    /// The credential.
    #[must_use]
    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    /// Whether the engine was disposed.
    #[must_use]
    pub fn is_disposed(&self) -> bool {
        self.inner.disposed.load(Ordering::SeqCst)
    }

    /// `Err(Error::Disposed)` once the engine was disposed: the first step of a checkout.
    pub fn check_open(&self) -> Result<(), Error> {
        if self.is_disposed() {
            Err(Error::Disposed)
        } else {
            Ok(())
        }
    }

    /// A watch on the disposed flag that does not keep the credential alive.
    #[must_use]
    pub fn watch(&self) -> LifecycleWatch {
        LifecycleWatch {
            disposed: Arc::clone(&self.inner.disposed),
        }
    }

    /// How long [`Lifecycle::dispose`] waits for checked-out connections.
    #[must_use]
    pub fn dispose_timeout(&self) -> Duration {
        self.inner.dispose_timeout
    }

    /// The dispose contract. Marks the engine disposed; calls `close`, the adapter's step
    /// that closes the pool to new checkouts (and drops idle connections) and returns a
    /// future that ends when every checked-out connection is back; stops the refresher and
    /// drops the credential; then waits for that future at most the dispose timeout. Returns
    /// whether every connection came back in time. Idempotent.
    pub async fn dispose<F, D>(&self, close: F) -> bool
    where
        F: FnOnce() -> D,
        D: Future<Output = ()>,
    {
        self.inner.disposed.store(true, Ordering::SeqCst);
        let returned = close();
        self.inner.auth.dispose().await;
        let timeout = self.inner.dispose_timeout;
        if tokio::time::timeout(timeout, returned).await.is_ok() {
            true
        } else {
            tracing::warn!(
                "connections were still checked out {timeout:?} after dispose began; they close when returned (raise dispose_timeout to wait longer)"
            );
            false
        }
    }
}

/// A future that ends when `checked_out()` reaches zero: for pools that close without a
/// future of their own (deadpool, bb8). It looks every 10 ms; [`Lifecycle::dispose`] bounds
/// it.
pub async fn connections_returned(checked_out: impl Fn() -> usize) {
    while checked_out() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lifecycle")
            .field("auth", &self.inner.auth)
            .field("disposed", &self.is_disposed())
            .field("dispose_timeout", &self.inner.dispose_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::AuthOptions;
    use crate::testing::FakeSource;

    fn engine_auth() -> (Auth, Arc<AtomicBool>) {
        let (clock, source) = FakeSource::with_manual_clock(Some(Duration::from_secs(3600)));
        let dropped = source.drop_flag();
        let auth = Auth::new(source, AuthOptions::default().clock(Arc::new(clock)));
        (auth, dropped)
    }

    #[tokio::test]
    async fn the_last_handle_ends_the_credential_even_while_clones_of_it_live() {
        let (auth, dropped) = engine_auth();
        let steps = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&steps);
        let lifecycle = Lifecycle::new(auth, Duration::from_secs(1)).on_last_drop(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        let kept_auth = lifecycle.auth().clone();
        let watch = lifecycle.watch();
        let second = lifecycle.clone();
        drop(lifecycle);
        assert!(kept_auth.refresher_running(), "a handle is left");
        assert_eq!(steps.load(Ordering::SeqCst), 0);
        drop(second);
        assert_eq!(steps.load(Ordering::SeqCst), 1);
        assert!(watch.is_closed());
        assert!(!kept_auth.refresher_running());
        assert!(dropped.load(Ordering::SeqCst));
        assert!(matches!(kept_auth.token().await, Err(Error::Disposed)));
    }

    #[tokio::test(start_paused = true)]
    async fn dispose_waits_for_returned_connections_at_most_its_bound() {
        let (auth, dropped) = engine_auth();
        let lifecycle = Lifecycle::new(auth, Duration::from_secs(5));
        let order = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&order);
        let auth = lifecycle.auth().clone();
        // A connection that never comes back: dispose still returns, reporting it.
        let all_back = lifecycle
            .dispose(|| {
                seen.lock().unwrap().push(("closed", auth.is_disposed()));
                std::future::pending::<()>()
            })
            .await;
        assert!(!all_back);
        assert_eq!(*order.lock().unwrap(), [("closed", false)]);
        assert!(lifecycle.is_disposed());
        assert!(lifecycle.check_open().is_err());
        assert!(dropped.load(Ordering::SeqCst));
        // Idempotent, and a pool with nothing out returns at once.
        assert!(lifecycle.dispose(|| connections_returned(|| 0)).await);
    }
}
