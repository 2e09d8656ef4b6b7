//! The pooled engine: a sqlx pool whose connect options carry a fresh token.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use cloud_pg_auth::clock::Clock;
use cloud_pg_auth::{
    AccessToken, Auth, AuthOptions, EngineStatus, PoolStatus, Secret, Settings, TokenSource,
};
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::error::is_auth_failure;
use super::sqlx;
use super::target::Target;
use super::{Connection, Error, Pool, PoolBuilder};

/// The most connections a pool opens unless told otherwise.
pub const DEFAULT_MAX_SIZE: usize = 10;
/// Connections older than this are closed (hygiene, not tied to the token lifetime: a token
/// is only checked at login).
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(55 * 60);
/// How long a checkout waits for a connection.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// An installed token counts as stale this long before it expires, so that no new connection
/// starts a login with a token about to lapse.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

/// A sqlx pool for one server, with its own credential.
///
/// sqlx has no per-connection password hook, so the engine keeps the pool's connect options
/// current instead: a task owned by the engine installs each new token of the credential
/// (refreshed ahead of expiry in the background) with `Pool::set_connect_options`;
/// [`PooledEngine::get`] installs a valid token itself when the installed one is due (a
/// process that slept or was suspended past the refresh time); and a checkout whose login the
/// server refuses (SQLSTATE 28P01/28000) drops the token, installs a new one and tries once
/// more. Idle connections are tested at checkout and closed after [`DEFAULT_MAX_LIFETIME`].
/// Clones share the pool and the credential.
#[derive(Clone)]
pub struct PooledEngine {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    auth: Auth,
    target: Target,
    clock: Arc<dyn Clock>,
    installed: Mutex<Option<Installed>>,
    /// One install at a time, so an older token never replaces a newer one.
    install_lock: tokio::sync::Mutex<()>,
    opened: Arc<AtomicU64>,
    auth_retries: AtomicU64,
    waiting: AtomicUsize,
    max_size: usize,
    connection_timeout: Duration,
    disposed: AtomicBool,
    watcher: Mutex<Option<JoinHandle<()>>>,
}

/// The token in the pool's connect options.
struct Installed {
    secret: Secret,
    expires_at: Option<SystemTime>,
    refresh_at: Option<SystemTime>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping the engine ends it like dispose, without waiting (the refresher stops even
        // if the user holds a clone of the credential).
        if let Some(watcher) = self.watcher.lock().unwrap().take() {
            watcher.abort();
        }
        self.auth.stop_refresher();
        drop(self.pool.close());
    }
}

impl PooledEngine {
    /// An engine configured from the environment ([`Settings::from_env`]).
    pub async fn from_env() -> Result<Self, Error> {
        Self::from_settings(Settings::from_env()?).await
    }

    /// An engine for `settings` with the default options.
    pub async fn from_settings(settings: Settings) -> Result<Self, Error> {
        Self::builder(settings).build().await
    }

    /// An engine for a `postgres://` URL ([`Settings::from_url`]).
    pub async fn from_url(url: &str) -> Result<Self, Error> {
        Self::from_settings(Settings::from_url(url)?).await
    }

    /// A builder, to change the pool's options.
    pub fn builder(settings: Settings) -> PooledEngineBuilder {
        PooledEngineBuilder {
            settings,
            max_size: DEFAULT_MAX_SIZE,
            max_lifetime: Some(DEFAULT_MAX_LIFETIME),
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            auth_options: AuthOptions::default(),
            token_source: None,
            configure: None,
        }
    }

    /// Checks out a connection: an idle one that passes sqlx's test, or a new one that logs
    /// in with the installed token (made current first if it is due). A failed login comes
    /// back with its cause.
    pub async fn get(&self) -> Result<Connection, Error> {
        let inner = &self.inner;
        if self.is_disposed() {
            return Err(Error::Disposed);
        }
        inner.target.ensure_relay()?;
        inner.ensure_fresh().await?;
        let used = inner.installed_secret();
        let _waiting = Waiting::new(&inner.waiting);
        match inner.pool.acquire().await {
            Ok(connection) => Ok(connection),
            Err(error) if is_auth_failure(&error) => {
                inner.auth_retries.fetch_add(1, Ordering::Relaxed);
                tracing::info!(target_db = %inner.target.label(), "login refused; retrying once with a new token");
                inner.replace_rejected(used).await?;
                match inner.pool.acquire().await {
                    Ok(connection) => Ok(connection),
                    Err(error) => Err(inner.acquire_error(error, true).await),
                }
            }
            Err(error) => Err(inner.acquire_error(error, false).await),
        }
    }

