//! The diesel-async driver of the core's migration engine: `AsyncPgConnection`s opened with a
//! fresh token, and diesel's migrations run over them under an advisory lock.

use std::time::{Duration, Instant};

use cloud_pg_auth::PgConnector;
use cloud_pg_auth::engine::{AppliedMigration, MigrationReport};
use cloud_pg_auth::migrate::{Driver, HISTORY_OWNER_QUERY, HistoryPermissionError, Runner};
use diesel::RunQueryDsl;
use diesel::migration::{Migration, MigrationSource};
use diesel::pg::Pg;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::MigrationHarness;

use crate::Error;
use crate::connect::open;

/// The advisory lock held while migrations run, so that several instances starting at once
/// apply each migration once (diesel's harness itself does not lock).
const MIGRATION_LOCK: i64 = 0x7067_6175_7468_6d69; // "pgauthmi"

/// What [`MigrationEngine`](crate::MigrationEngine) is made of in this crate: its
/// connections are [`AsyncPgConnection`]s and its runner is `diesel_migrations`, for any
/// `MigrationSource<Pg>` (usually the constant made by `embed_migrations!`).
///
/// diesel's migration harness is synchronous: it runs on tokio's blocking pool through
/// diesel-async's `AsyncConnectionWrapper`, which works in current-thread and multi-thread
/// runtimes alike (diesel-async's `AsyncMigrationHarness` needs `block_in_place`, which
/// panics in a current-thread runtime). The report's versions are diesel's version strings
/// (`20260101000000` for the directory `2026-01-01-000000_create_notes`).
#[derive(Debug)]
pub enum DieselAsync {}

impl Driver for DieselAsync {
    type Connection = AsyncPgConnection;
    type Error = Error;

    async fn open(connector: &PgConnector) -> Result<AsyncPgConnection, Error> {
        open(connector).await
    }
}

impl<S> Runner<S> for DieselAsync
where
    S: MigrationSource<Pg> + Send + 'static,
{
    async fn run(connection: AsyncPgConnection, source: S) -> Result<MigrationReport, Error> {
        let run = tokio::task::spawn_blocking(move || run_locked(connection, source));
        match run.await {
            Ok(result) => result,
            Err(join) => Err(Error::Migrate(Box::new(join))),
        }
    }
}

fn run_locked<S>(connection: AsyncPgConnection, source: S) -> Result<MigrationReport, Error>
where
    S: MigrationSource<Pg>,
{
    let started = Instant::now();
    let mut connection: AsyncConnectionWrapper<AsyncPgConnection> =
        AsyncConnectionWrapper::from(connection);
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .execute(&mut connection)?;
    let report = run_pending(&mut connection, source).map_err(|e| explain(&mut connection, e));
    // The lock also ends with the session; unlock anyway so a caller keeping the connection
    // alive longer cannot block others.
    let unlocked = diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
        .execute(&mut connection);
    let (applied, already_applied) = report?;
    unlocked?;
    Ok(MigrationReport::new(
        applied,
        already_applied,
        started.elapsed(),
    ))
}

/// Applies the pending migrations one by one (to time each), returning them and how many
/// of the known ones were applied before.
fn run_pending<S>(
    connection: &mut AsyncConnectionWrapper<AsyncPgConnection>,
    source: S,
) -> Result<(Vec<AppliedMigration>, usize), Error>
where
    S: MigrationSource<Pg>,
{
    let known = source.migrations().map_err(Error::Migrate)?.len();
    let pending = connection
        .pending_migrations(source)
        .map_err(Error::Migrate)?;
    let mut applied = Vec::with_capacity(pending.len());
    for migration in &pending {
        let started = Instant::now();
        let version = connection
            .run_migration(migration.as_ref())
            .map_err(Error::Migrate)?;
        applied.push(applied_migration(
            migration.as_ref(),
            version.to_string(),
            started.elapsed(),
        ));
        tracing::info!(%version, "migration applied");
    }
    Ok((applied, known.saturating_sub(pending.len())))
}

/// diesel's history table.
const HISTORY_TABLE: &str = "__diesel_schema_migrations";

/// Who owns diesel's history and who is logged in (see [`HISTORY_OWNER_QUERY`]).
#[derive(diesel::QueryableByName)]
struct HistoryOwnerRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    owner: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    login: String,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    can_use: bool,
}

/// A failed run: when the server refused a statement and the history belongs to another role
/// that this one may not use, the error that says so and what to do; else `error` as it was.
/// diesel keeps no SQLSTATE, so a database error while the history is out of this role's
/// reach stands for the refusal.
fn explain(connection: &mut AsyncConnectionWrapper<AsyncPgConnection>, error: Error) -> Error {
    let Error::Migrate(source) = error else {
        return error;
    };
    if !from_the_server(source.as_ref()) {
        return Error::Migrate(source);
    }
    let row = diesel::sql_query(HISTORY_OWNER_QUERY)
        .bind::<diesel::sql_types::Text, _>(HISTORY_TABLE)
        .get_result::<HistoryOwnerRow>(connection);
    match row {
        Ok(row) if row.owner != row.login && !row.can_use => Error::Migrate(Box::new(
            HistoryPermissionError::new(HISTORY_TABLE, row.owner, row.login, source),
        )),
        _ => Error::Migrate(source),
    }
}

/// Whether the server answered with an error somewhere in the chain.
fn from_the_server(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if matches!(
            error.downcast_ref::<diesel::result::Error>(),
            Some(diesel::result::Error::DatabaseError(..))
        ) {
            return true;
        }
        next = error.source();
    }
    false
}

/// diesel names a migration by its directory (`2026-01-01-000000_create_notes`); the
/// report's name is the part after the version.
fn applied_migration(
    migration: &dyn Migration<Pg>,
    version: String,
    duration: Duration,
) -> AppliedMigration {
    let full = migration.name().to_string();
    let name = full.split_once('_').map_or(full.as_str(), |(_, name)| name);
    AppliedMigration::new(version, name, duration)
}
