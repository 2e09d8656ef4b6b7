#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// One implementation, two sqlx versions. sqlx 0.8 and 0.9 are different crates to the
// compiler, so the engines are compiled once per version: `v0_9` and `v0_8` each include the
// same files from `src/imp` (`#[path]`), and in each of them `super::sqlx` is that module's
// sqlx. The features only add a module, so both can be on at once (cargo unifies features
// across a build); nothing is mutually exclusive. The relay does not touch sqlx and is
// compiled once.

#[cfg(not(any(feature = "sqlx-0-9", feature = "sqlx-0-8")))]
compile_error!(
    "cloud-pg-auth-sqlx needs a sqlx version: enable the feature `sqlx-0-9` (default) or `sqlx-0-8`"
);

#[cfg(any(feature = "sqlx-0-9", feature = "sqlx-0-8"))]
mod relay;
#[cfg(feature = "sqlx-0-8")]
pub mod v0_8;
#[cfg(feature = "sqlx-0-9")]
pub mod v0_9;

pub use cloud_pg_auth;

// The crate root is the sqlx 0.9 API, as before the 0.8 module existed.
#[cfg(feature = "sqlx-0-9")]
pub use v0_9::{
    AppliedMigration, Connection, DEFAULT_CONNECTION_TIMEOUT, DEFAULT_DISPOSE_TIMEOUT,
    DEFAULT_MAX_LIFETIME, DEFAULT_MAX_SIZE, Error, MigrationEngine, MigrationEngineBuilder,
    MigrationReport, Pool, PoolBuilder, PooledEngine, PooledEngineBuilder, sqlx,
};
