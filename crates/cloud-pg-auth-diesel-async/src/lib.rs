#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod connect;
mod engine;
mod error;
mod migration;

pub use cloud_pg_auth;
pub use deadpool;
pub use diesel;
pub use diesel_async;
pub use diesel_async::pooled_connection::RecyclingMethod;
pub use diesel_migrations;

pub use engine::{
    DEFAULT_CONNECTION_TIMEOUT, DEFAULT_MAX_LIFETIME, DEFAULT_MAX_SIZE, PooledEngine,
    PooledEngineBuilder,
};
pub use error::Error;
pub use migration::{MigrationEngine, MigrationEngineBuilder};

/// The pool: diesel-async's deadpool integration over `AsyncPgConnection`.
pub type Pool = diesel_async::pooled_connection::deadpool::Pool<diesel_async::AsyncPgConnection>;

/// A checked-out connection. Derefs to [`diesel_async::AsyncPgConnection`] (use `&mut *conn`
/// or `&mut conn` with diesel-async's `RunQueryDsl`); returns to the pool when dropped.
pub type Connection =
    diesel_async::pooled_connection::deadpool::Object<diesel_async::AsyncPgConnection>;

/// deadpool's pool builder, for [`PooledEngineBuilder::configure`].
pub type PoolBuilder =
    diesel_async::pooled_connection::deadpool::PoolBuilder<diesel_async::AsyncPgConnection>;
