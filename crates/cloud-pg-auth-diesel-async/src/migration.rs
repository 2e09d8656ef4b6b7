//! The migration engine: unpooled connections with their own credential, and diesel's
//! migrations run over them.

use std::fmt;
use std::sync::Arc;

use cloud_pg_auth::{Auth, AuthOptions, EngineStatus, PgConnector, Settings, TokenSource};
use diesel::RunQueryDsl;
use diesel::migration::MigrationSource;
use diesel::pg::Pg;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_migrations::MigrationHarness;

use crate::Error;
use crate::connect::open;

/// The advisory lock held while migrations run, so that several instances starting at once
/// apply each migration once (diesel's harness itself does not lock).
const MIGRATION_LOCK: i64 = 0x7067_6175_7468_6d69; // "pgauthmi"

/// Opens connections for migrations and admin work, with a credential of its own (no
/// background refresh: each connection fetches a token if the cached one is not valid).
///
/// Safe to create, use and drop inside a short-lived tokio runtime of its own (current-thread
/// or multi-thread): it shares nothing with any [`PooledEngine`](crate::PooledEngine).
pub struct MigrationEngine {
    connector: PgConnector,
}

impl MigrationEngine {
    /// An engine configured from the environment ([`Settings::from_env`]).
    pub async fn from_env() -> Result<Self, Error> {
        Self::from_settings(Settings::from_env()?).await
    }

    /// An engine for `settings`.
    pub async fn from_settings(settings: Settings) -> Result<Self, Error> {
        Self::builder(settings).build().await
    }

    /// An engine for a `postgres://` URL ([`Settings::from_url`]).
    pub async fn from_url(url: &str) -> Result<Self, Error> {
        Self::from_settings(Settings::from_url(url)?).await
    }

    /// A builder, to pass a token source or credential options.
    pub fn builder(settings: Settings) -> MigrationEngineBuilder {
        MigrationEngineBuilder {
            settings,
            auth_options: AuthOptions::default(),
            token_source: None,
        }
    }

    /// Opens a new connection with a fresh token. It is the caller's; nothing pools it.
    pub async fn connect(&self) -> Result<AsyncPgConnection, Error> {
        open(&self.connector).await
    }

    /// Applies the pending migrations of `source` (usually the constant made by
    /// `diesel_migrations::embed_migrations!`) on a new connection, under an advisory lock,
    /// and returns the versions applied by this call (empty when none was pending).
    ///
    /// diesel's migration harness is synchronous: it runs on tokio's blocking pool through
    /// diesel-async's `AsyncConnectionWrapper`, which works in current-thread and
    /// multi-thread runtimes alike (diesel-async's `AsyncMigrationHarness` needs
    /// `block_in_place`, which panics in a current-thread runtime).
    pub async fn run_migrations<S>(&self, source: S) -> Result<Vec<String>, Error>
    where
        S: MigrationSource<Pg> + Send + 'static,
    {
        let connection = self.connect().await?;
        let run = tokio::task::spawn_blocking(move || run_locked(connection, source));
        match run.await {
            Ok(result) => result,
            Err(join) => Err(Error::Migrate(Box::new(join))),
        }
    }

    /// The credential's status and connection counters (no pool figures).
    #[must_use]
    pub fn status(&self) -> EngineStatus {
        self.connector.engine_status(None)
    }

    /// The engine's credential.
    #[must_use]
    pub fn auth(&self) -> &Auth {
        self.connector.auth()
    }

    /// Drops the credential. Later connects fail with [`Error::Disposed`]. Idempotent.
    pub async fn dispose(&self) {
        self.connector.dispose().await;
    }
}

fn run_locked<S>(connection: AsyncPgConnection, source: S) -> Result<Vec<String>, Error>
where
    S: MigrationSource<Pg>,
{
    let mut connection: AsyncConnectionWrapper<AsyncPgConnection> =
        AsyncConnectionWrapper::from(connection);
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .execute(&mut connection)?;
    let applied = connection
        .run_pending_migrations(source)
        .map(|versions| versions.iter().map(ToString::to_string).collect())
        .map_err(Error::Migrate);
    // The lock also ends with the session; unlock anyway so a caller keeping the connection
    // alive longer cannot block others.
    let unlocked = diesel::sql_query(format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
        .execute(&mut connection);
    let applied = applied?;
    unlocked?;
    Ok(applied)
}

impl fmt::Debug for MigrationEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MigrationEngine")
            .field("target", &self.connector.target())
            .field("auth", self.connector.auth())
            .field("stats", &self.connector.stats())
            .finish()
    }
}

/// Options of a [`MigrationEngine`].
#[must_use]
pub struct MigrationEngineBuilder {
    settings: Settings,
    auth_options: AuthOptions,
    token_source: Option<Arc<dyn TokenSource>>,
}

impl MigrationEngineBuilder {
    /// The credential's options (clock). Background refresh is always off for migrations.
    pub fn auth_options(mut self, options: AuthOptions) -> Self {
        self.auth_options = options;
        self
    }

    /// Takes tokens from `source` instead of the source the settings name.
    pub fn token_source(mut self, source: Arc<dyn TokenSource>) -> Self {
        self.token_source = Some(source);
        self
    }

    /// Builds the credential. No connection is opened yet.
    pub async fn build(self) -> Result<MigrationEngine, Error> {
        // A refresher would live on the runtime that builds the engine, which is often a
        // throwaway one; each connect fetches a token when needed instead.
        let options = self.auth_options.background_refresh(false);
        Ok(MigrationEngine {
            connector: PgConnector::build(&self.settings, self.token_source, options).await?,
        })
    }
}

impl fmt::Debug for MigrationEngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MigrationEngineBuilder")
            .field("settings", &self.settings)
            .field("auth_options", &self.auth_options)
            .field("token_source", &self.token_source)
            .finish()
    }
}
