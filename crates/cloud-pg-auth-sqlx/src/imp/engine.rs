//! The pooled engine: a sqlx pool whose connect options carry a fresh token.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cloud_pg_auth::engine::{Lifecycle, PoolConfig};
use cloud_pg_auth::login::Attempt;
use cloud_pg_auth::{Auth, EngineStatus, PoolSettings, PoolStatus, Settings};
use sqlx::Connection as _;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::task::JoinHandle;

use super::sqlx;
use super::target::Target;
use super::tokens::Tokens;
use super::{Connection, Error, Pool, PoolBuilder};

/// A sqlx pool for one server, with its own credential.
///
/// sqlx has no per-connection password hook, so the engine keeps the pool's connect options
/// current instead: a task owned by the engine installs each new token of the credential
/// (refreshed ahead of expiry in the background) with `Pool::set_connect_options`;
/// [`PooledEngine::get`] installs a valid token itself when the installed one is due (a
/// process that slept or was suspended past the refresh time); and a checkout whose login the
/// server refuses drops the token, installs a new one and tries once more. Idle connections
/// are tested at checkout and closed after [`DEFAULT_MAX_LIFETIME`](super::DEFAULT_MAX_LIFETIME).
///
/// Clones share the pool and the credential. Dropping the last one stops the token task and
/// the refresher, drops the credential, takes the token out of the pool's options and closes
/// the pool, even while a clone of [`PooledEngine::pool`] or [`PooledEngine::auth`] lives on.
#[derive(Clone)]
pub struct PooledEngine {
    inner: Arc<Inner>,
}

struct Inner {
    /// First, so that the last handle's drop step runs before the relay goes.
    lifecycle: Lifecycle,
    pool: Pool,
    target: Arc<Target>,
    tokens: Arc<Tokens>,
    watcher: Watcher,
    waiting: AtomicUsize,
    max_size: usize,
    connection_timeout: Duration,
    settings: PoolSettings,
}

/// The token task, stopped by dispose or by the last handle's drop.
type Watcher = Arc<Mutex<Option<JoinHandle<()>>>>;

fn take_watcher(watcher: &Watcher) -> Option<JoinHandle<()>> {
    watcher
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
}

impl PooledEngine {
    cloud_pg_auth::engine_constructors!(Error);

    /// A builder, to change the pool's options.
    pub fn builder(settings: Settings) -> PooledEngineBuilder {
        PooledEngineBuilder {
            config: PoolConfig::new(settings),
            configure: None,
            after_connect: None,
            connect_options: None,
        }
    }

    /// Checks out a connection: an idle one that passes sqlx's test, or a new one that logs
    /// in with the installed token (made current first if it is due). A failed login comes
    /// back with its cause.
    pub async fn get(&self) -> Result<Connection, Error> {
        let inner = &*self.inner;
        inner.lifecycle.check_open()?;
        inner.target.ensure_relay()?;
        inner.tokens.ensure_fresh().await?;
        let used = inner.tokens.installed_secret();
        let _waiting = Waiting::new(&inner.waiting);
        let checkout = inner
            .target
            .retry_once(|attempt| {
                let used = used.clone();
                async move {
                    if attempt == Attempt::Retry {
                        inner.tokens.replace_rejected(used).await?;
                    }
                    match inner.pool.acquire().await {
                        Ok(connection) => Ok(Ok(connection)),
                        // The pool's own failures, not a login's: mapped below.
                        Err(
                            error @ (sqlx::Error::PoolTimedOut
                            | sqlx::Error::PoolClosed
                            | sqlx::Error::WorkerCrashed),
                        ) => Ok(Err(error)),
                        Err(error) => Err(inner.target.attempt_error(error)),
                    }
                }
            })
            .await?;
        match checkout {
            Ok(connection) => Ok(connection),
            Err(error) => Err(inner.pool_error(error).await),
        }
    }

    /// The sqlx pool (for its own API). Its connect options hold the current token: never
    /// print them (sqlx's `PgConnectOptions` shows its password in `Debug`).
    #[must_use]
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The verdict, the credential's status, connection counters, pool figures and the pool's
    /// configured options (a `/health` payload; no secrets).
    #[must_use]
    pub fn status(&self) -> EngineStatus {
        let inner = &self.inner;
        let max_size = if inner.pool.is_closed() {
            0
        } else {
            inner.max_size
        };
        let stats = inner.target.stats();
        EngineStatus::new(
            inner.lifecycle.auth().status(),
            stats.connections_opened,
            stats.auth_retries,
            Some(PoolStatus::new(
                max_size,
                inner.pool.size() as usize,
                inner.pool.num_idle(),
                inner.waiting.load(Ordering::Relaxed),
            )),
        )
        .with_pool_settings(inner.settings)
        .with_disposed(self.is_disposed())
    }

