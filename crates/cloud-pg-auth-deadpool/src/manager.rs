use std::fmt;
use std::time::Duration;

use cloud_pg_auth::PgConnector;
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
pub struct Manager {
    connector: PgConnector,
    recycling: RecyclingMethod,
    max_lifetime: Option<Duration>,
}

impl Manager {
    /// A manager over `connector`. `recycling` is the checkout check (`Verified` runs an
    /// empty query); connections older than `max_lifetime` are closed at checkout instead.
    #[must_use]
    pub fn new(
        connector: PgConnector,
        recycling: RecyclingMethod,
        max_lifetime: Option<Duration>,
    ) -> Self {
        Self {
            connector,
            recycling,
            max_lifetime,
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
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("connector", &self.connector)
            .field("recycling", &self.recycling)
            .field("max_lifetime", &self.max_lifetime)
            .finish()
    }
}

impl managed::Manager for Manager {
    type Type = ClientWrapper;
    type Error = Error;

    async fn create(&self) -> Result<ClientWrapper, Error> {
        let (client, task) = self.connector.connect().await?;
        Ok(ClientWrapper::new(client, task))
    }

    async fn recycle(&self, client: &mut ClientWrapper, metrics: &Metrics) -> RecycleResult<Error> {
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