    /// The sqlx pool (for its own API). Its connect options hold the current token: never
    /// print them (sqlx's `PgConnectOptions` shows its password in `Debug`).
    #[must_use]
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The credential's status, connection counters and pool figures (a `/health` payload;
    /// no secrets).
    #[must_use]
    pub fn status(&self) -> EngineStatus {
        let inner = &self.inner;
        let size = inner.pool.size() as usize;
        let max_size = if inner.pool.is_closed() {
            0
        } else {
            inner.max_size
        };
        EngineStatus::new(
            inner.auth.status(),
            inner.opened.load(Ordering::Relaxed),
            inner.auth_retries.load(Ordering::Relaxed),
            Some(PoolStatus::new(
                max_size,
                size,
                inner.pool.num_idle(),
                inner.waiting.load(Ordering::Relaxed),
            )),
        )
    }

    /// The engine's credential.
    #[must_use]
    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    /// Stops the task that installs tokens, removes the token from the pool's options, closes
    /// the pool, stops the relay (removing its socket directory) and drops the credential.
    /// Later checkouts fail with [`Error::Disposed`].
    ///
    /// Like sqlx's `Pool::close`, this waits until checked-out connections come back: drop
    /// them first. Idempotent.
    pub async fn dispose(&self) {
        let inner = &self.inner;
        inner.disposed.store(true, Ordering::SeqCst);
        let watcher = inner.watcher.lock().unwrap().take();
        if let Some(watcher) = watcher {
            watcher.abort();
            let _ = watcher.await;
        }
        {
            let _guard = inner.install_lock.lock().await;
            inner.pool.set_connect_options(inner.target.base_options());
            *inner.installed.lock().unwrap() = None;
        }
        inner.pool.close().await;
        inner.target.stop_relay().await;
        inner.auth.dispose().await;
    }

    /// Whether [`PooledEngine::dispose`] ran.
    #[must_use]
    pub fn is_disposed(&self) -> bool {
        self.inner.disposed.load(Ordering::SeqCst)
    }

    /// Whether the task that installs new tokens is running.
    #[must_use]
    pub fn token_watcher_running(&self) -> bool {
        self.inner
            .watcher
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|w| !w.is_finished())
    }

    #[cfg(test)]
    pub(crate) fn installed_secret(&self) -> Option<Secret> {
        self.inner.installed_secret()
    }

    #[cfg(test)]
    pub(crate) async fn make_fresh(&self) -> Result<(), Error> {
        self.inner.ensure_fresh().await
    }

    #[cfg(test)]
    pub(crate) fn target(&self) -> &Target {
        &self.inner.target
    }
}

impl Inner {
    /// Whether a new connection would log in with a token that is due for refresh, expired or
    /// about to expire (on the credential's clock), or with none.
    fn is_stale(&self) -> bool {
        let now = self.clock.now();
        match &*self.installed.lock().unwrap() {
            None => true,
            Some(installed) => {
                installed.refresh_at.is_some_and(|at| now >= at)
                    || installed
                        .expires_at
                        .is_some_and(|at| now + EXPIRY_MARGIN >= at)
            }
        }
    }

