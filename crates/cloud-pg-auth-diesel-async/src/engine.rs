//! The pooled engine: a diesel-async deadpool pool whose new connections log in with fresh
//! tokens from the engine's own credential.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cloud_pg_auth::engine::{Lifecycle, LifecycleWatch, PoolConfig, connections_returned};
use cloud_pg_auth::{Auth, EngineStatus, PgConnector, PoolSettings, PoolStatus, Settings};
use deadpool::Runtime;
use deadpool::managed::{Hook, HookError};
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};

use crate::connect::{ConnectFailures, setup_callback};
use crate::{Connection, Error, Pool, PoolBuilder};

/// A diesel-async connection pool (deadpool) for one server, with its own credential.
///
/// Every new physical connection logs in with a token from this engine's cache (refreshed in
/// the background), over the TLS policy of the settings, retrying once with a new token if
/// the server refuses the login. Idle connections are checked with `SELECT 1` at checkout
/// and closed after [`DEFAULT_MAX_LIFETIME`](crate::DEFAULT_MAX_LIFETIME).
///
/// Clones share the pool and the credential. Dropping the last clone closes the pool, stops
/// the refresher and drops the credential, even while a clone of [`PooledEngine::pool`] or
/// of [`PooledEngine::auth`] lives on (they then hand out nothing: new logins fail with
/// [`Error::Disposed`]).
#[derive(Clone)]
pub struct PooledEngine {
    pool: Pool,
    connector: PgConnector,
    failures: Arc<ConnectFailures>,
    lifecycle: Lifecycle,
    settings: PoolSettings,
}

impl PooledEngine {
    cloud_pg_auth::engine_constructors!(Error);

    /// A builder, to change the pool's options.
    pub fn builder(settings: Settings) -> PooledEngineBuilder {
        PooledEngineBuilder {
            config: PoolConfig::new(settings),
            recycling_method: RecyclingMethod::Verified,
            configure: None,
        }
    }

    /// Checks out a connection: an idle one that passes the checkout ping, or a new one that
    /// logs in with a fresh token. A failed login comes back with its cause (token source
    /// error, TLS error, the server's refusal). The connection is owned (`'static`).
    pub async fn get(&self) -> Result<Connection, Error> {
        self.lifecycle.check_open()?;
        self.pool.get().await.map_err(|error| {
            Error::from_pool(error, &self.pool.timeouts(), |text| {
                self.failures.take(text)
            })
        })
    }

    /// The deadpool pool (for its own API: `status`, `resize`, `retain`).
    #[must_use]
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The connector new connections log in through (target, counters, credential).
    #[must_use]
    pub fn connector(&self) -> &PgConnector {
        &self.connector
    }

    /// The engine's credential.
    #[must_use]
    pub fn auth(&self) -> &Auth {
        self.lifecycle.auth()
    }

    /// The verdict, the credential's status, connection counters, pool figures and the
    /// pool's configured options (a `/health` payload; no secrets).
    #[must_use]
    pub fn status(&self) -> EngineStatus {
        let pool = self.pool.status();
        let pool = PoolStatus::new(pool.max_size, pool.size, pool.available, pool.waiting);
        self.connector
            .engine_status(Some(pool))
            .with_pool_settings(self.settings)
            .with_disposed(self.is_disposed())
    }

    /// Closes the pool (idle connections close now, checked-out ones when returned), stops
    /// the background refresh and drops the credential, then waits for checked-out
    /// connections to come back, at most the builder's `dispose_timeout`. Later checkouts
    /// fail with [`Error::Disposed`]. Idempotent.
    pub async fn dispose(&self) {
        let pool = self.pool.clone();
        self.lifecycle
            .dispose(move || {
                pool.close();
                connections_returned(move || {
                    // After `close` the pool's size counts only connections still out.
                    let status = pool.status();
                    status.size.saturating_sub(status.available)
                })
            })
            .await;
    }

    /// Whether [`PooledEngine::dispose`] ran.
    #[must_use]
    pub fn is_disposed(&self) -> bool {
        self.lifecycle.is_disposed()
    }
}

impl fmt::Debug for PooledEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pool = self.pool.status();
        f.debug_struct("PooledEngine")
            .field("target", &self.connector.target())
            .field("max_size", &pool.max_size)
            .field("size", &pool.size)
            .field("idle", &pool.available)
            .field("auth", self.auth())
            .field("stats", &self.connector.stats())
            .field("disposed", &self.is_disposed())
            .finish()
    }
}

type Configure = Box<dyn FnOnce(PoolBuilder) -> PoolBuilder + Send>;

/// Options of a [`PooledEngine`]; consuming, finished by [`PooledEngineBuilder::build`].
#[must_use]
pub struct PooledEngineBuilder {
    config: PoolConfig,
    recycling_method: RecyclingMethod<AsyncPgConnection>,
    configure: Option<Configure>,
}

impl PooledEngineBuilder {
    cloud_pg_auth::pool_builder_methods!(config);

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

    /// Checks the options, builds the credential (starting its background refresh) and the
    /// pool. No connection is opened until the first checkout.
    pub async fn build(self) -> Result<PooledEngine, Error> {
        let config = self.config;
        config.check()?;
        let connector = config.credential().build_connector().await?;
        // Made first, so that a failure below drops the credential with it.
        let lifecycle = Lifecycle::new(connector.auth().clone(), config.dispose_timeout());
        let failures = Arc::new(ConnectFailures::default());
        let validated = !matches!(self.recycling_method, RecyclingMethod::Fast);
        let settings = PoolSettings::from(&config).with_checkout_validation(validated);
        let mut manager_config = ManagerConfig::<AsyncPgConnection>::default();
        manager_config.custom_setup = setup_callback(connector.clone(), Arc::clone(&failures));
        manager_config.recycling_method = self.recycling_method;
        // The URL is only a label here: every connection comes from `custom_setup`.
        let label = format!("cloud-pg-auth://{}", connector.target());
        let manager = AsyncDieselConnectionManager::new_with_config(label, manager_config);
        let timeout = Some(config.connection_timeout());
        let mut builder = Pool::builder(manager)
            .max_size(config.max_size())
            .runtime(Runtime::Tokio1)
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(timeout)
            .pre_recycle(recycle_check(lifecycle.watch(), config.max_lifetime()));
        if let Some(configure) = self.configure {
            builder = configure(builder);
        }
        let pool = builder.build().map_err(Error::Build)?;
        let closed = pool.clone();
        let lifecycle = lifecycle.on_last_drop(move || closed.close());
        Ok(PooledEngine {
            pool,
            connector,
            failures,
            lifecycle,
            settings,
        })
    }
}

/// The `pre_recycle` hook: an idle connection is not handed out once the engine is gone (a
/// pool clone may outlive it) or when it reached its maximum lifetime.
fn recycle_check(
    watch: LifecycleWatch,
    max_lifetime: Option<Duration>,
) -> Hook<AsyncDieselConnectionManager<AsyncPgConnection>> {
    Hook::sync_fn(move |_, metrics| {
        if watch.is_closed() {
            Err(HookError::message("the engine was disposed"))
        } else if max_lifetime.is_some_and(|max| metrics.age() >= max) {
            Err(HookError::message(
                "the connection reached its maximum lifetime",
            ))
        } else {
            Ok(())
        }
    })
}

impl fmt::Debug for PooledEngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledEngineBuilder")
            .field("config", &self.config)
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
