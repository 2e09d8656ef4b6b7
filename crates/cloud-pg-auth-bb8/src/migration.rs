//! The migration engine: the core's ([`cloud_pg_auth::migrate::MigrationEngine`]), handing out
//! tokio-postgres clients and this crate's errors.

use cloud_pg_auth::migrate::Flavor;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::{Error, Manager};

/// Unpooled connections for migrations and admin work, with a credential of its own (its own
/// token cache, no background refresh), so it can live on a short-lived runtime without
/// touching the pooled engine's credential.
///
/// `connect` returns a [`tokio_postgres::Client`] (the connection closes when the client is
/// dropped); the methods return this crate's [`Error`].
pub type MigrationEngine = cloud_pg_auth::migrate::MigrationEngine<Manager>;

/// Builds a [`MigrationEngine`]; from `MigrationEngine::builder`.
pub type MigrationEngineBuilder = cloud_pg_auth::migrate::MigrationEngineBuilder<Manager>;

/// The [`MigrationEngine`] of this crate: connections are plain tokio-postgres clients,
/// errors this crate's [`Error`].
impl Flavor for Manager {
    type Client = Client;
    type Error = Error;

    fn client(client: Client, _task: JoinHandle<()>) -> Client {
        // The I/O task needs no watching: it ends when the client is dropped.
        client
    }

    fn as_client(client: &mut Client) -> &mut Client {
        client
    }
}
