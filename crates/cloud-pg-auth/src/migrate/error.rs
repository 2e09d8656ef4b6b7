//! [`MigrateError`]: what can go wrong reading or running migrations, with what to do.

use std::path::PathBuf;

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
    /// The server refused the run (SQLSTATE 42501) and the history table belongs to another
    /// role than the one logged in: the message names both and the fix.
    #[error(transparent)]
    HistoryPermission(#[from] super::HistoryPermissionError),
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
    pub(super) fn query(step: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Self {
        move |source| Self::Query { step, source }
    }

    /// The SQLSTATE the server answered a runner's statement or a migration with.
    pub(super) fn sqlstate(&self) -> Option<&str> {
        match self {
            Self::Query { source, .. } | Self::Migration { source, .. } => {
                source.code().map(tokio_postgres::error::SqlState::code)
            }
            _ => None,
        }
    }
}
