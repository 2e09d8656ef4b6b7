//! The migration engine: the core's ([`cloud_pg_auth::migrate::MigrationEngine`]), handing out
//! deadpool-postgres clients and this crate's errors.

use cloud_pg_auth::migrate::Flavor;
use deadpool_postgres::ClientWrapper;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

use crate::{Error, Manager};

/// Unpooled connections for migrations and admin work, with a credential of its own (its own
/// token cache, no background refresh), so it can live on a short-lived runtime without
/// touching the pooled engine's credential.
///
/// `connect` returns a [`ClientWrapper`], as the pool does (statement cache,
/// transactions); the methods return this crate's [`Error`].
pub type MigrationEngine = cloud_pg_auth::migrate::MigrationEngine<Manager>;

/// Builds a [`MigrationEngine`]; from `MigrationEngine::builder`.
pub type MigrationEngineBuilder = cloud_pg_auth::migrate::MigrationEngineBuilder<Manager>;

/// The [`MigrationEngine`] of this crate: connections are [`ClientWrapper`]s (closed when
/// dropped), errors this crate's [`Error`].
impl Flavor for Manager {
    type Client = ClientWrapper;
    type Error = Error;

    fn client(client: Client, task: JoinHandle<()>) -> ClientWrapper {
        ClientWrapper::new(client, task)
    }

    fn as_client(client: &mut ClientWrapper) -> &mut Client {
        client
    }
}
