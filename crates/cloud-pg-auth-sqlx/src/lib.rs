#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod engine;
mod error;
mod migration;
mod relay;
mod target;
#[cfg(test)]
mod tests;

pub use cloud_pg_auth;
pub use sqlx;

pub use engine::{
    DEFAULT_CONNECTION_TIMEOUT, DEFAULT_MAX_LIFETIME, DEFAULT_MAX_SIZE, PooledEngine,
    PooledEngineBuilder,
};
pub use error::Error;
pub use migration::{MigrationEngine, MigrationEngineBuilder};

/// The pool: sqlx's PostgreSQL pool. Its connect options carry the current token: never print
/// them.
pub type Pool = sqlx::PgPool;

/// A checked-out connection. Derefs to [`sqlx::PgConnection`] (use `&mut *conn` as an
/// executor); returns to the pool when dropped.
pub type Connection = sqlx::pool::PoolConnection<sqlx::Postgres>;

/// sqlx's pool options (its pool builder), for [`PooledEngineBuilder::configure`].
pub type PoolBuilder = sqlx::postgres::PgPoolOptions;
