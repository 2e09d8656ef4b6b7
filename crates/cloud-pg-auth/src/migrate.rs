//! SQL migrations over one tokio-postgres connection, and the [`MigrationEngine`] that runs
//! them (used by the deadpool and bb8 adapters).
//!
//! Plain SQL files, each applied in its own transaction and recorded in the table
//! `_pgauth_migrations (version bigint primary key, name text, checksum text, applied_at
//! timestamptz)`. Runs are serialised with a session advisory lock, so several instances
//! starting at once apply each migration exactly once. A migration whose file changed after
//! it was applied (a different checksum) stops the run: edit history with a new migration.
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

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use tokio_postgres::Client;

mod engine;

pub use engine::{Flavor, MigrationEngine, MigrationEngineBuilder};

/// The table that records applied migrations.
pub const TABLE: &str = "_pgauth_migrations";

/// The key of the session advisory lock that serialises runs (`pgauthmg` in ASCII).
pub const LOCK_KEY: i64 = 0x7067_6175_7468_6d67;

/// One migration: a version, a name and the SQL to run.
#[derive(Clone, PartialEq, Eq)]
pub struct Migration {
    /// Applied in ascending order; unique.
    pub version: i64,
    /// A short description, recorded next to the version.
    pub name: Cow<'static, str>,
    /// One or more SQL statements, run in one transaction.
    pub sql: Cow<'static, str>,
}

impl Migration {
    /// A migration from static parts (`include_str!` contents).
    #[must_use]
    pub const fn new(version: i64, name: &'static str, sql: &'static str) -> Self {
        Self {
            version,
            name: Cow::Borrowed(name),
            sql: Cow::Borrowed(sql),
        }
    }

    /// A migration whose version and name come from a file name such as
    /// `V1__create_notes.sql` or `1_create_notes.sql` (a path is allowed: only its last
    /// part counts).
    pub fn from_file(path: &str, sql: impl Into<Cow<'static, str>>) -> Result<Self, MigrateError> {
        let file = path.rsplit(['/', '\\']).next().unwrap_or(path);
        let (version, name) = parse_file_name(file).map_err(|message| MigrateError::FileName {
            file: file.to_string(),
            message,
        })?;
        Ok(Self {
            version,
            name: Cow::Owned(name),
            sql: sql.into(),
        })
    }

    /// The checksum recorded for this migration: FNV-1a (64 bit, hex) of the SQL with line
    /// endings normalised, so a checkout with CRLF line endings does not count as a change.
    #[must_use]
    pub fn checksum(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self.sql.replace("\r\n", "\n").bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{hash:016x}")
    }
}

impl fmt::Debug for Migration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The SQL can be long; the checksum identifies it.
        f.debug_struct("Migration")
            .field("version", &self.version)
            .field("name", &self.name)
            .field("checksum", &self.checksum())
            .finish()
    }
}

/// An ordered list of migrations with unique versions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Migrations {
    list: Vec<Migration>,
}

/// A migration named in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppliedMigration {
    /// Its version.
    pub version: i64,
    /// Its name.
    pub name: String,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationReport {
    /// The migrations this run applied, in order.
    pub applied: Vec<AppliedMigration>,
    /// How many of the known migrations were applied before this run.
    pub already_applied: usize,
}

impl Migrations {
    /// Sorts `migrations` by version; fails on a repeated version.
    pub fn new(migrations: impl IntoIterator<Item = Migration>) -> Result<Self, MigrateError> {
        let mut list: Vec<Migration> = migrations.into_iter().collect();
        list.sort_by_key(|m| m.version);
        for pair in list.windows(2) {
            if pair[0].version == pair[1].version {
                return Err(MigrateError::DuplicateVersion {
                    version: pair[0].version,
                    first: pair[0].name.to_string(),
                    second: pair[1].name.to_string(),
                });
            }
        }
        if let Some(m) = list.iter().find(|m| m.version < 0) {
            return Err(MigrateError::FileName {
                file: m.name.to_string(),
                message: format!("version {} is negative; use 0 or more", m.version),
            });
        }
        Ok(Self { list })
    }

