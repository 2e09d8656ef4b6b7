#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod connect;
mod engine;
mod error;
mod migration;

pub use cloud_pg_auth;
pub use cloud_pg_auth::engine::{
    AppliedMigration, DEFAULT_CONNECTION_TIMEOUT, DEFAULT_DISPOSE_TIMEOUT, DEFAULT_MAX_LIFETIME,
    DEFAULT_MAX_SIZE, MigrationReport,
};
pub use deadpool;
pub use diesel;
pub use diesel_async;
pub use diesel_async::pooled_connection::RecyclingMethod;
pub use diesel_migrations;

pub use engine::{PooledEngine, PooledEngineBuilder};
pub use error::Error;
pub use migration::DieselAsync;

/// Unpooled connections with a credential of their own, for migrations and admin work: the
/// core's migration engine with diesel-async's connections and `diesel_migrations` as the
/// runner ([`DieselAsync`]).
pub type MigrationEngine = cloud_pg_auth::migrate::MigrationEngine<DieselAsync>;

/// Builds a [`MigrationEngine`]; from `MigrationEngine::builder`.
pub type MigrationEngineBuilder = cloud_pg_auth::migrate::MigrationEngineBuilder<DieselAsync>;

/// The pool: diesel-async's deadpool integration over `AsyncPgConnection`.
pub type Pool = diesel_async::pooled_connection::deadpool::Pool<diesel_async::AsyncPgConnection>;

/// A checked-out connection, owned (`'static`, so it can move into a task). Derefs to
/// [`diesel_async::AsyncPgConnection`] (use `&mut *conn` or `&mut conn` with diesel-async's
/// `RunQueryDsl`); returns to the pool when dropped.
pub type Connection =
    diesel_async::pooled_connection::deadpool::Object<diesel_async::AsyncPgConnection>;

/// deadpool's pool builder, for [`PooledEngineBuilder::configure`].
pub type PoolBuilder =
    diesel_async::pooled_connection::deadpool::PoolBuilder<diesel_async::AsyncPgConnection>;
