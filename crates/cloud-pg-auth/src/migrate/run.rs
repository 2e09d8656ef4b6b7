//! The SQL runner: applies pending [`Migrations`] under an advisory lock, each in its own
//! transaction, and records them in [`TABLE`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::{
    AppliedMigration, HISTORY_OWNER_QUERY, HistoryOwner, HistoryPermissionError,
    INSUFFICIENT_PRIVILEGE, LOCK_KEY, MigrateError, Migration, MigrationReport, Migrations, TABLE,
};

impl Migrations {
    /// Applies the pending migrations in order, each in its own transaction, holding the
    /// advisory lock [`LOCK_KEY`] for the whole run. Refuses to run when an applied
    /// migration's checksum differs from the file's, or when a pending migration's version
    /// is lower than one already applied (give new migrations higher versions). Applied
    /// migrations unknown to this list (from a newer release) are logged and left alone.
    pub async fn run(&self, client: &mut Client) -> Result<MigrationReport, MigrateError> {
        let started = Instant::now();
        client
            .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
            .await
            .map_err(MigrateError::query("take the migration lock"))?;
        let result = match self.run_locked(client).await {
            Err(error) if error.sqlstate() == Some(INSUFFICIENT_PRIVILEGE) => {
                Err(explain_refusal(client, error).await)
            }
            other => other,
        };
        // The lock belongs to the session; release it even after a failure, since pooled or
        // long-lived connections outlive the run. A broken connection releases it anyway.
        let unlocked = client
            .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
            .await
            .map_err(MigrateError::query("release the migration lock"));
        let mut report = result?;
        unlocked?;
        report.duration = started.elapsed();
        Ok(report)
    }

    async fn run_locked(&self, client: &mut Client) -> Result<MigrationReport, MigrateError> {
        // Created only when missing: `CREATE TABLE IF NOT EXISTS` needs the right to create in
        // the schema even when the table exists, which a role granted only the table lacks.
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&TABLE])
            .await
            .map_err(MigrateError::query("look for the table _pgauth_migrations"))?
            .get(0);
        if !exists {
            client
                .batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {TABLE} (
                    version bigint PRIMARY KEY,
                    name text NOT NULL,
                    checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now()
                )"
                ))
                .await
                .map_err(MigrateError::query("create the table _pgauth_migrations"))?;
        }
        let rows = client
            .query(&format!("SELECT version, name, checksum FROM {TABLE}"), &[])
            .await
            .map_err(MigrateError::query("read the table _pgauth_migrations"))?;
        let applied: BTreeMap<i64, (String, String)> = rows
            .iter()
            .map(|row| (row.get(0), (row.get(1), row.get(2))))
            .collect();
        let pending = self.plan(&applied)?;
        let already_applied = self.list.len() - pending.len();
        let mut applied = Vec::with_capacity(pending.len());
        for migration in pending {
            let started = Instant::now();
            apply(client, migration).await?;
            tracing::info!(version = migration.version, name = %migration.name, "migration applied");
            applied.push(AppliedMigration::new(
                migration.version.to_string(),
                migration.name.to_string(),
                started.elapsed(),
            ));
        }
        Ok(MigrationReport::new(
            applied,
            already_applied,
            Duration::ZERO,
        ))
    }

    /// Checks the recorded history against this list and returns what is left to apply.
    pub(super) fn plan(
        &self,
        applied: &BTreeMap<i64, (String, String)>,
    ) -> Result<Vec<&Migration>, MigrateError> {
        for migration in &self.list {
            if let Some((_, checksum)) = applied.get(&migration.version)
                && *checksum != migration.checksum()
            {
                return Err(MigrateError::ChecksumMismatch {
                    version: migration.version,
                    name: migration.name.to_string(),
                });
            }
        }
        for (version, (name, _)) in applied {
            if !self.list.iter().any(|m| m.version == *version) {
                tracing::warn!(
                    version,
                    name = %name,
                    "an applied migration is not in this release's list (applied by a newer release?); leaving it"
                );
            }
        }
        let latest = applied.keys().next_back().copied();
        let pending: Vec<&Migration> = self
            .list
            .iter()
            .filter(|m| !applied.contains_key(&m.version))
            .collect();
        if let (Some(latest), Some(first)) = (latest, pending.first())
            && first.version < latest
        {
            return Err(MigrateError::OutOfOrder {
                version: first.version,
                name: first.name.to_string(),
                latest,
            });
        }
        Ok(pending)
    }
}

/// A refused run: when another role owns the history, the error that says so and what to do;
/// else `error` as it was (also when the lookup itself fails).
async fn explain_refusal(client: &Client, error: MigrateError) -> MigrateError {
    let owner = match client.query_opt(HISTORY_OWNER_QUERY, &[&TABLE]).await {
        Ok(Some(row)) => HistoryOwner {
            owner: row.get(0),
            user: row.get(1),
            can_use: row.get(2),
        },
        Ok(None) | Err(_) => return error,
    };
    if !owner.owned_by_another_role() {
        return error;
    }
    HistoryPermissionError::new(TABLE, owner.owner, owner.user, error).into()
}

async fn apply(client: &mut Client, migration: &Migration) -> Result<(), MigrateError> {
    let failed = |source| MigrateError::Migration {
        version: migration.version,
        name: migration.name.to_string(),
        source,
    };
    let tx = client.transaction().await.map_err(failed)?;
    tx.batch_execute(&migration.sql).await.map_err(failed)?;
    tx.execute(
        &format!("INSERT INTO {TABLE} (version, name, checksum) VALUES ($1, $2, $3)"),
        &[
            &migration.version,
            &migration.name.as_ref(),
            &migration.checksum(),
        ],
    )
    .await
    .map_err(failed)?;
    tx.commit().await.map_err(failed)
}
