//! SQL migrations over one tokio-postgres connection, and the [`MigrationEngine`] that runs
//! them (used by the deadpool and bb8 adapters).
//!
//! Plain SQL files, each applied in its own transaction and recorded in the table
//! `_pgauth_migrations (version bigint primary key, name text, checksum text, applied_at
//! timestamptz)`. Runs are serialised with a session advisory lock, so several instances
//! starting at once apply each migration exactly once. A migration whose file changed after
//! it was applied (a different checksum) stops the run: edit history with a new migration.
//!
//! Migrations run as their own role: migration engines log in with
//! [`Settings::for_migrations`](crate::Settings::for_migrations) (`PGAUTH_MIGRATION_USER`,
//! `PGAUTH_MIGRATION_AZURE_CLIENT_ID`), so the service can run as a limited role. When the
//! server refuses a run because another role owns the history, the error says which role
//! owns it, which one is logged in and what to grant ([`HistoryPermissionError`]).
//!
//! Migrations are embedded with [`migrations!`](crate::migrations) (file names give versions
//! and names, contents are compiled in) or read at run time with [`Migrations::from_dir`].
//! File names follow Flyway (`V1__create_notes.sql`) or sqlx (`1_create_notes.sql`,
//! `20260101120000_create_notes.sql`, `1_create_notes.up.sql`).
//!
//! ```no_run
//! # async fn run(client: &mut cloud_pg_auth::tokio_postgres::Client) -> Result<(), cloud_pg_auth::migrate::MigrateError> {
//! use cloud_pg_auth::migrate::{Migration, Migrations};
//!
//! let migrations = Migrations::new([
//!     Migration::new(1, "create_notes", "create table notes (id bigint primary key)"),
//! ])?;
//! let report = migrations.run(client).await?;
//! assert!(report.applied.len() <= migrations.len());
//! # Ok(()) }
//! ```

mod engine;
mod error;
mod migration;
mod run;

pub use crate::engine::{AppliedMigration, MigrationReport};
pub use crate::engine::{
    HISTORY_OWNER_QUERY, HistoryOwner, HistoryPermissionError, INSUFFICIENT_PRIVILEGE,
    history_permission_message,
};
pub use engine::{Driver, MigrationEngine, MigrationEngineBuilder, Runner};
pub use error::MigrateError;
pub use migration::{Migration, Migrations};

/// The table that records applied migrations.
pub const TABLE: &str = "_pgauth_migrations";

/// The key of the session advisory lock that serialises runs (`pgauthmg` in ASCII).
pub const LOCK_KEY: i64 = 0x7067_6175_7468_6d67;

#[cfg(test)]
mod tests;
