//! The migration engine: the core's ([`cloud_pg_auth::migrate::MigrationEngine`]), handing out
//! deadpool-postgres clients and this crate's errors, running the core's SQL migrations.

use cloud_pg_auth::PgConnector;
use cloud_pg_auth::migrate::{Driver, MigrationReport, Migrations, Runner};
use deadpool_postgres::ClientWrapper;

use crate::{Error, Manager};

/// Unpooled connections for migrations and admin work, with a credential of its own (its own
/// token cache, no background refresh), so it can live on a short-lived runtime without
/// touching the pooled engine's credential.
///
/// `connect` returns a [`ClientWrapper`], as the pool does (statement cache,
/// transactions); `run_migrations(&Migrations)` returns the core's [`MigrationReport`]; the
/// methods return this crate's [`Error`].
pub type MigrationEngine = cloud_pg_auth::migrate::MigrationEngine<Manager>;

/// Builds a [`MigrationEngine`]; from `MigrationEngine::builder`.
pub type MigrationEngineBuilder = cloud_pg_auth::migrate::MigrationEngineBuilder<Manager>;

/// Connections are [`ClientWrapper`]s whose I/O task ends with them; errors are this
/// crate's. The pool's manager opens its connections the same way.
impl Driver for Manager {
    type Connection = ClientWrapper;
    type Error = Error;

    async fn open(connector: &PgConnector) -> Result<ClientWrapper, Error> {
        let (client, task) = connector.connect().await?;
        Ok(ClientWrapper::new(client, task))
    }
}

/// The core's SQL runner over the wrapped client.
impl<'a> Runner<&'a Migrations> for Manager {
    async fn run(
        mut client: ClientWrapper,
        migrations: &'a Migrations,
    ) -> Result<MigrationReport, Error> {
        Ok(migrations.run(&mut client).await?)
    }
}
