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
    use super::sqlx::migrate::{MigrateError, Migrator};
    use super::sqlx::postgres::PgConnection;

    /// The table that records `migrator`'s applied migrations.
    pub(super) fn migrations_table(migrator: &Migrator) -> &str {
        &migrator.table_name
    }

    /// Each recorded version with its execution time in nanoseconds, from the migrator's
    /// table (its name is the migrator's own, as sqlx uses it).
    pub(super) async fn recorded(
        connection: &mut PgConnection,
        migrator: &Migrator,
    ) -> Result<Vec<(i64, i64)>, super::sqlx::Error> {
        let sql = format!(
            "SELECT version, execution_time FROM {}",
            migrator.table_name
        );
        super::sqlx::query_as(super::sqlx::AssertSqlSafe(sql))
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