    /// Embedded files: `(path, contents)` pairs, versions and names taken from the file
    /// names. [`migrations!`](crate::migrations) builds the pairs with `include_str!`.
    pub fn from_files(
        files: impl IntoIterator<Item = (&'static str, &'static str)>,
    ) -> Result<Self, MigrateError> {
        let list = files
            .into_iter()
            .map(|(path, sql)| Migration::from_file(path, sql))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(list)
    }

    /// Reads every `*.sql` file in `dir` (not its subdirectories). Other files are ignored;
    /// a `.sql` file whose name has no version is an error, so a typo is not skipped silently.
    /// Reads with blocking I/O: call it at start-up.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, MigrateError> {
        let dir = dir.as_ref();
        let read_error = |source| MigrateError::Read {
            path: dir.to_path_buf(),
            source,
        };
        let mut list = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(read_error)? {
            let path = entry.map_err(read_error)?.path();
            let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !file.ends_with(".sql") || file.starts_with('.') || !path.is_file() {
                continue;
            }
            let sql = std::fs::read_to_string(&path).map_err(|source| MigrateError::Read {
                path: path.clone(),
                source,
            })?;
            list.push(Migration::from_file(file, sql)?);
        }
        Self::new(list)
    }

    /// The migrations in version order.
    #[must_use]
    pub fn as_slice(&self) -> &[Migration] {
        &self.list
    }

    /// How many migrations there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Applies the pending migrations in order, each in its own transaction, holding the
    /// advisory lock [`LOCK_KEY`] for the whole run. Refuses to run when an applied
    /// migration's checksum differs from the file's, or when a pending migration's version
    /// is lower than one already applied (give new migrations higher versions). Applied
    /// migrations unknown to this list (from a newer release) are logged and left alone.
    pub async fn run(&self, client: &mut Client) -> Result<MigrationReport, MigrateError> {
        client
            .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
            .await
            .map_err(MigrateError::query("take the migration lock"))?;
        let result = self.run_locked(client).await;
        // The lock belongs to the session; release it even after a failure, since pooled or
        // long-lived connections outlive the run. A broken connection releases it anyway.
        let unlocked = client
            .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
            .await
            .map_err(MigrateError::query("release the migration lock"));
        let report = result?;
        unlocked?;
        Ok(report)
    }

    async fn run_locked(&self, client: &mut Client) -> Result<MigrationReport, MigrateError> {
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
        let rows = client
            .query(&format!("SELECT version, name, checksum FROM {TABLE}"), &[])
            .await
            .map_err(MigrateError::query("read the table _pgauth_migrations"))?;
        let applied: BTreeMap<i64, (String, String)> = rows
            .iter()
            .map(|row| (row.get(0), (row.get(1), row.get(2))))
            .collect();
        let pending = self.plan(&applied)?;
        let mut report = MigrationReport {
            applied: Vec::new(),
            already_applied: self.list.len() - pending.len(),
        };
        for migration in pending {
            apply(client, migration).await?;
            tracing::info!(version = migration.version, name = %migration.name, "migration applied");
            report.applied.push(AppliedMigration {
                version: migration.version,
                name: migration.name.to_string(),
            });
        }
        Ok(report)
    }

    /// Checks the recorded history against this list and returns what is left to apply.
    fn plan(
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

/// `V1__name.sql` (Flyway) or `1_name.sql` / `1_name.up.sql` (sqlx) → `(1, "name")`.
fn parse_file_name(file: &str) -> Result<(i64, String), String> {
    const FORMS: &str = "name migration files V<version>__<name>.sql or <version>_<name>.sql";
    let stem = file
        .strip_suffix(".sql")
        .ok_or_else(|| format!("not a .sql file; {FORMS}"))?;
    if stem.ends_with(".down") {
        return Err(
            "down migrations are not supported; remove the file or fold it into a new migration"
                .into(),
        );
    }
    let stem = stem.strip_suffix(".up").unwrap_or(stem);
    let (digits, name) = if let Some(rest) = stem.strip_prefix(['V', 'v'])
        && rest.starts_with(|c: char| c.is_ascii_digit())
    {
        rest.split_once("__")
            .ok_or_else(|| format!("has no \"__\" between version and name; {FORMS}"))?
    } else {
        stem.split_once('_')
            .ok_or_else(|| format!("has no \"_\" between version and name; {FORMS}"))?
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("does not start with a version number; {FORMS}"));
    }
    let version = digits.parse::<i64>().map_err(|_| {
        format!("version {digits} is too large; versions are 64-bit signed integers")
    })?;
    if name.is_empty() {
        return Err(format!("has no name after the version; {FORMS}"));
    }
    Ok((version, name.to_string()))
}