    /// The engine's credential.
    #[must_use]
    pub fn auth(&self) -> &Auth {
        self.inner.lifecycle.auth()
    }

    /// Stops the task that installs tokens, takes the token out of the pool's options, closes
    /// the pool to new checkouts, drops the credential and waits for checked-out connections
    /// to come back at most the dispose timeout (they close when returned), then stops the
    /// relay (removing its socket directory). Later checkouts fail with [`Error::Disposed`].
    /// Idempotent.
    pub async fn dispose(&self) {
        let inner = &*self.inner;
        if let Some(watcher) = take_watcher(&inner.watcher) {
            watcher.abort();
            let _ = watcher.await;
        }
        inner
            .lifecycle
            .dispose(|| {
                inner.tokens.remove();
                // Closed to new checkouts now; the future ends when every connection is back.
                inner.pool.close()
            })
            .await;
        inner.target.stop_relay().await;
    }

    /// Whether [`PooledEngine::dispose`] ran.
    #[must_use]
    pub fn is_disposed(&self) -> bool {
        self.inner.lifecycle.is_disposed()
    }

    /// Whether the task that installs new tokens is running.
    #[cfg(test)]
    pub(crate) fn token_watcher_running(&self) -> bool {
        self.inner
            .watcher
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|w| !w.is_finished())
    }

    #[cfg(test)]
    pub(crate) fn installed_secret(&self) -> Option<cloud_pg_auth::Secret> {
        self.inner.tokens.installed_secret()
    }

    #[cfg(test)]
    pub(crate) async fn make_fresh(&self) -> Result<(), Error> {
        Ok(self.inner.tokens.ensure_fresh().await?)
    }

    #[cfg(test)]
    pub(crate) fn target(&self) -> &Target {
        &self.inner.target
    }
}

impl Inner {
    /// Maps the pool's own failures. A timeout while the pool had room means new
    /// connections failed (sqlx retries refused connections until the deadline and keeps no
    /// cause): one direct attempt with the same options finds the cause.
    async fn pool_error(&self, error: sqlx::Error) -> Error {
        match error {
            sqlx::Error::PoolClosed if self.lifecycle.is_disposed() => Error::Disposed,
            sqlx::Error::PoolTimedOut => {
                let cause = if (self.pool.size() as usize) < self.max_size {
                    self.diagnose().await.map(Box::new)
                } else {
                    None
                };
                Error::Timeout {
                    waited: self.connection_timeout,
                    cause,
                }
            }
            error => Error::Sqlx(error),
        }
    }

    async fn diagnose(&self) -> Option<Error> {
        let options = self.pool.connect_options();
        let attempt = tokio::time::timeout(
            self.connection_timeout,
            PgConnection::connect_with(&options),
        );
        match attempt.await {
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                None
            }
            Ok(Err(error)) => Some(self.target.login_error(error)),
            Err(_) => None,
        }
    }
}

/// Counts a caller waiting in `acquire`.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for PooledEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("PooledEngine")
            .field("target", &inner.target.label())
            .field("max_size", &inner.max_size)
            .field("size", &inner.pool.size())
            .field("idle", &inner.pool.num_idle())
            .field("auth", inner.lifecycle.auth())
            .field("stats", &inner.target.stats())
            .field("disposed", &self.is_disposed())
            .finish()
    }
}

type Configure = Box<dyn FnOnce(PoolBuilder) -> PoolBuilder + Send>;

/// sqlx's (`futures_core`'s) boxed future.
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A caller's `after_connect`, sqlx's signature.
type AfterConnect = Arc<
    dyn for<'c> Fn(
            &'c mut PgConnection,
            PoolConnectionMetadata,
        ) -> BoxFuture<'c, Result<(), sqlx::Error>>
        + Send
        + Sync,
>;

/// Options of a [`PooledEngine`]; consuming, finished by [`PooledEngineBuilder::build`].
#[must_use]
pub struct PooledEngineBuilder {
    config: PoolConfig,
    configure: Option<Configure>,
    after_connect: Option<AfterConnect>,
    connect_options: Option<PgConnectOptions>,
}

impl PooledEngineBuilder {
    cloud_pg_auth::pool_builder_methods!(config);

