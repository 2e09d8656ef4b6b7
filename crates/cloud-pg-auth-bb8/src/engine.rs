//! The pooled engine: a bb8 pool over this crate's [`Manager`], owning its credential through
//! the core's [`Lifecycle`].

use std::fmt;
use std::time::Instant;

use bb8::RunError;
use cloud_pg_auth::engine::{Lifecycle, PoolConfig, connections_returned};
use cloud_pg_auth::{Auth, EngineStatus, PgConnector, PoolSettings, PoolStatus, Settings};

use crate::manager::Drain;
use crate::sink::{LastError, Sink};
use crate::{Connection, Error, Manager, Pool, PoolBuilder};

type Configure = Box<dyn FnOnce(PoolBuilder) -> PoolBuilder + Send>;

/// Builds a [`PooledEngine`] (from [`PooledEngine::builder`]): the options every engine has,
/// bb8's checkout test, and a last say over bb8's own builder.
#[must_use]
pub struct PooledEngineBuilder {
    test_on_check_out: bool,
    configure: Option<Configure>,
    config: PoolConfig,
}

/// A bb8 pool whose every new connection logs in with a fresh token from the engine's own
/// credential ([`Auth`]: cache plus background refresher).
///
/// Clones share the pool and the credential. Checkouts are validated (`test_on_check_out`,
/// an empty query) and connections live at most 55 minutes by default. A failed connection
/// attempt reaches the caller as the cause of [`Error::Timeout`]. bb8 has no `close()`:
/// [`PooledEngine::dispose`] takes the idle connections out, makes bb8 drop checked-out ones
/// when they come back, stops the refresher, drops the credential and waits (at most the
/// dispose timeout) for those connections. Dropping the last clone drops the credential at
/// once; a clone of [`PooledEngine::pool`] kept by the application then hands out no
/// connection.
#[derive(Clone)]
pub struct PooledEngine {
    pool: Pool,
    connector: PgConnector,
    lifecycle: Lifecycle,
    last_error: LastError,
    drain: Drain,
    settings: PoolSettings,
}

impl PooledEngine {
    cloud_pg_auth::engine_constructors!(Error);

    /// Checks out a connection: an idle one that passes the checkout test, or a new one
    /// logged in with a fresh token. It borrows the engine; see [`PooledEngine::get_owned`].
    pub async fn get(&self) -> Result<Connection<'_>, Error> {
        self.lifecycle.check_open()?;
        let started = Instant::now();
        let checkout = self.pool.get().await;
        checkout.map_err(|e| self.run_error(e, started))
    }

    /// Like [`PooledEngine::get`], for a connection that outlives the borrow of the engine
    /// (moved into a spawned task).
    pub async fn get_owned(&self) -> Result<Connection<'static>, Error> {
        self.lifecycle.check_open()?;
        let started = Instant::now();
        let checkout = self.pool.get_owned().await;
        checkout.map_err(|e| self.run_error(e, started))
    }

    fn run_error(&self, error: RunError<Error>, started: Instant) -> Error {
        match error {
            _ if self.is_disposed() => Error::Disposed,
            RunError::User(e) => e,
            RunError::TimedOut => Error::Timeout {
                // The pool's own value: `configure` may have changed it.
                waited: self.pool.config().connection_timeout,
                cause: self.last_error.since(started),
            },
        }
    }

    /// A builder with the defaults: 10 connections, 55-minute max lifetime, 30-second
    /// connection timeout, 10-second dispose wait, checkout test on, background refresh on.
    pub fn builder(settings: Settings) -> PooledEngineBuilder {
        PooledEngineBuilder {
            config: PoolConfig::new(settings),
            test_on_check_out: true,
            configure: None,
        }
    }

    /// The credential, its status and counters.
    #[must_use]
    pub fn auth(&self) -> &Auth {
        self.lifecycle.auth()
    }

    /// The verdict, credential status, connection counters, pool figures and the pool's
    /// configured options (a `/health` payload).
    #[must_use]
    pub fn status(&self) -> EngineStatus {
        let state = self.pool.state();
        let waiting = usize::try_from(state.statistics.pending_gets()).unwrap_or(usize::MAX);
        let pool = PoolStatus::new(
            self.pool.config().max_size as usize,
            state.connections as usize,
            state.idle_connections as usize,
            waiting,
        );
        // bb8's own flag: `configure` may have changed it.
        let settings = self
            .settings
            .with_checkout_validation(self.pool.config().test_on_check_out);
        self.connector
            .engine_status(Some(pool))
            .with_pool_settings(settings)
            .with_disposed(self.is_disposed())
    }

    /// The bb8 pool (for `state`, `dedicated_connection`, ...). A clone of it does not keep
    /// the credential alive.
    #[must_use]
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Takes the idle connections out and drops them (checked-out ones are dropped when they
    /// come back), stops the refresher and drops the credential, then waits for the
    /// checked-out connections at most the dispose timeout. Later checkouts fail with
    /// [`Error::Disposed`]. Idempotent.
    pub async fn dispose(&self) {
        let pool = &self.pool;
        self.lifecycle
            .dispose(|| {
                self.drain.idle_connections(pool);
                connections_returned(|| checked_out(pool))
            })
            .await;
    }

    /// Whether the engine was disposed.
    #[must_use]
    pub fn is_disposed(&self) -> bool {
        self.lifecycle.is_disposed()
    }

    /// The connector the manager logs new connections in through.
    #[must_use]
    pub fn connector(&self) -> &PgConnector {
        &self.connector
    }
}