/// Embeds migration files, taking each version and name from the file name
/// (`V1__create_notes.sql` or `1_create_notes.sql`). Paths are relative to the file that
/// uses the macro, as with `include_str!`. Evaluates to
/// `Result<Migrations, MigrateError>`.
///
/// ```text
/// let migrations = cloud_pg_auth::migrations!["../migrations/V1__create_notes.sql"]?;
/// ```
#[macro_export]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-postgres")))]
macro_rules! migrations {
    ($($path:literal),* $(,)?) => {
        $crate::migrate::Migrations::from_files([$(($path, include_str!($path))),*])
    };
}

/// A migration run failed. Nothing after the failing migration was applied; the failing one
/// was rolled back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    /// A migration file or directory could not be read.
    #[error("could not read {}: check the migrations directory", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file name does not follow the naming scheme.
    #[error("migration file {file:?} {message}")]
    FileName {
        /// The file name.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// Two migrations have the same version.
    #[error(
        "migrations {first:?} and {second:?} both have version {version}; give each a unique version"
    )]
    DuplicateVersion {
        /// The version.
        version: i64,
        /// One migration's name.
        first: String,
        /// The other's.
        second: String,
    },
    /// An applied migration's SQL changed since it was applied.
    #[error(
        "migration {version} ({name}) was changed after it was applied (checksum differs); restore the applied file and put the change in a new migration"
    )]
    ChecksumMismatch {
        /// The version.
        version: i64,
        /// The name.
        name: String,
    },
    /// A pending migration sorts before one that is already applied.
    #[error(
        "migration {version} ({name}) is pending but migration {latest} is already applied; give new migrations a version above {latest}"
    )]
    OutOfOrder {
        /// The pending migration's version.
        version: i64,
        /// Its name.
        name: String,
        /// The highest applied version.
        latest: i64,
    },
    /// A statement of the runner itself failed (lock, history table).
    #[error("could not {step}")]
    Query {
        /// What the runner was doing.
        step: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// A migration's SQL failed; it was rolled back.
    #[error("migration {version} ({name}) failed and was rolled back; fix its SQL")]
    Migration {
        /// The version.
        version: i64,
        /// The name.
        name: String,
        /// The driver's error (with the server's message).
        #[source]
        source: tokio_postgres::Error,
    },
}

