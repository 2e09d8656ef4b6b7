//! For adapter authors: what every pooled and migration engine shares, written once.
//!
//! An adapter crate (deadpool, bb8, diesel-async, sqlx) keeps only what its pool needs and
//! takes the rest from here:
//!
//! - [`PoolConfig`] and [`CredentialConfig`]: the builder state every engine has (settings,
//!   pool size, lifetimes, timeouts, the credential's options, a custom token source) and its
//!   checks, with [`pool_builder_methods!`](crate::pool_builder_methods) and
//!   [`credential_builder_methods!`](crate::credential_builder_methods) giving each adapter's
//!   builders the same method names.
//! - [`Lifecycle`]: the engine's ownership of its credential. Engines are `Clone`; when the
//!   last engine handle goes, the refresher stops and the credential is dropped, even while
//!   clones of the pool or of the [`Auth`](crate::Auth) live on. [`Lifecycle::dispose`] is the
//!   dispose contract: close the pool to new checkouts, stop the refresher, drop the
//!   credential, then wait for checked-out connections at most the configured bound.
//! - [`MigrationReport`]: what every migration engine's `run_migrations` returns, whatever
//!   runner underlies it; [`HistoryPermissionError`]: what every runner says when another
//!   role owns the migration history.
//!
//! Logins themselves go through [`crate::login`].

mod config;
mod history_permission;
mod lifecycle;
mod macros;
mod report;

/// An error with its causes on one line, without repeats: for logs, status pages and the
/// messages an adapter builds from a driver's error.
pub use crate::error::chain_text;
pub use config::{CredentialConfig, PoolConfig};
// Here rather than in `migrate` (which needs tokio-postgres) so every runner, sqlx's too,
// says it the same way.
pub use history_permission::{
    HISTORY_OWNER_QUERY, HistoryOwner, HistoryPermissionError, INSUFFICIENT_PRIVILEGE,
    history_permission_message,
};
pub use lifecycle::{Lifecycle, LifecycleWatch, connections_returned};
pub use report::{AppliedMigration, MigrationReport};

use std::time::Duration;

/// The default pool size.
pub const DEFAULT_MAX_SIZE: usize = 10;
/// The default max connection lifetime: 55 minutes, as hygiene (the server checks a token only
/// at login, so it does not bound a session's life).
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(55 * 60);
/// The default time a checkout may take.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `dispose()` waits, by default, for checked-out connections to come back before
/// it returns anyway (they close when returned). Shorter than the 30-second grace period a
/// Kubernetes pod gets by default.
pub const DEFAULT_DISPOSE_TIMEOUT: Duration = Duration::from_secs(10);