fn checked_out(pool: &Pool) -> usize {
    let state = pool.state();
    state.connections.saturating_sub(state.idle_connections) as usize
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

impl PooledEngineBuilder {
    /// Checks the options, builds the credential and the pool. Opens no connection (unless
    /// `min_idle` is configured, then bb8 opens those in the background).
    pub async fn build(self) -> Result<PooledEngine, Error> {
        self.config.check()?;
        let connector = self.config.credential().build_connector().await?;
        let lifecycle = Lifecycle::new(connector.auth().clone(), self.config.dispose_timeout());
        let drain = Drain::default();
        let manager = Manager::new(
            connector.clone(),
            self.config.max_lifetime(),
            lifecycle.watch(),
            drain.clone(),
        );
        let last_error = LastError::default();
        // check() refused sizes above u32::MAX.
        let max_size = u32::try_from(self.config.max_size()).unwrap_or(u32::MAX);
        let mut builder = Pool::builder()
            .max_size(max_size)
            // No bb8 reaper (see Manager): lifetime is the manager's, idle connections stay.
            .max_lifetime(None)
            .idle_timeout(None)
            .connection_timeout(self.config.connection_timeout())
            .test_on_check_out(self.test_on_check_out)
            .error_sink(Box::new(Sink(last_error.clone())));
        if let Some(configure) = self.configure {
            builder = configure(builder);
        }
        let pool = builder.build_unchecked(manager);
        let lifecycle = lifecycle.on_last_drop(drain_on_drop(&pool, &drain));
        Ok(PooledEngine {
            pool,
            connector,
            lifecycle,
            last_error,
            drain,
            settings: PoolSettings::from(&self.config),
        })
    }

    cloud_pg_auth::pool_builder_methods!(config);

    /// Adjusts bb8's own builder after this crate's settings (`min_idle`,
    /// `connection_customizer`, `queue_strategy`, ...). An `error_sink` set here replaces this
    /// crate's, and timeouts then carry no cause. Setting bb8's `idle_timeout` or
    /// `max_lifetime` starts bb8's reaper task, which outlives [`PooledEngine::dispose`] until
    /// the pool is dropped.
    pub fn configure<F>(mut self, configure: F) -> Self
    where
        F: FnOnce(PoolBuilder) -> PoolBuilder + Send + 'static,
    {
        self.configure = Some(Box::new(configure));
        self
    }

    /// Whether idle connections are tested with an empty query at checkout (on by default).
    pub fn test_on_check_out(mut self, on: bool) -> Self {
        self.test_on_check_out = on;
        self
    }
}

/// The last engine handle's drop step: the idle connections a pool clone still holds are
/// dropped soon after, on a task (bb8's checkout needs a runtime, and a drop must not
/// block). Without a runtime they stay until the clone is dropped; none is handed out.
fn drain_on_drop(pool: &Pool, drain: &Drain) -> impl FnOnce() + Send + 'static {
    let pool = pool.clone();
    let drain = drain.clone();
    move || {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { drain.idle_connections(&pool) });
        }
    }
}

impl fmt::Debug for PooledEngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PooledEngineBuilder")
            .field("configure", &self.configure.is_some())
            .field("test_on_check_out", &self.test_on_check_out)
            .field("config", &self.config)
            .finish()
    }
}
