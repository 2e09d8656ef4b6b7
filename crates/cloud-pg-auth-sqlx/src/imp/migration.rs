//! The migration engine: unpooled sqlx connections with their own credential, and sqlx's
//! migrations run over them.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cloud_pg_auth::engine::{
    AppliedMigration, CredentialConfig, HISTORY_OWNER_QUERY, HistoryPermissionError,
    INSUFFICIENT_PRIVILEGE, Lifecycle, MigrationReport,
};
use cloud_pg_auth::login::Attempt;
use cloud_pg_auth::{Auth, EngineStatus, Secret, Settings};
use sqlx::Connection as _;
use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::migrate::{Migrate as _, MigrateError, Migrator};
use sqlx::postgres::PgConnection;

use super::error::sqlstate;
use super::target::Target;
use super::{Error, compat, sqlx};

/// Opens connections for migrations and admin work, with a credential of its own (no
/// background refresh: each connection fetches a token if the cached one is not valid).
///
/// Safe to create, use and drop inside a short-lived tokio runtime of its own: it shares
/// nothing with any [`PooledEngine`](super::PooledEngine). Clones share the credential;
/// dropping the last one drops it and the relay.
#[derive(Clone)]
pub struct MigrationEngine {
    lifecycle: Lifecycle,
    target: Arc<Target>,
}

impl MigrationEngine {
    cloud_pg_auth::engine_constructors!(Error);

    /// A builder, to pass a token source or credential options. The engine logs in with the
    /// settings' migration identity ([`Settings::for_migrations`]): `PGAUTH_MIGRATION_USER`
    /// and, on Azure, `PGAUTH_MIGRATION_AZURE_CLIENT_ID`, when set.
    pub fn builder(settings: Settings) -> MigrationEngineBuilder {
        MigrationEngineBuilder {
            config: CredentialConfig::for_migrations(settings),
        }
    }

    /// Opens a new connection with a fresh token (retried once with a new token if the server
    /// refuses the login). It is the caller's; nothing pools it.
    pub async fn connect(&self) -> Result<PgConnection, Error> {
        self.lifecycle.check_open()?;
        // Again on each connect: the engine may be used on another runtime than the one
        // that built it.
        self.target.ensure_relay()?;
        let auth = self.lifecycle.auth();
        let refused: Mutex<Option<Secret>> = Mutex::new(None);
        let connection = self
            .target
            .retry_once(|attempt| {
                let refused = &refused;
                async move {
                    // The token the first attempt used, dropped from the cache on the retry.
                    let last = refused
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .take();
                    if attempt == Attempt::Retry
                        && let Some(secret) = last
                    {
                        auth.invalidate(&secret);
                    }
                    let token = auth.token().await?;
                    let options = self.target.options_for(&token)?;
                    *refused.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(token.secret().clone());
                    PgConnection::connect_with(&options)
                        .await
                        .map_err(|error| self.target.attempt_error(error))
                }
            })
            .await?;
        self.target.count_opened();
        Ok(connection)
    }

    /// Applies the pending migrations of `migrator` (`Migrator::new(path)` or
    /// `sqlx::migrate!()`) on a new connection and reports what this call applied (versions,
    /// descriptions as names, each one's execution time from sqlx's migrations table).
    /// Holds sqlx's advisory lock throughout, so instances starting together apply each
    /// migration once.
    pub async fn run_migrations(&self, migrator: &Migrator) -> Result<MigrationReport, Error> {
        let mut connection = self.connect().await?;
        let started = Instant::now();
        // sqlx's lock is reentrant per session: taking it here as well makes the before and
        // after lists exact.
        connection.lock().await?;
        let result = match apply(&mut connection, migrator).await {
            Err(error) if refused(&error) => Err(explain(&mut connection, migrator, error).await),
            other => other,
        };
        let unlocked = connection.unlock().await;
        let (applied, already_applied) = result?;
        unlocked?;
        let _ = connection.close().await;
        Ok(MigrationReport::new(
            applied,
            already_applied,
            started.elapsed(),
        ))
    }

    /// The credential's status and connection counters (no pool figures).
    #[must_use]
    pub fn status(&self) -> EngineStatus {
        let stats = self.target.stats();
        EngineStatus::new(
            self.lifecycle.auth().status(),
            stats.connections_opened,
            stats.auth_retries,
            None,
        )
    }

    /// The engine's credential.
    #[must_use]
    pub fn auth(&self) -> &Auth {
        self.lifecycle.auth()
    }

    /// Drops the credential and stops the relay (removing its socket directory). Later
    /// connects fail with [`Error::Disposed`]; connections already opened stay open until
    /// dropped. Idempotent.
    pub async fn dispose(&self) {
        self.lifecycle.dispose(|| async {}).await;
        self.target.stop_relay().await;
    }

    /// Whether [`MigrationEngine::dispose`] ran.
    #[must_use]
    pub fn is_disposed(&self) -> bool {
        self.lifecycle.is_disposed()
    }

    #[cfg(test)]
    pub(crate) fn target(&self) -> &Target {
        &self.target
    }
}

