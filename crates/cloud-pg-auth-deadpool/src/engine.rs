use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cloud_pg_auth::settings::check_pool_options;
use cloud_pg_auth::{
    Auth, AuthOptions, EngineStatus, PgConnector, PoolStatus, Settings, TokenSource,
};
use deadpool::Runtime;
use deadpool::managed::Timeouts;
use deadpool_postgres::RecyclingMethod;

use crate::{Connection, Error, Manager, Pool, PoolBuilder};

/// The default max connection lifetime: 55 minutes, as hygiene (the server checks a token only
/// at login, so it does not bound a session's life).
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(55 * 60);
/// The default time a checkout may take (each of waiting, opening and checking).
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// The default pool size.
pub const DEFAULT_MAX_SIZE: usize = 10;

type Configure = Box<dyn FnOnce(PoolBuilder) -> PoolBuilder + Send>;

/// A deadpool pool whose every new connection logs in with a fresh token from the engine's
/// own credential ([`Auth`]: cache plus background refresher).
///
/// Checkouts are validated (an empty query on idle connections) and connections older than
/// the max lifetime (55 minutes by default) are replaced at checkout. [`PooledEngine::dispose`]
/// closes the pool, stops the refresher and drops the credential; dropping the engine without
/// it stops the refresher too.
pub struct PooledEngine {
    pool: Pool,
    connector: PgConnector,
    timeout: Duration,
    disposed: AtomicBool,
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
    /// timeouts, `Verified` checkout check, background refresh on.
    pub fn builder(settings: Settings) -> PooledEngineBuilder {
        PooledEngineBuilder {
            settings,
            max_size: DEFAULT_MAX_SIZE,
            max_lifetime: Some(DEFAULT_MAX_LIFETIME),
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            recycling_method: RecyclingMethod::Verified,
            auth_options: AuthOptions::default(),
            token_source: None,
            configure: None,
        }
    }

    /// Checks out a connection: an idle one that passes the checkout check, or a new one
    /// logged in with a fresh token.
    pub async fn get(&self) -> Result<Connection, Error> {
        if self.is_disposed() {
            return Err(Error::Disposed);
        }
        self.pool
            .get()
            .await
            .map_err(|e| Error::from_pool(e, self.timeout))
    }

    /// The deadpool pool (for `status`, `resize`, `retain`, ...).
    #[must_use]
    pub fn pool(&self) -> &Pool {
        &self.pool
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
        let s = self.pool.status();
        self.connector.engine_status(Some(PoolStatus::new(
            s.max_size,
            s.size,
            s.available,
            s.waiting,
        )))
    }

    /// Closes the pool (idle connections now, checked-out ones when they come back), stops
    /// the refresher and drops the credential. Later checkouts fail with [`Error::Disposed`].
    /// Idempotent.
    pub async fn dispose(&self) {
        self.disposed.store(true, Ordering::SeqCst);
        self.pool.close();
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
        f.debug_struct("PooledEngine")
            .field("connector", &self.connector)
            .field("pool", &self.pool.status())
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
    recycling_method: RecyclingMethod,
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

    /// Connections older than this are closed at checkout and replaced (55 minutes by
    /// default; `None` keeps them).
    pub fn max_lifetime(mut self, max_lifetime: impl Into<Option<Duration>>) -> Self {
        self.max_lifetime = max_lifetime.into();
        self
    }

    /// How long a checkout may wait for a free slot, and how long opening or checking a
    /// connection may take (30 seconds each by default).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// The checkout check of idle connections: `Verified` (an empty query, the default),
    /// `Fast` (none), `Clean` or `Custom(sql)`.
    pub fn recycling_method(mut self, method: RecyclingMethod) -> Self {
        self.recycling_method = method;
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

    /// Adjusts deadpool's own builder after this crate's settings (hooks, queue mode, other
    /// timeouts).
    pub fn configure(
        mut self,
        configure: impl FnOnce(PoolBuilder) -> PoolBuilder + Send + 'static,
    ) -> Self {
        self.configure = Some(Box::new(configure));
        self
    }

    /// Builds the credential and the pool. Opens no connection yet.
    pub async fn build(self) -> Result<PooledEngine, Error> {
        check_pool_options(self.max_size, self.max_lifetime)?;
        let connector =
            PgConnector::build(&self.settings, self.token_source, self.auth_options).await?;
        let manager = Manager::new(connector.clone(), self.recycling_method, self.max_lifetime);
        let timeout = Some(self.connection_timeout);
        let mut builder = Pool::builder(manager)
            .max_size(self.max_size)
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: timeout,
                create: timeout,
                recycle: timeout,
            });
        if let Some(configure) = self.configure {
            builder = configure(builder);
        }
        let pool = builder.build().map_err(Error::Build)?;
        Ok(PooledEngine {
            pool,
            connector,
            timeout: self.connection_timeout,
            disposed: AtomicBool::new(false),
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
            .field("recycling_method", &self.recycling_method)
            .field("auth_options", &self.auth_options)
            .field("token_source", &self.token_source)
            .field("configure", &self.configure.is_some())
            .finish()
    }
}
