//! The engines over sqlx 0.8 (feature `sqlx-0-8`; 0.8.6 or a later 0.8): the same types and
//! behaviour as at the crate root, for services that have not moved to sqlx 0.9.
//!
//! ```toml
//! cloud-pg-auth-sqlx = { version = "0.1", default-features = false, features = ["sqlx-0-8"] }
//! ```
#![allow(
    clippy::duplicate_mod,
    reason = "src/imp is compiled once per sqlx version, on purpose"
)]

/// sqlx 0.8, the version this module's types use.
pub use sqlx08 as sqlx;

/// What the engines call differently in sqlx 0.8: one fixed migrations table.
mod compat {
    use super::sqlx::migrate::{MigrateError, Migrator};
    use super::sqlx::postgres::PgConnection;

    /// The table that records applied migrations (fixed in sqlx 0.8).
    pub(super) fn migrations_table(_migrator: &Migrator) -> &'static str {
        "_sqlx_migrations"
    }

    /// Each recorded version with its execution time in nanoseconds.
    pub(super) async fn recorded(
        connection: &mut PgConnection,
        _migrator: &Migrator,
    ) -> Result<Vec<(i64, i64)>, super::sqlx::Error> {
        super::sqlx::query_as("SELECT version, execution_time FROM _sqlx_migrations")
            .fetch_all(connection)
            .await
    }

    /// Runs the pending migrations. `run_direct` is what `Migrator::run` calls; taking the
    /// connection directly keeps the caller's future `Send` (sqlx's `Acquire` bound is not,
    /// in a generic context).
    pub(super) async fn run_migrations(
        migrator: &Migrator,
        connection: &mut PgConnection,
    ) -> Result<(), MigrateError> {
        migrator.run_direct(connection).await
    }
}

// The implementation shared with `v0_9` (see `src/lib.rs`).
#[path = "imp/api.rs"]
mod api;
#[path = "imp/engine.rs"]
mod engine;
#[path = "imp/error.rs"]
mod error;
#[path = "imp/migration.rs"]
mod migration;
#[cfg(test)]
#[path = "imp/options_tests.rs"]
mod options_tests;
#[path = "imp/target.rs"]
mod target;
#[cfg(test)]
#[path = "imp/tests.rs"]
mod tests;
#[path = "imp/tokens.rs"]
mod tokens;

pub use api::*;
