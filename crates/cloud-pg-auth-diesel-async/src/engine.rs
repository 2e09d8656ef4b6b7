//! The pooled engine: a diesel-async deadpool pool whose new connections log in with fresh
//! tokens from the engine's own credential.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cloud_pg_auth::{
    Auth, AuthOptions, EngineStatus, PgConnector, PoolStatus, Settings, TokenSource,
};
use deadpool::Runtime;
use deadpool::managed::{Hook, HookError};
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};

use crate::connect::{Shared, setup_callback};
use crate::{Connection, Error, Pool, PoolBuilder};

/// The most connections a pool opens unless told otherwise.
pub const DEFAULT_MAX_SIZE: usize = 10;
/// Connections older than this are closed at their next checkout (hygiene, not tied to the
/// token lifetime: a token is only checked at login).
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(55 * 60);
/// How long a checkout waits for a free slot, for a new connection, or for the checkout ping.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// A diesel-async connection pool (deadpool) for one server, with its own credential.
///
/// Every new physical connection logs in with a token from this engine's cache (refreshed in
/// the background), over the TLS policy of the settings, retrying once with a new token if
/// the server refuses the login. Idle connections are checked with `SELECT 1` at checkout
/// and closed after [`DEFAULT_MAX_LIFETIME`]. Clones share the pool and the credential.
#[derive(Clone)]
pub struct PooledEngine {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    shared: Arc<Shared>,
    disposed: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropping the engine ends it like dispose, without waiting: the pool (maybe cloned by
        // the user) stops handing out connections, the refresher stops even if the user holds
        // a clone of the credential, and the credential goes with `shared`.
        self.pool.close();
        self.shared.connector.auth().stop_refresher();
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
            recycling_method: RecyclingMethod::Verified,
            configure: None,
        }
    }

    /// Checks out a connection: an idle one that passes the checkout ping, or a new one that
    /// logs in with a fresh token. A failed login comes back with its cause (token source
    /// error, TLS error, the server's refusal).
    pub async fn get(&self) -> Result<Connection, Error> {
        if self.is_disposed() {
            return Err(Error::Disposed);
        }
        let pool = &self.inner.pool;
        pool.get().await.map_err(|error| {
            Error::from_pool(error, &pool.timeouts(), |text| {
                self.inner.shared.take_failure(text)
            })
        })
    }

    /// The deadpool pool (for its own API: `status`, `resize`, `retain`).
    #[must_use]
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The credential's status, connection counters and pool figures (a `/health` payload;
    /// no secrets).
    #[must_use]
    pub fn status(&self) -> EngineStatus {
        let pool = self.inner.pool.status();
        self.connector().engine_status(Some(PoolStatus::new(
            pool.max_size,
            pool.size,
            pool.available,
            pool.waiting,
        )))
    }

    /// The engine's credential.
    #[must_use]
    pub fn auth(&self) -> &Auth {
        self.connector().auth()
    }

    /// Closes the pool (idle connections close now, checked-out ones when returned), stops
    /// the background refresh and drops the credential. Later checkouts fail with
    /// [`Error::Disposed`]. Idempotent.
    pub async fn dispose(&self) {
        self.inner.disposed.store(true, Ordering::SeqCst);
        self.inner.pool.close();
        self.connector().dispose().await;
    }

    /// Whether [`PooledEngine::dispose`] ran.
    #[must_use]
    pub fn is_disposed(&self) -> bool {
        self.inner.disposed.load(Ordering::SeqCst)
    }

    fn connector(&self) -> &PgConnector {
        &self.inner.shared.connector
    }
}

impl fmt::Debug for PooledEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pool = self.inner.pool.status();
        f.debug_struct("PooledEngine")
            .field("target", &self.connector().target())
            .field("max_size", &pool.max_size)
            .field("size", &pool.size)
            .field("idle", &pool.available)
            .field("auth", self.auth())
            .field("stats", &self.connector().stats())
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
    recycling_method: RecyclingMethod<AsyncPgConnection>,
    configure: Option<Configure>,
}

impl PooledEngineBuilder {
    /// The most connections the pool opens ([`DEFAULT_MAX_SIZE`]).
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// Connections older than this are closed at their next checkout
    /// ([`DEFAULT_MAX_LIFETIME`]); `None` keeps them.
    pub fn max_lifetime(mut self, max_lifetime: impl Into<Option<Duration>>) -> Self {
        self.max_lifetime = max_lifetime.into();
        self
    }

    /// How long a checkout may wait for a free slot, for a new connection (token and login)
    /// and for the checkout ping, each ([`DEFAULT_CONNECTION_TIMEOUT`]).
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

    /// How idle connections are checked at checkout (`Verified`, `SELECT 1`, by default).
    pub fn recycling_method(mut self, method: RecyclingMethod<AsyncPgConnection>) -> Self {
        self.recycling_method = method;
        self
    }

    /// Changes deadpool's own builder last (hooks, queue mode, other timeouts). The
    /// max-lifetime check is a `pre_recycle` hook: further hooks add to it.
    pub fn configure(
        mut self,
        configure: impl FnOnce(PoolBuilder) -> PoolBuilder + Send + 'static,
    ) -> Self {
        self.configure = Some(Box::new(configure));
        self
    }

    /// Builds the credential (starting its background refresh) and the pool. No connection
    /// is opened until the first checkout.
    pub async fn build(self) -> Result<PooledEngine, Error> {
        let connector =
            PgConnector::build(&self.settings, self.token_source, self.auth_options).await?;
        let target = format!("cloud-pg-auth://{}", connector.target());
        let shared = Arc::new(Shared::new(connector));
        let mut config = ManagerConfig::<AsyncPgConnection>::default();
        config.custom_setup = setup_callback(Arc::downgrade(&shared));
        config.recycling_method = self.recycling_method;
        // The URL is only a label here: every connection comes from `custom_setup`.
        let manager = AsyncDieselConnectionManager::new_with_config(target, config);
        let timeout = Some(self.connection_timeout);
        let mut builder = Pool::builder(manager)
            .max_size(self.max_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(timeout);
        if let Some(max_lifetime) = self.max_lifetime {
            builder = builder.pre_recycle(Hook::sync_fn(move |_, metrics| {
                if metrics.age() >= max_lifetime {
                    Err(HookError::message(
                        "the connection reached its maximum lifetime",
                    ))
                } else {
                    Ok(())
                }
            }));
        }
        if let Some(configure) = self.configure {
            builder = configure(builder);
        }
        let pool = builder.build().map_err(Error::Build)?;
        Ok(PooledEngine {
            inner: Arc::new(Inner {
                pool,
                shared,
                disposed: AtomicBool::new(false),
            }),
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
            .field("auth_options", &self.auth_options)
            .field("token_source", &self.token_source)
            .field("recycling_method", &recycling_name(&self.recycling_method))
            .field("configure", &self.configure.is_some())
            .finish()
    }
}

fn recycling_name(method: &RecyclingMethod<AsyncPgConnection>) -> &'static str {
    match method {
        RecyclingMethod::Fast => "Fast",
        RecyclingMethod::Verified => "Verified",
        RecyclingMethod::CustomQuery(_) => "CustomQuery",
        RecyclingMethod::CustomFunction(_) => "CustomFunction",
    }
}
