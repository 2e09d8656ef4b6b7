//! The migration engine: the core's ([`cloud_pg_auth::migrate::MigrationEngine`]), handing out
//! plain tokio-postgres clients and this crate's errors, running the core's SQL migrations.

use cloud_pg_auth::PgConnector;
use cloud_pg_auth::migrate::{Driver, MigrationReport, Migrations, Runner};
use tokio_postgres::Client;

use crate::{Error, Manager};

/// Unpooled connections for migrations and admin work, with a credential of its own (its own
/// token cache, no background refresh), so it can live on a short-lived runtime without
/// touching the pooled engine's credential.
///
/// `connect` returns a [`tokio_postgres::Client`] (the connection closes when the client is
/// dropped); `run_migrations(&Migrations)` returns the core's [`MigrationReport`]; the
/// methods return this crate's [`Error`].
pub type MigrationEngine = cloud_pg_auth::migrate::MigrationEngine<Manager>;

/// Builds a [`MigrationEngine`]; from `MigrationEngine::builder`.
pub type MigrationEngineBuilder = cloud_pg_auth::migrate::MigrationEngineBuilder<Manager>;

/// The core's SQL runner, straight over the client.
impl<'a> Runner<&'a Migrations> for Manager {
    async fn run(mut client: Client, migrations: &'a Migrations) -> Result<MigrationReport, Error> {
        migrations.run(&mut client).await.map_err(Error::Migrate)
    }
}

/// Plain tokio-postgres clients and this crate's errors; the pool's manager opens its
/// connections the same way.
impl Driver for Manager {
    type Connection = Client;
    type Error = Error;

    async fn open(connector: &PgConnector) -> Result<Client, Error> {
        // The I/O task needs no watching: it ends when the client is dropped.
        let (client, _io) = connector.connect().await?;
        Ok(client)
    }
}
