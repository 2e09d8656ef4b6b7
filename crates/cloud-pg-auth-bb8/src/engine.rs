use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bb8::RunError;
use cloud_pg_auth::settings::check_pool_options;
use cloud_pg_auth::{
    Auth, AuthOptions, EngineStatus, PgConnector, PoolStatus, Settings, TokenSource,
};
use futures_util::FutureExt;

use crate::manager::{LastError, Sink};
use crate::{Connection, Error, Manager, Pool, PoolBuilder};

/// The default max connection lifetime: 55 minutes, as hygiene (the server checks a token only
/// at login, so it does not bound a session's life).
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(55 * 60);
/// The default time a checkout may wait for a connection.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// The default pool size.
pub const DEFAULT_MAX_SIZE: usize = 10;

type Configure = Box<dyn FnOnce(PoolBuilder) -> PoolBuilder + Send>;

/// A bb8 pool whose every new connection logs in with a fresh token from the engine's own
/// credential ([`Auth`]: cache plus background refresher).
///
/// Checkouts are validated (`test_on_check_out`, an empty query) and connections live at most
/// 55 minutes by default. A failed connection attempt reaches the caller as the cause of
/// [`Error::Timeout`]. bb8 has no `close()`: [`PooledEngine::dispose`] takes the idle
/// connections out, makes bb8 drop checked-out ones when they come back, stops the refresher
/// and drops the credential.
pub struct PooledEngine {
    pool: Pool,
    connector: PgConnector,
    disposed: Arc<AtomicBool>,
    last_error: LastError,
    max_lifetime: Option<Duration>,
}

impl PooledEngine {
    /// An engine from the process environment (`PGHOST`, `PGUSER`, `PGAUTH_METHOD`, ...).
    pub async fn from_env() -> Result<Self, Error> {
        Self::from_settings(Settings::from_env()?).await
    }

    /// An engine from settings, with the defaults.
    pub async fn from_settings(settings: Settings) -> Result<Self, Error> {
        Self::builder(settings).build().await
    }

    /// An engine from a `postgres://` URL (never put a token in it).
    pub async fn from_url(url: &str) -> Result<Self, Error> {
        Self::from_settings(Settings::from_url(url)?).await
    }

    /// A builder with the defaults: 10 connections, 55-minute max lifetime, 30-second
    /// connection timeout, checkout test on, background refresh on.
    pub fn builder(settings: Settings) -> PooledEngineBuilder {
        PooledEngineBuilder {
            settings,
            max_size: DEFAULT_MAX_SIZE,
            max_lifetime: Some(DEFAULT_MAX_LIFETIME),
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            test_on_check_out: true,
            auth_options: AuthOptions::default(),
            token_source: None,
            configure: None,
        }
    }

    /// Checks out a connection: an idle one that passes the checkout test, or a new one
    /// logged in with a fresh token.
    pub async fn get(&self) -> Result<Connection<'_>, Error> {
        self.check()?;
        let started = Instant::now();
        let result = self.pool.get().await;
        result.map_err(|e| self.run_error(e, started))
    }

    /// Like [`PooledEngine::get`], for a connection that outlives the borrow of the engine
    /// (moved into a spawned task).
    pub async fn get_owned(&self) -> Result<Connection<'static>, Error> {
        self.check()?;
        let started = Instant::now();
        let result = self.pool.get_owned().await;
        result.map_err(|e| self.run_error(e, started))
    }

    fn check(&self) -> Result<(), Error> {
        if self.is_disposed() {
            Err(Error::Disposed)
        } else {
            Ok(())
        }
    }

    fn run_error(&self, error: RunError<Error>, started: Instant) -> Error {
        if self.is_disposed() {
            return Error::Disposed;
        }
        match error {
            RunError::User(e) => e,
            RunError::TimedOut => Error::Timeout {
                // The pool's own value: `configure` may have changed it.
                waited: self.pool.config().connection_timeout,
                cause: self.last_error.since(started),
            },
        }
    }

    /// The bb8 pool (for `state`, `dedicated_connection`, ...).
    #[must_use]
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The max connection lifetime (enforced by the [`Manager`], not by bb8).
    #[must_use]
    pub fn max_lifetime(&self) -> Option<Duration> {
        self.max_lifetime
    }

    /// The credential, its status and counters.
    #[must_use]
    pub fn auth(&self) -> &Auth {
        self.connector.auth()
    }

    /// The connector that opens this engine's connections.
    #[must_use]
    pub fn connector(&self) -> &PgConnector {
        &self.connector
    }

    /// Credential status, connection counters and pool figures (a `/health` payload).
    #[must_use]
    pub fn status(&self) -> EngineStatus {
        let state = self.pool.state();
        let pool = PoolStatus::new(
            self.pool.config().max_size as usize,
            state.connections as usize,
            state.idle_connections as usize,
            usize::try_from(state.statistics.pending_gets()).unwrap_or(usize::MAX),
        );
        self.connector.engine_status(Some(pool))
    }

    /// Takes the idle connections out and drops them (checked-out ones are dropped when they
    /// come back), stops the refresher and drops the credential. Later checkouts fail with
    /// [`Error::Disposed`]. Idempotent.
    pub async fn dispose(&self) {
        self.disposed.store(true, Ordering::SeqCst);
        // bb8 has no close(). With the flag set, the manager's checkout test passes at once and
        // has_broken() is true, so each idle connection taken here is dropped on return. A
        // get that would have to wait (no idle connection left) is abandoned.
        while self.pool.state().idle_connections > 0 {
            match self.pool.get().now_or_never() {
                Some(Ok(connection)) => drop(connection),
                _ => break,
            }
        }
        self.connector.dispose().await;
    }

    /// Whether [`PooledEngine::dispose`] ran.
    #[must_use]
    pub fn is_disposed(&self) -> bool {
        self.disposed.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for PooledEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.pool.state();
        f.debug_struct("PooledEngine")
            .field("connector", &self.connector)
            .field("connections", &state.connections)
            .field("idle", &state.idle_connections)
            .field("disposed", &self.is_disposed())
            .finish()
    }
}

