#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod engine;
mod error;
mod manager;
mod migration;
mod sink;

pub use bb8;
pub use cloud_pg_auth;
pub use cloud_pg_auth::engine::{
    AppliedMigration, DEFAULT_CONNECTION_TIMEOUT, DEFAULT_DISPOSE_TIMEOUT, DEFAULT_MAX_LIFETIME,
    DEFAULT_MAX_SIZE, MigrationReport,
};
pub use cloud_pg_auth::migrate::{MigrateError, Migration, Migrations};
pub use cloud_pg_auth::migrations;
pub use tokio_postgres;

pub use engine::{PooledEngine, PooledEngineBuilder};
pub use error::Error;
pub use manager::{Manager, PgClient};
pub use migration::{MigrationEngine, MigrationEngineBuilder};

/// The pool: bb8's pool over this crate's [`Manager`].
pub type Pool = bb8::Pool<Manager>;

/// A checked-out connection, borrowing the pool (`Connection<'static>` from
/// [`PooledEngine::get_owned`] does not). Derefs to [`PgClient`] and on to
/// [`tokio_postgres::Client`]; returns to the pool when dropped.
pub type Connection<'a> = bb8::PooledConnection<'a, Manager>;

/// bb8's pool builder, for [`PooledEngineBuilder::configure`].
pub type PoolBuilder = bb8::Builder<Manager>;

#[cfg(test)]
mod tests;