impl MigrateError {
    fn query(step: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Self {
        move |source| Self::Query { step, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_file_names() {
        let ok: &[(&str, i64, &str)] = &[
            ("V1__create_notes.sql", 1, "create_notes"),
            ("v2__add index.sql", 2, "add index"),
            ("V010__x.sql", 10, "x"),
            ("1_create_notes.sql", 1, "create_notes"),
            (
                "20260101120000_create_notes.sql",
                20_260_101_120_000,
                "create_notes",
            ),
            ("3_with_more_parts.up.sql", 3, "with_more_parts"),
            ("V4__double__underscore.sql", 4, "double__underscore"),
        ];
        for (file, version, name) in ok {
            assert_eq!(
                parse_file_name(file),
                Ok((*version, (*name).to_string())),
                "{file}"
            );
        }
        let bad: &[(&str, &str)] = &[
            ("notes.sql", "version"),
            ("V1_create.sql", "\"__\""),
            ("1.sql", "\"_\""),
            ("1_.sql", "no name"),
            ("x1_notes.sql", "version number"),
            ("99999999999999999999_big.sql", "too large"),
            ("1_notes.down.sql", "down migrations"),
            ("1_notes.txt", ".sql"),
        ];
        for (file, expected) in bad {
            let message = parse_file_name(file).unwrap_err();
            assert!(message.contains(expected), "{file}: {message}");
        }
    }

    #[test]
    fn orders_by_version_and_rejects_duplicates() {
        let list = Migrations::from_files([
            ("m/V10__ten.sql", "select 10"),
            ("m/V2__two.sql", "select 2"),
            ("m\\1_one.sql", "select 1"),
        ])
        .unwrap();
        let versions: Vec<i64> = list.as_slice().iter().map(|m| m.version).collect();
        assert_eq!(versions, [1, 2, 10]);
        assert_eq!(list.as_slice()[0].name, "one");

        let error =
            Migrations::new([Migration::new(1, "a", ""), Migration::new(1, "b", "")]).unwrap_err();
        assert!(
            matches!(error, MigrateError::DuplicateVersion { version: 1, .. }),
            "{error}"
        );
        assert!(matches!(
            Migrations::new([Migration::new(-1, "neg", "")]),
            Err(MigrateError::FileName { .. })
        ));
    }

    #[test]
    fn checksum_ignores_line_endings_only() {
        let a = Migration::new(1, "a", "create table t (\n id int\n);\n");
        let crlf = Migration::new(1, "a", "create table t (\r\n id int\r\n);\r\n");
        let changed = Migration::new(1, "a", "create table t (\n id bigint\n);\n");
        assert_eq!(a.checksum(), crlf.checksum());
        assert_ne!(a.checksum(), changed.checksum());
        assert_eq!(a.checksum().len(), 16);
        // Fixed values: the recorded checksums must never change between releases.
        assert_eq!(Migration::new(1, "e", "").checksum(), "cbf29ce484222325");
        assert_eq!(Migration::new(1, "a", "a").checksum(), "af63dc4c8601ec8c");
    }

    fn history(entries: &[(i64, &Migration)]) -> BTreeMap<i64, (String, String)> {
        entries
            .iter()
            .map(|(v, m)| (*v, (m.name.to_string(), m.checksum())))
            .collect()
    }

    #[test]
    fn plans_pending_migrations() {
        let one = Migration::new(1, "one", "select 1");
        let two = Migration::new(2, "two", "select 2");
        let three = Migration::new(3, "three", "select 3");
        let list = Migrations::new([one.clone(), two.clone(), three.clone()]).unwrap();
        let versions = |h: &BTreeMap<_, _>| -> Vec<i64> {
            list.plan(h).unwrap().iter().map(|m| m.version).collect()
        };
        assert_eq!(versions(&history(&[])), [1, 2, 3]);
        assert_eq!(versions(&history(&[(1, &one)])), [2, 3]);
        assert_eq!(
            versions(&history(&[(1, &one), (2, &two), (3, &three)])),
            Vec::<i64>::new()
        );
        // Unknown applied versions (a newer release) are left alone.
        let four = Migration::new(4, "four", "select 4");
        assert!(
            list.plan(&history(&[(1, &one), (2, &two), (3, &three), (4, &four)]))
                .unwrap()
                .is_empty()
        );

        let edited = Migration::new(2, "two", "select 22");
        let error = list.plan(&history(&[(1, &one), (2, &edited)])).unwrap_err();
        assert!(
            matches!(error, MigrateError::ChecksumMismatch { version: 2, .. }),
            "{error}"
        );

        let error = list.plan(&history(&[(1, &one), (3, &three)])).unwrap_err();
        assert!(
            matches!(
                error,
                MigrateError::OutOfOrder {
                    version: 2,
                    latest: 3,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn reads_a_directory() {
        let dir = std::env::temp_dir().join(format!("pgauth-migrate-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("V2__second.sql"), "select 2").unwrap();
        std::fs::write(dir.join("V1__first.sql"), "select 1").unwrap();
        std::fs::write(dir.join("README.md"), "ignored").unwrap();
        std::fs::write(dir.join("sub").join("V3__nested.sql"), "ignored").unwrap();
        let list = Migrations::from_dir(&dir).unwrap();
        let names: Vec<&str> = list.as_slice().iter().map(|m| m.name.as_ref()).collect();
        assert_eq!(names, ["first", "second"]);
        assert_eq!(list.as_slice()[1].sql, "select 2");

        std::fs::write(dir.join("second.sql"), "select 2").unwrap();
        let error = Migrations::from_dir(&dir).unwrap_err();
        assert!(error.to_string().contains("\"second.sql\""), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();

        let error = Migrations::from_dir(dir.join("missing")).unwrap_err();
        assert!(matches!(error, MigrateError::Read { .. }), "{error}");
    }

    #[test]
    fn macro_embeds_files() {
        let list = crate::migrations!["../README.md"];
        assert!(matches!(list, Err(MigrateError::FileName { .. })));
        let empty = crate::migrations![].unwrap();
        assert!(empty.is_empty());
    }
}