/// Builds a [`PooledEngine`]; from [`PooledEngine::builder`].
#[must_use]
pub struct PooledEngineBuilder {
    settings: Settings,
    max_size: usize,
    max_lifetime: Option<Duration>,
    connection_timeout: Duration,
    test_on_check_out: bool,
    auth_options: AuthOptions,
    token_source: Option<Arc<dyn TokenSource>>,
    configure: Option<Configure>,
}

impl PooledEngineBuilder {
    /// The most connections the pool opens (10 by default).
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// Connections older than this are closed and replaced, at checkout or when returned (55
    /// minutes by default; `None` keeps them).
    pub fn max_lifetime(mut self, max_lifetime: impl Into<Option<Duration>>) -> Self {
        self.max_lifetime = max_lifetime.into();
        self
    }

    /// How long a checkout may wait for a connection (30 seconds by default).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// Whether idle connections are tested with an empty query at checkout (on by default).
    pub fn test_on_check_out(mut self, on: bool) -> Self {
        self.test_on_check_out = on;
        self
    }

    /// The credential's options (background refresh, clock). The refresh policy and the
    /// fallback password come from the settings.
    pub fn auth_options(mut self, options: AuthOptions) -> Self {
        self.auth_options = options;
        self
    }

    /// Uses `source` for tokens instead of the one the settings name (then `PGAUTH_METHOD`
    /// may stay unset and no password is wanted).
    pub fn token_source(mut self, source: Arc<dyn TokenSource>) -> Self {
        self.token_source = Some(source);
        self
    }

    /// Adjusts bb8's own builder after this crate's settings (`min_idle`,
    /// `connection_customizer`, `queue_strategy`, ...). An `error_sink` set here replaces this
    /// crate's, and timeouts then carry no cause. Setting bb8's `idle_timeout` or
    /// `max_lifetime` starts bb8's reaper task, which outlives [`PooledEngine::dispose`] until
    /// the engine is dropped.
    pub fn configure(
        mut self,
        configure: impl FnOnce(PoolBuilder) -> PoolBuilder + Send + 'static,
    ) -> Self {
        self.configure = Some(Box::new(configure));
        self
    }

    /// Builds the credential and the pool. Opens no connection (unless `min_idle` is
    /// configured, then bb8 opens those in the background).
    pub async fn build(self) -> Result<PooledEngine, Error> {
        check_pool_options(self.max_size, self.max_lifetime)?;
        let connector =
            PgConnector::build(&self.settings, self.token_source, self.auth_options).await?;
        let manager = Manager::new(connector.clone(), self.max_lifetime);
        let disposed = manager.disposed_flag();
        let last_error = LastError::default();
        let mut builder = Pool::builder()
            .max_size(u32::try_from(self.max_size).unwrap_or(u32::MAX))
            // No bb8 reaper (see Manager): lifetime is the manager's, idle connections stay.
            .max_lifetime(None)
            .idle_timeout(None)
            .connection_timeout(self.connection_timeout)
            .test_on_check_out(self.test_on_check_out)
            .error_sink(Box::new(Sink(last_error.clone())));
        if let Some(configure) = self.configure {
            builder = configure(builder);
        }
        let pool = builder.build_unchecked(manager);
        Ok(PooledEngine {
            pool,
            connector,
            disposed,
            last_error,
            max_lifetime: self.max_lifetime,
        })
    }
}

impl fmt::Debug for PooledEngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledEngineBuilder")
            .field("settings", &self.settings)
            .field("max_size", &self.max_size)
            .field("max_lifetime", &self.max_lifetime)
            .field("connection_timeout", &self.connection_timeout)
            .field("test_on_check_out", &self.test_on_check_out)
            .field("auth_options", &self.auth_options)
            .field("token_source", &self.token_source)
            .field("configure", &self.configure.is_some())
            .finish()
    }
}
