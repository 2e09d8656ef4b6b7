//! deadpool's manager for this crate: opens connections through the engine's connector and
//! checks idle ones at checkout.

use std::fmt;
use std::time::Duration;

use cloud_pg_auth::PgConnector;
use cloud_pg_auth::engine::LifecycleWatch;
use cloud_pg_auth::migrate::Driver;
use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use deadpool_postgres::{ClientWrapper, RecyclingMethod};

use crate::Error;

/// deadpool's manager for this crate: every new connection logs in through a
/// [`PgConnector`], so with a token fresh from the engine's own cache.
///
/// A custom manager rather than `deadpool_postgres::Manager::from_connect`, whose error type
/// is `tokio_postgres::Error`: that type has no public constructor, so a token failure could
/// not reach the caller with its cause. Connections are deadpool-postgres's own
/// [`ClientWrapper`], so its client API (statement cache, transactions) stays the same.
///
/// The manager watches the engine without owning its credential: once the engine is
/// disposed or dropped, a clone of the pool opens nothing (`Error::Disposed`) and hands out
/// no idle connection.
pub struct Manager {
    connector: PgConnector,
    recycling: RecyclingMethod,
    max_lifetime: Option<Duration>,
    engine: LifecycleWatch,
}

impl Manager {
    pub(crate) fn new(
        connector: PgConnector,
        recycling: RecyclingMethod,
        max_lifetime: Option<Duration>,
        engine: LifecycleWatch,
    ) -> Self {
        Self {
            connector,
            recycling,
            max_lifetime,
            engine,
        }
    }

    /// The connector that opens the connections.
    #[must_use]
    pub fn connector(&self) -> &PgConnector {
        &self.connector
    }

    /// The checkout check.
    #[must_use]
    pub fn recycling_method(&self) -> &RecyclingMethod {
        &self.recycling
    }

    /// The max connection lifetime.
    #[must_use]
    pub fn max_lifetime(&self) -> Option<Duration> {
        self.max_lifetime
    }

    fn engine_open(&self) -> Result<(), Error> {
        if self.engine.is_closed() {
            Err(Error::Disposed)
        } else {
            Ok(())
        }
    }
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("connector", &self.connector)
            .field("recycling", &self.recycling)
            .field("max_lifetime", &self.max_lifetime)
            .field("engine", &self.engine)
            .finish()
    }
}

impl managed::Manager for Manager {
    type Type = ClientWrapper;
    type Error = Error;

    async fn create(&self) -> Result<ClientWrapper, Error> {
        self.engine_open()?;
        let client = Self::open(&self.connector).await?;
        // Opened while the engine went away: it would outlive the credential's engine.
        self.engine_open()?;
        Ok(client)
    }

    async fn recycle(&self, client: &mut ClientWrapper, metrics: &Metrics) -> RecycleResult<Error> {
        self.engine_open().map_err(RecycleError::Backend)?;
        // Hygiene, not token expiry: the server checks the token only at login.
        if let Some(max) = self.max_lifetime
            && metrics.age() >= max
        {
            return Err(RecycleError::message(
                "the connection reached its max lifetime",
            ));
        }
        if client.is_closed() {
            return Err(RecycleError::message("the connection is closed"));
        }
        if let Some(sql) = self.recycling.query() {
            if let Err(error) = client.simple_query(sql).await {
                tracing::debug!(error = %error, "an idle connection failed its checkout check; discarding it");
                return Err(RecycleError::Backend(error.into()));
            }
            if matches!(self.recycling, RecyclingMethod::Clean) {
                // DISCARD ALL dropped the server's prepared statements.
                client.statement_cache.clear();
            }
        }
        Ok(())
    }
}
