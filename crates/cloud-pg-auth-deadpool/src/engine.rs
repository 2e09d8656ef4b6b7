//! The pooled engine: a deadpool pool over this crate's [`Manager`], owning its credential
//! through the core's [`Lifecycle`].

use std::fmt;

use cloud_pg_auth::engine::{Lifecycle, PoolConfig, connections_returned};
use cloud_pg_auth::{Auth, EngineStatus, PgConnector, PoolSettings, PoolStatus, Settings};
use deadpool::Runtime;
use deadpool::managed::Timeouts;
use deadpool_postgres::RecyclingMethod;

use crate::{Connection, Error, Manager, Pool, PoolBuilder};

type Configure = Box<dyn FnOnce(PoolBuilder) -> PoolBuilder + Send>;

/// A deadpool pool whose every new connection logs in with a fresh token from the engine's
/// own credential ([`Auth`]: cache plus background refresher).
///
/// Clones share the pool and the credential. Idle connections are checked at checkout
/// (`RecyclingMethod::Verified`, an empty query) and replaced once older than the max
/// lifetime (55 minutes by default). [`PooledEngine::dispose`] closes the pool, stops the
/// refresher, drops the credential and waits (at most the dispose timeout) for checked-out
/// connections. Dropping the last clone closes the pool and drops the credential at once,
/// even while a clone of [`PooledEngine::pool`] or of the [`Auth`] lives on.
#[derive(Clone)]
pub struct PooledEngine {
    pool: Pool,
    connector: PgConnector,
    lifecycle: Lifecycle,
    settings: PoolSettings,
}

impl PooledEngine {
    /// A builder with the defaults: 10 connections, 55-minute max lifetime, 30-second
    /// timeouts (each of wait, create, recycle), 10-second dispose wait, `Verified` checkout
    /// check, background refresh on.
    pub fn builder(settings: Settings) -> PooledEngineBuilder {
        PooledEngineBuilder {
            config: PoolConfig::new(settings),
            recycling_method: RecyclingMethod::Verified,
            configure: None,
        }
    }

    cloud_pg_auth::engine_constructors!(Error);

    /// Checks out a connection: an idle one that passes the checkout check, or a new one
    /// logged in with a fresh token. The connection is owned, so it can move into a task.
    pub async fn get(&self) -> Result<Connection, Error> {
        self.lifecycle.check_open()?;
        let result = self.pool.get().await;
        result.map_err(|error| Error::from_pool(error, &self.pool.timeouts()))
    }

    /// The deadpool pool (for `status`, `resize`, `retain`, ...). A clone of it does not
    /// keep the credential alive: once the engine is gone, the pool is closed.
    #[must_use]
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The credential, its status and counters.
    #[must_use]
    pub fn auth(&self) -> &Auth {
        self.lifecycle.auth()
    }

    /// The connector that opens this engine's connections.
    #[must_use]
    pub fn connector(&self) -> &PgConnector {
        &self.connector
    }

    /// The verdict, credential status, connection counters, pool figures and the pool's
    /// configured options (a `/health` payload).
    #[must_use]
    pub fn status(&self) -> EngineStatus {
        let figures = self.pool.status();
        let pool = PoolStatus::new(
            figures.max_size,
            figures.size,
            figures.available,
            figures.waiting,
        );
        self.connector
            .engine_status(Some(pool))
            .with_pool_settings(self.settings)
            .with_disposed(self.is_disposed())
    }

    /// Closes the pool (idle connections now, checked-out ones when they come back), stops
    /// the refresher and drops the credential, then waits for checked-out connections at
    /// most the dispose timeout. Later checkouts fail with [`Error::Disposed`]. Idempotent.
    pub async fn dispose(&self) {
        let pool = &self.pool;
        let closing = || {
            pool.close();
            // Closed, deadpool counts only the objects still out; each leaves when returned.
            connections_returned(|| pool.status().size)
        };
        self.lifecycle.dispose(closing).await;
    }

    /// Whether the engine was disposed.
    #[must_use]
    pub fn is_disposed(&self) -> bool {
        self.lifecycle.is_disposed()
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
    config: PoolConfig,
    recycling_method: RecyclingMethod,
    configure: Option<Configure>,
}

impl PooledEngineBuilder {
    cloud_pg_auth::pool_builder_methods!(config);

    /// The checkout check of idle connections: `Verified` (an empty query, the default),
    /// `Fast` (none), `Clean` or `Custom(sql)`.
    pub fn recycling_method(mut self, method: RecyclingMethod) -> Self {
        self.recycling_method = method;
        self
    }

    /// Adjusts deadpool's own builder after this crate's settings (hooks, queue mode, one of
    /// the three timeouts).
    pub fn configure(
        mut self,
        configure: impl FnOnce(PoolBuilder) -> PoolBuilder + Send + 'static,
    ) -> Self {
        self.configure = Some(Box::new(configure));
        self
    }

    /// Checks the options, builds the credential and the pool. Opens no connection yet.
    pub async fn build(self) -> Result<PooledEngine, Error> {
        let config = self.config;
        config.check()?;
        let connector = config.credential().build_connector().await?;
        let lifecycle = Lifecycle::new(connector.auth().clone(), config.dispose_timeout());
        let validated = !matches!(self.recycling_method, RecyclingMethod::Fast);
        let settings = PoolSettings::from(&config).with_checkout_validation(validated);
        let manager = Manager::new(
            connector.clone(),
            self.recycling_method,
            config.max_lifetime(),
            lifecycle.watch(),
        );
        let timeout = Some(config.connection_timeout());
        let timeouts = Timeouts {
            wait: timeout,
            create: timeout,
            recycle: timeout,
        };
        let mut builder = Pool::builder(manager)
            .max_size(config.max_size())
            .runtime(Runtime::Tokio1)
            .timeouts(timeouts);
        if let Some(configure) = self.configure {
            builder = configure(builder);
        }
        let pool = builder.build().map_err(Error::Build)?;
        // Weak: the engine's own handle is dropped first; only clones the app kept need it.
        let kept = pool.weak();
        let lifecycle = lifecycle.on_last_drop(move || {
            if let Some(pool) = kept.upgrade() {
                pool.close();
            }
        });
        Ok(PooledEngine {
            pool,
            connector,
            lifecycle,
            settings,
        })
    }
}

impl fmt::Debug for PooledEngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledEngineBuilder")
            .field("config", &self.config)
            .field("recycling_method", &self.recycling_method)
            .field("configure", &self.configure.is_some())
            .finish()
    }
}
