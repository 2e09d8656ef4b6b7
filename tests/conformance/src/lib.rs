//! The cross-adapter conformance suite: one scenario list, written once, run against every
//! adapter through the [`Adapter`] trait, so no adapter can silently differ.
//!
//! Each adapter has one test file in `tests/` that implements [`Adapter`] and calls
//! [`conformance_tests!`](crate::conformance_tests) (added with the scenarios).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cloud_pg_auth::{AuthOptions, BoxError, EngineStatus, Settings, TokenSource};

/// Options every adapter's pooled engine accepts in the scenarios.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The pool's maximum size.
    pub max_size: usize,
    /// The credential's options (clock, background refresh).
    pub auth: AuthOptions,
    /// How long a checkout may wait for a connection.
    pub connection_timeout: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_size: 10,
            auth: AuthOptions::default(),
            connection_timeout: Duration::from_secs(10),
        }
    }
}

/// One adapter as the scenarios see it. Errors are boxed so scenarios can read their chains.
#[async_trait]
pub trait Adapter: Send + Sync + 'static {
    /// `deadpool`, `bb8`, `diesel-async` or `sqlx`.
    const NAME: &'static str;
    /// The adapter's pooled engine.
    type Pooled: Send + Sync + 'static;
    /// The adapter's migration engine.
    type Migration: Send + Sync + 'static;

    /// A pooled engine built from settings, with its own credential.
    async fn pooled(settings: Settings, options: EngineOptions) -> Result<Self::Pooled, BoxError>;
    /// A pooled engine over a caller-supplied token source.
    async fn pooled_with_source(
        settings: Settings,
        source: Arc<dyn TokenSource>,
        options: EngineOptions,
    ) -> Result<Self::Pooled, BoxError>;
    /// Checks out a connection (reused or new) and returns `SELECT current_user`.
    async fn current_user(engine: &Self::Pooled) -> Result<String, BoxError>;
    /// Checks out a connection that the pool opens for this call, returns `SELECT
    /// current_user` and discards the connection, so the next call opens another.
    async fn current_user_on_new_connection(engine: &Self::Pooled) -> Result<String, BoxError>;
    /// The engine's status.
    fn status(engine: &Self::Pooled) -> EngineStatus;
    /// `format!("{engine:?}")`.
    fn debug(engine: &Self::Pooled) -> String;
    /// Closes the pool, stops the refresher and drops the credential.
    async fn dispose(engine: Self::Pooled);

    /// A migration engine built from settings, with its own credential.
    async fn migration(settings: Settings) -> Result<Self::Migration, BoxError>;
    /// Runs the adapter's conformance migrations (they create the table `conformance_items`);
    /// returns how many were applied by this call.
    async fn migrate(engine: &Self::Migration) -> Result<usize, BoxError>;
    /// The migration engine's status.
    fn migration_status(engine: &Self::Migration) -> EngineStatus;
    /// Drops the migration engine's credential.
    async fn dispose_migration(engine: Self::Migration);
}
