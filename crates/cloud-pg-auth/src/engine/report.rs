//! What every migration engine's `run_migrations` returns.

use std::time::Duration;

/// A migration a run applied.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AppliedMigration {
    /// Its version as the runner names it: a number for the core's runner and sqlx, diesel's
    /// version string (`2024-01-01-000000`, `00000000000001`) for diesel.
    pub version: String,
    /// Its name (the description after the version).
    pub name: String,
    /// How long applying it took.
    pub duration: Duration,
}

impl AppliedMigration {
    /// A migration applied in `duration`.
    #[must_use]
    pub fn new(version: impl Into<String>, name: impl Into<String>, duration: Duration) -> Self {
        Self {
            version: version.into(),
            name: name.into(),
            duration,
        }
    }
}

/// What a migration run did; the same type from every adapter's migration engine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationReport {
    /// The migrations this run applied, in order.
    pub applied: Vec<AppliedMigration>,
    /// How many of the known migrations were applied before this run.
    pub already_applied: usize,
    /// How long the whole run took, waiting for the migration lock included.
    pub duration: Duration,
}

impl MigrationReport {
    /// A report of `applied` after `already_applied` earlier ones, in `duration`.
    #[must_use]
    pub fn new(applied: Vec<AppliedMigration>, already_applied: usize, duration: Duration) -> Self {
        Self {
            applied,
            already_applied,
            duration,
        }
    }

    /// The versions this run applied, in order.
    #[must_use]
    pub fn applied_versions(&self) -> Vec<&str> {
        self.applied.iter().map(|m| m.version.as_str()).collect()
    }
}