    /// Makes the installed token current before a checkout that may open a connection. A
    /// failure to get a token is an error only when the installed one is no longer valid.
    async fn ensure_fresh(&self) -> Result<(), Error> {
        if !self.is_stale() {
            return Ok(());
        }
        let _guard = self.install_lock.lock().await;
        if !self.is_stale() {
            return Ok(());
        }
        match self.auth.token().await {
            Ok(token) => self.install(&token),
            Err(error) => {
                let now = self.clock.now();
                let usable = self
                    .installed
                    .lock()
                    .unwrap()
                    .as_ref()
                    .is_some_and(|i| i.expires_at.is_none_or(|at| now < at));
                if usable {
                    tracing::warn!(error = %cloud_pg_auth::chain_text(&error), "token refresh failed; the installed token is still valid");
                    Ok(())
                } else {
                    Err(error.into())
                }
            }
        }
    }

    fn installed_secret(&self) -> Option<Secret> {
        self.installed
            .lock()
            .unwrap()
            .as_ref()
            .map(|i| i.secret.clone())
    }

    /// After the server refused `rejected` (the token installed when the checkout began):
    /// drop it from the cache and install a new one, unless another caller already did.
    async fn replace_rejected(&self, rejected: Option<Secret>) -> Result<(), Error> {
        let _guard = self.install_lock.lock().await;
        if self.installed_secret() != rejected {
            return Ok(());
        }
        if let Some(rejected) = &rejected {
            self.auth.invalidate(rejected);
        }
        let token = self.auth.token().await?;
        self.install(&token)
    }

