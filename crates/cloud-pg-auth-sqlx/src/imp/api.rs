//! The public items of one version module (`v0_9` or `v0_8`); `super::sqlx` is its sqlx.

use super::sqlx;

pub use cloud_pg_auth::engine::{
    AppliedMigration, DEFAULT_CONNECTION_TIMEOUT, DEFAULT_DISPOSE_TIMEOUT, DEFAULT_MAX_LIFETIME,
    DEFAULT_MAX_SIZE, MigrationReport,
};

pub use super::engine::{PooledEngine, PooledEngineBuilder};
pub use super::error::Error;
pub use super::migration::{MigrationEngine, MigrationEngineBuilder};

/// The pool: sqlx's PostgreSQL pool. Its connect options carry the current token: never print
/// them.
pub type Pool = sqlx::PgPool;

/// A checked-out connection. Derefs to [`sqlx::PgConnection`] (use `&mut *conn` as an
/// executor); returns to the pool when dropped.
pub type Connection = sqlx::pool::PoolConnection<sqlx::Postgres>;

/// sqlx's pool options (its pool builder), for [`PooledEngineBuilder::configure`].
pub type PoolBuilder = sqlx::postgres::PgPoolOptions;
