use std::fmt;
use std::sync::Arc;

use cloud_pg_auth::migrate::{MigrationReport, Migrations};
use cloud_pg_auth::{Auth, AuthOptions, EngineStatus, PgConnector, Settings, TokenSource};
use tokio_postgres::Client;

use crate::Error;
use crate::engine::connector;

/// Unpooled connections for migrations and admin work, with a credential of its own (its own
/// token cache, no background refresh), so it can live on a short-lived runtime without
/// touching the pooled engine's credential.
pub struct MigrationEngine {
    connector: PgConnector,
}

impl MigrationEngine {
    /// An engine from the process environment.
    pub async fn from_env() -> Result<Self, Error> {
        Self::from_settings(Settings::from_env()?).await
    }

    /// An engine from settings.
    pub async fn from_settings(settings: Settings) -> Result<Self, Error> {
        Self::builder(settings).build().await
    }

    /// An engine from a `postgres://` URL.
    pub async fn from_url(url: &str) -> Result<Self, Error> {
        Self::from_settings(Settings::from_url(url)?).await
    }

    /// A builder.
    pub fn builder(settings: Settings) -> MigrationEngineBuilder {
        MigrationEngineBuilder {
            settings,
            auth_options: AuthOptions::default(),
            token_source: None,
        }
    }

    /// Opens a new connection with a fresh token. It closes when the client is dropped.
    pub async fn connect(&self) -> Result<Client, Error> {
        let (client, _task) = self.connector.connect().await?;
        Ok(client)
    }

    /// Applies the pending migrations over a new connection (see
    /// [`Migrations::run`]: one transaction each, an advisory lock around the run).
    pub async fn run_migrations(&self, migrations: &Migrations) -> Result<MigrationReport, Error> {
        let mut client = self.connect().await?;
        Ok(migrations.run(&mut client).await?)
    }

    /// The credential.
    #[must_use]
    pub fn auth(&self) -> &Auth {
        self.connector.auth()
    }

    /// Credential status and connection counters (no pool figures).
    #[must_use]
    pub fn status(&self) -> EngineStatus {
        self.connector.engine_status(None)
    }

    /// Drops the credential. Later connects fail with [`Error::Disposed`]. Idempotent.
    pub async fn dispose(&self) {
        self.connector.dispose().await;
    }
}

impl fmt::Debug for MigrationEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MigrationEngine")
            .field("connector", &self.connector)
            .finish()
    }
}

/// Builds a [`MigrationEngine`]; from [`MigrationEngine::builder`].
#[must_use]
pub struct MigrationEngineBuilder {
    settings: Settings,
    auth_options: AuthOptions,
    token_source: Option<Arc<dyn TokenSource>>,
}

impl MigrationEngineBuilder {
    /// The credential's options. Background refresh stays off whatever they say: the engine
    /// is short-lived and may run on a runtime that ends soon.
    pub fn auth_options(mut self, options: AuthOptions) -> Self {
        self.auth_options = options;
        self
    }

    /// Uses `source` for tokens instead of the one the settings name.
    pub fn token_source(mut self, source: Arc<dyn TokenSource>) -> Self {
        self.token_source = Some(source);
        self
    }

    /// Builds the credential. Opens no connection yet.
    pub async fn build(self) -> Result<MigrationEngine, Error> {
        let options = self.auth_options.background_refresh(false);
        Ok(MigrationEngine {
            connector: connector(self.settings, self.token_source, options).await?,
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