    /// Changes sqlx's own pool options last (idle timeout, `min_connections`,
    /// `before_acquire`, `after_release`). An `after_connect` set here is replaced by the
    /// engine's (sqlx cannot hand it back): set yours with
    /// [`PooledEngineBuilder::after_connect`].
    pub fn configure(
        mut self,
        configure: impl FnOnce(PoolBuilder) -> PoolBuilder + Send + 'static,
    ) -> Self {
        self.configure = Some(Box::new(configure));
        self
    }

    /// Runs `callback` on every new connection, after the engine's own hook (which counts
    /// it), as sqlx's `PgPoolOptions::after_connect` would: its error closes that connection
    /// and sqlx tries a new one until the checkout times out.
    pub fn after_connect<F>(mut self, callback: F) -> Self
    where
        for<'c> F: Fn(
                &'c mut PgConnection,
                PoolConnectionMetadata,
            ) -> Pin<Box<dyn Future<Output = Result<(), sqlx::Error>> + Send + 'c>>
            + Send
            + Sync
            + 'static,
    {
        self.after_connect = Some(Arc::new(callback));
        self
    }

    /// sqlx connect options to start from: their statement cache capacity, logging, extra
    /// float digits, `options` (`-c name=value`) and application name (unless the settings
    /// name one) are kept. Where and how a connection logs in is always the settings' and
    /// the engine's: host, port, socket, user, password, database and TLS are replaced, so a
    /// token only ever goes through the engine's verified relay.
    pub fn connect_options(mut self, options: PgConnectOptions) -> Self {
        self.connect_options = Some(options);
        self
    }

    /// Checks the options, builds the credential (starting its background refresh), installs
    /// its first token and creates the pool. No connection is opened until the first
    /// checkout; a token that cannot be had yet is fetched again then, and its error returned
    /// from there.
    pub async fn build(self) -> Result<PooledEngine, Error> {
        self.config.check()?;
        let credential = self.config.credential();
        let target = Arc::new(Target::with_base(
            &credential.login_settings(),
            self.connect_options,
        )?);
        target.ensure_relay()?;
        let clock = credential.auth_options().clock_handle();
        let auth = credential.build_auth().await?;
        let mut options = PoolBuilder::new()
            .max_connections(u32::try_from(self.config.max_size()).unwrap_or(u32::MAX))
            .max_lifetime(self.config.max_lifetime())
            .acquire_timeout(self.config.connection_timeout())
            .test_before_acquire(true);
        if let Some(configure) = self.configure {
            options = configure(options);
        }
        // Weakly: a pool clone kept by the application must not keep the relay alive.
        let counted = Arc::downgrade(&target);
        let user_hook = self.after_connect;
        let options = options.after_connect(move |connection, metadata| {
            if let Some(target) = counted.upgrade() {
                target.count_opened();
            }
            match &user_hook {
                Some(hook) => hook(connection, metadata),
                None => Box::pin(async { Ok(()) }),
            }
        });
        let max_size = options.get_max_connections() as usize;
        // sqlx's own flag: `configure` may have changed it.
        let settings = PoolSettings::from(&self.config)
            .with_checkout_validation(options.get_test_before_acquire());
        let pool = options.connect_lazy_with(target.base_options());
        let changes = auth.token_changes()?;
        let watcher = Watcher::default();
        let lifecycle = Lifecycle::new(auth, self.config.dispose_timeout()).on_last_drop({
            let (pool, watcher, base) = (pool.clone(), Arc::clone(&watcher), target.base_options());
            move || {
                if let Some(watcher) = take_watcher(&watcher) {
                    watcher.abort();
                }
                pool.set_connect_options(base);
                // Marks the pool closed at once; connections close as they come back.
                drop(pool.close());
            }
        });
        let tokens = Arc::new(Tokens::new(
            pool.clone(),
            Arc::clone(&target),
            lifecycle.auth().clone(),
            clock,
            lifecycle.watch(),
        ));
        if let Err(error) = tokens.install_current().await {
            tracing::warn!(error = %cloud_pg_auth::engine::chain_text(&error), "no token yet; the first checkout tries again");
        }
        *watcher.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(tokens.spawn_watcher(changes));
        Ok(PooledEngine {
            inner: Arc::new(Inner {
                lifecycle,
                pool,
                target,
                tokens,
                watcher,
                waiting: AtomicUsize::new(0),
                max_size,
                connection_timeout: self.config.connection_timeout(),
                settings,
            }),
        })
    }
}

impl fmt::Debug for PooledEngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledEngineBuilder")
            .field("config", &self.config)
            .field("configure", &self.configure.is_some())
            .field("after_connect", &self.after_connect.is_some())
            // Never the options themselves: sqlx's `Debug` shows a password.
            .field("connect_options", &self.connect_options.is_some())
            .finish()
    }
}
