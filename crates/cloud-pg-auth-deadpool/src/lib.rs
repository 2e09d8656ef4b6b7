#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod engine;
mod error;
mod manager;
mod migration;

pub use cloud_pg_auth;
pub use cloud_pg_auth::engine::{
    AppliedMigration, DEFAULT_CONNECTION_TIMEOUT, DEFAULT_DISPOSE_TIMEOUT, DEFAULT_MAX_LIFETIME,
    DEFAULT_MAX_SIZE, MigrationReport,
};
pub use cloud_pg_auth::migrate::{MigrateError, Migration, Migrations};
pub use cloud_pg_auth::migrations;
pub use deadpool;
pub use deadpool_postgres;
pub use deadpool_postgres::{ClientWrapper, RecyclingMethod};
pub use tokio_postgres;

pub use engine::{PooledEngine, PooledEngineBuilder};
pub use error::Error;
pub use manager::Manager;
pub use migration::{MigrationEngine, MigrationEngineBuilder};

/// The pool: deadpool's managed pool over this crate's [`Manager`].
pub type Pool = deadpool::managed::Pool<Manager>;

/// A checked-out connection, owned (it can move into a spawned task). Derefs to
/// [`ClientWrapper`] (deadpool-postgres's client with its statement cache: `prepare_cached`,
/// `transaction`) and on to [`tokio_postgres::Client`]; returns to the pool when dropped.
pub type Connection = deadpool::managed::Object<Manager>;

/// deadpool's pool builder, for [`PooledEngineBuilder::configure`].
pub type PoolBuilder = deadpool::managed::PoolBuilder<Manager>;

#[cfg(test)]
mod tests;
