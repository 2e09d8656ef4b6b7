//! The engines over sqlx 0.9 (feature `sqlx-0-9`, on by default). The crate root re-exports
//! this module, so `cloud_pg_auth_sqlx::PooledEngine` is `cloud_pg_auth_sqlx::v0_9::PooledEngine`.
#![allow(
    clippy::duplicate_mod,
    reason = "src/imp is compiled once per sqlx version, on purpose"
)]

/// sqlx 0.9, the version this module's types use.
pub use sqlx09 as sqlx;

/// What the engines call differently in sqlx 0.9: its migrations table can be renamed.
mod compat {
    use super::sqlx::migrate::{AppliedMigration, Migrate as _, MigrateError, Migrator};
    use super::sqlx::postgres::PgConnection;

    /// The table that records `migrator`'s applied migrations.
    pub(super) fn migrations_table(migrator: &Migrator) -> &str {
        &migrator.table_name
    }

    /// The migrations applied so far (the table exists).
    pub(super) async fn applied_migrations(
        connection: &mut PgConnection,
        migrator: &Migrator,
    ) -> Result<Vec<AppliedMigration>, MigrateError> {
        connection
            .list_applied_migrations(&migrator.table_name)
            .await
    }

    /// Runs the pending migrations. `run_direct` is what `Migrator::run` calls; taking the
    /// connection directly keeps the caller's future `Send` (sqlx's `Acquire` bound is not,
    /// in a generic context).
    pub(super) async fn run_migrations(
        migrator: &Migrator,
        connection: &mut PgConnection,
    ) -> Result<(), MigrateError> {
        migrator.run_direct(None, connection, false).await
    }
}

// The implementation shared with `v0_8` (see `src/lib.rs`).
#[path = "imp/api.rs"]
mod api;
#[path = "imp/engine.rs"]
mod engine;
#[path = "imp/error.rs"]
mod error;
#[path = "imp/migration.rs"]
mod migration;
#[path = "imp/target.rs"]
mod target;
#[cfg(test)]
#[path = "imp/tests.rs"]
mod tests;

pub use api::*;