/// Runs the pending migrations and returns those this run applied, in version order, and
/// how many of `migrator`'s were applied before.
async fn apply(
    connection: &mut PgConnection,
    migrator: &Migrator,
) -> Result<(Vec<AppliedMigration>, usize), Error> {
    // Asked rather than created here, so sqlx's own `CREATE TABLE IF NOT EXISTS` stays quiet.
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(compat::migrations_table(migrator))
        .fetch_one(&mut *connection)
        .await?;
    let before: HashSet<i64> = if exists {
        recorded(connection, migrator).await?.into_keys().collect()
    } else {
        HashSet::new()
    };
    compat::run_migrations(migrator, connection).await?;
    let names: HashMap<i64, &str> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| (m.version, &*m.description))
        .collect();
    let already_applied = names.keys().filter(|v| before.contains(v)).count();
    let mut applied: Vec<_> = recorded(connection, migrator)
        .await?
        .into_iter()
        .filter(|(version, _)| !before.contains(version))
        .collect();
    applied.sort_unstable_by_key(|(version, _)| *version);
    let applied = applied
        .into_iter()
        .map(|(version, duration)| {
            let name = names.get(&version).copied().unwrap_or_default();
            AppliedMigration::new(version.to_string(), name, duration)
        })
        .collect();
    Ok((applied, already_applied))
}

/// Whether the server refused a statement of the run (SQLSTATE 42501).
fn refused(error: &Error) -> bool {
    let inner = match error {
        Error::Sqlx(e)
        | Error::Migrate(MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _)) => e,
        _ => return false,
    };
    sqlstate(inner).as_deref() == Some(INSUFFICIENT_PRIVILEGE)
}

/// A refused run: when another role owns the history, the same error with the server's
/// refusal replaced by one that says who owns the history, who is logged in and what to do
/// (still a database error with SQLSTATE 42501); else `error` as it was.
async fn explain(connection: &mut PgConnection, migrator: &Migrator, error: Error) -> Error {
    let table = compat::migrations_table(migrator).to_string();
    let row: Result<Option<(String, String, bool)>, _> = sqlx::query_as(HISTORY_OWNER_QUERY)
        .bind(&table)
        .fetch_optional(&mut *connection)
        .await;
    let Ok(Some((owner, user, _))) = row else {
        return error;
    };
    if owner == user {
        return error;
    }
    let explained = |inner: sqlx::Error| {
        let error = HistoryPermissionError::new(table, owner, user, inner);
        sqlx::Error::Database(Box::new(HistoryRefused {
            message: error.to_string(),
            error,
        }))
    };
    match error {
        Error::Sqlx(e) => Error::Sqlx(explained(e)),
        Error::Migrate(MigrateError::Execute(e)) => {
            Error::Migrate(MigrateError::Execute(explained(e)))
        }
        Error::Migrate(MigrateError::ExecuteMigration(e, version)) => {
            Error::Migrate(MigrateError::ExecuteMigration(explained(e), version))
        }
        other => other,
    }
}

/// The server's refusal, explained: sqlx's errors hold a database error where the refusal
/// was, so this one takes its place, with the server's error as its source.
#[derive(Debug)]
struct HistoryRefused {
    message: String,
    error: HistoryPermissionError,
}

impl fmt::Display for HistoryRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HistoryRefused {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

impl DatabaseError for HistoryRefused {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(INSUFFICIENT_PRIVILEGE))
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

/// The versions in the migrator's table with their execution times (sqlx records
/// nanoseconds).
async fn recorded(
    connection: &mut PgConnection,
    migrator: &Migrator,
) -> Result<HashMap<i64, Duration>, Error> {
    Ok(compat::recorded(connection, migrator)
        .await?
        .into_iter()
        .map(|(version, nanos)| {
            let nanos = u64::try_from(nanos).unwrap_or(0);
            (version, Duration::from_nanos(nanos))
        })
        .collect())
}

impl fmt::Debug for MigrationEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MigrationEngine")
            .field("target", &self.target.label())
            .field("auth", self.lifecycle.auth())
            .field("stats", &self.target.stats())
            .field("disposed", &self.is_disposed())
            .finish()
    }
}

/// Options of a [`MigrationEngine`].
#[must_use]
pub struct MigrationEngineBuilder {
    config: CredentialConfig,
}

impl MigrationEngineBuilder {
    cloud_pg_auth::credential_builder_methods!(config);

    /// Builds the credential. No connection is opened yet.
    pub async fn build(mut self) -> Result<MigrationEngine, Error> {
        let target = Target::from_settings(&self.config.login_settings())?;
        target.ensure_relay()?;
        // A refresher would live on the runtime that builds the engine, which is often a
        // throwaway one; each connect fetches a token when needed instead.
        self.config.disable_background_refresh();
        let auth = self.config.build_auth().await?;
        Ok(MigrationEngine {
            lifecycle: Lifecycle::new(auth, Duration::ZERO),
            target: Arc::new(target),
        })
    }
}

impl fmt::Debug for MigrationEngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MigrationEngineBuilder")
            .field("config", &self.config)
            .finish()
    }
}