    /// Installs `token` in the pool's connect options, if it is not installed already.
    /// Callers hold `install_lock`.
    fn install(&self, token: &AccessToken) -> Result<(), Error> {
        if self
            .installed
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|i| i.secret == *token.secret())
        {
            return Ok(());
        }
        let options = self.target.options_for(token)?;
        let refresh_at = self.auth.status().refresh_at;
        self.pool.set_connect_options(options);
        *self.installed.lock().unwrap() = Some(Installed {
            secret: token.secret().clone(),
            expires_at: token.expires_at(),
            refresh_at,
        });
        tracing::debug!(target_db = %self.target.label(), "new token installed in the pool's connect options");
        Ok(())
    }

    /// Installs the credential's current token (the watcher, after each new token).
    async fn install_current(&self) -> Result<(), Error> {
        let _guard = self.install_lock.lock().await;
        if self.disposed.load(Ordering::SeqCst) {
            return Ok(());
        }
        let token = self.auth.token().await?;
        self.install(&token)
    }

    /// Maps an acquire failure. A timeout while the pool had room means new connections
    /// failed (sqlx retries refused connections until the deadline and keeps no cause): one
    /// direct attempt with the same options finds the cause.
    async fn acquire_error(&self, error: sqlx::Error, retried: bool) -> Error {
        match error {
            sqlx::Error::PoolClosed if self.disposed.load(Ordering::SeqCst) => Error::Disposed,
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
            error @ (sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed) => Error::Sqlx(error),
            error => self.target.login_error(error, retried),
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
            Ok(Err(error)) => Some(self.target.login_error(error, false)),
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

/// Installs each new token of the credential. Holds the engine weakly; ends when the
/// engine or the credential is gone.
async fn watch_tokens(engine: Weak<Inner>, mut changes: watch::Receiver<u64>) {
    while changes.changed().await.is_ok() {
        let Some(inner) = engine.upgrade() else {
            return;
        };
        if let Err(error) = inner.install_current().await {
            tracing::warn!(error = %cloud_pg_auth::chain_text(&error), "could not install the new token");
        }
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
            .field("auth", &inner.auth)
            .field("connections_opened", &inner.opened.load(Ordering::Relaxed))
            .field("auth_retries", &inner.auth_retries.load(Ordering::Relaxed))
            .field("disposed", &self.is_disposed())
            .finish()
    }
}

type Configure = Box<dyn FnOnce(PoolBuilder) -> PoolBuilder + Send>;

/// Options of a [`PooledEngine`]; consuming, finished by [`PooledEngineBuilder::build`].
#[must_use]
pub struct PooledEngineBuilder {
    settings: Settings,
    max_size: usize,
    max_lifetime: Option<Duration>,
    connection_timeout: Duration,
    auth_options: AuthOptions,
    token_source: Option<Arc<dyn TokenSource>>,
    configure: Option<Configure>,
}

impl PooledEngineBuilder {
    /// The most connections the pool opens ([`DEFAULT_MAX_SIZE`]).
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// Connections older than this are closed ([`DEFAULT_MAX_LIFETIME`]); `None` keeps them.
    pub fn max_lifetime(mut self, max_lifetime: impl Into<Option<Duration>>) -> Self {
        self.max_lifetime = max_lifetime.into();
        self
    }

    /// How long a checkout may wait for a connection ([`DEFAULT_CONNECTION_TIMEOUT`]).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// The credential's options (background refresh, clock). The refresh policy and the
    /// fallback password come from the settings.
    pub fn auth_options(mut self, options: AuthOptions) -> Self {
        self.auth_options = options;
        self
    }

    /// Takes tokens from `source` instead of the source the settings name.
    pub fn token_source(mut self, source: Arc<dyn TokenSource>) -> Self {
        self.token_source = Some(source);
        self
    }

    /// Changes sqlx's own pool options last (idle timeout, `min_connections`,
    /// `before_acquire`, `after_release`). `after_connect` is this crate's (it counts new
    /// connections): one set here is replaced.
    pub fn configure(
        mut self,
        configure: impl FnOnce(PoolBuilder) -> PoolBuilder + Send + 'static,
    ) -> Self {
        self.configure = Some(Box::new(configure));
        self
    }

    /// Builds the credential (starting its background refresh), installs its first token and
    /// creates the pool. No connection is opened until the first checkout; a token that
    /// cannot be had yet is fetched again then, and its error returned from there.
    pub async fn build(self) -> Result<PooledEngine, Error> {
        let settings = custom_source_settings(self.settings, self.token_source.is_some());
        let target = Target::from_settings(&settings)?;
        target.ensure_relay()?;
        let clock = Arc::clone(&self.auth_options.clock);
        let auth = Auth::build(&settings, self.token_source, self.auth_options).await?;
        let mut options = PoolBuilder::new()
            .max_connections(u32::try_from(self.max_size).unwrap_or(u32::MAX))
            .max_lifetime(self.max_lifetime)
            .acquire_timeout(self.connection_timeout)
            .test_before_acquire(true);
        if let Some(configure) = self.configure {
            options = configure(options);
        }
        let opened = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&opened);
        let options = options.after_connect(move |_, _| {
            counter.fetch_add(1, Ordering::Relaxed);
            Box::pin(async { Ok(()) })
        });
        let max_size = options.get_max_connections() as usize;
        let pool = options.connect_lazy_with(target.base_options());
        let changes = auth.token_changes()?;
        let inner = Arc::new(Inner {
            pool,
            auth,
            target,
            clock,
            installed: Mutex::new(None),
            install_lock: tokio::sync::Mutex::new(()),
            opened,
            auth_retries: AtomicU64::new(0),
            waiting: AtomicUsize::new(0),
            max_size,
            connection_timeout: self.connection_timeout,
            disposed: AtomicBool::new(false),
            watcher: Mutex::new(None),
        });
        if let Err(error) = inner.install_current().await {
            tracing::warn!(error = %cloud_pg_auth::chain_text(&error), "no token yet; the first checkout tries again");
        }
        let watcher = tokio::spawn(watch_tokens(Arc::downgrade(&inner), changes));
        *inner.watcher.lock().unwrap() = Some(watcher);
        Ok(PooledEngine { inner })
    }
}

impl fmt::Debug for PooledEngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledEngineBuilder")
            .field("settings", &self.settings)
            .field("max_size", &self.max_size)
            .field("max_lifetime", &self.max_lifetime)
            .field("connection_timeout", &self.connection_timeout)
            .field("auth_options", &self.auth_options)
            .field("token_source", &self.token_source)
            .field("configure", &self.configure.is_some())
            .finish()
    }
}

/// With a token source of the caller's, `Auto` settings mean that source (no password, no
/// cloud to guess).
pub(crate) fn custom_source_settings(settings: Settings, has_source: bool) -> Settings {
    if has_source {
        settings.for_custom_source()
    } else {
        settings
    }
}
