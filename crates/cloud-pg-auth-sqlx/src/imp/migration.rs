//! The migration engine: unpooled sqlx connections with their own credential, and sqlx's
//! migrations run over them.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cloud_pg_auth::{Auth, AuthOptions, EngineStatus, Settings, TokenSource};
use sqlx::Connection as _;
use sqlx::migrate::{Migrate as _, Migrator};
use sqlx::postgres::PgConnection;

use super::engine::custom_source_settings;
use super::error::is_auth_failure;
use super::target::Target;
use super::{Error, compat, sqlx};

/// Opens connections for migrations and admin work, with a credential of its own (no
/// background refresh: each connection fetches a token if the cached one is not valid).
///
/// Safe to create, use and drop inside a short-lived tokio runtime of its own: it shares
/// nothing with any [`PooledEngine`](super::PooledEngine).
pub struct MigrationEngine {
    auth: Auth,
    target: Target,
    opened: AtomicU64,
    auth_retries: AtomicU64,
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

    /// Opens a new connection with a fresh token (retried once with a new token if the server
    /// refuses the login). It is the caller's; nothing pools it.
    pub async fn connect(&self) -> Result<PgConnection, Error> {
        let mut retried = false;
        loop {
            let token = self.auth.token().await?;
            // Again on each connect: the engine may be used on another runtime than the one
            // that built it.
            self.target.ensure_relay()?;
            let options = self.target.options_for(&token)?;
            match PgConnection::connect_with(&options).await {
                Ok(connection) => {
                    self.opened.fetch_add(1, Ordering::Relaxed);
                    return Ok(connection);
                }
                Err(error) if is_auth_failure(&error) && !retried => {
                    retried = true;
                    self.auth_retries.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(target_db = %self.target.label(), "login refused; retrying once with a new token");
                    self.auth.invalidate(token.secret());
                }
                Err(error) => return Err(self.target.login_error(error, retried)),
            }
        }
    }

    /// Applies the pending migrations of `migrator` (`Migrator::new(path)` or
    /// `sqlx::migrate!()`) on a new connection and returns the versions applied by this call
    /// (empty when none was pending). Holds sqlx's advisory lock throughout, so instances
    /// starting together apply each migration once.
    pub async fn run_migrations(&self, migrator: &Migrator) -> Result<Vec<i64>, Error> {
        let mut connection = self.connect().await?;
        // sqlx's lock is reentrant per session: taking it here as well makes the before and
        // after lists exact.
        connection.lock().await?;
        let result = apply(&mut connection, migrator).await;
        let unlocked = connection.unlock().await;
        let applied = result?;
        unlocked?;
        let _ = connection.close().await;
        Ok(applied)
    }

    /// The credential's status and connection counters (no pool figures).
    #[must_use]
    pub fn status(&self) -> EngineStatus {
        EngineStatus::new(
            self.auth.status(),
            self.opened.load(Ordering::Relaxed),
            self.auth_retries.load(Ordering::Relaxed),
            None,
        )
    }

    /// The engine's credential.
    #[must_use]
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// Stops the relay (removing its socket directory) and drops the credential. Later
    /// connects fail with [`Error::Disposed`]. Idempotent.
    pub async fn dispose(&self) {
        self.target.stop_relay().await;
        self.auth.dispose().await;
    }

    #[cfg(test)]
    pub(crate) fn target(&self) -> &Target {
        &self.target
    }
}

async fn apply(connection: &mut PgConnection, migrator: &Migrator) -> Result<Vec<i64>, Error> {
    // Asked rather than created here, so sqlx's own `CREATE TABLE IF NOT EXISTS` stays quiet.
    let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(compat::migrations_table(migrator))
        .fetch_one(&mut *connection)
        .await?;
    let before: HashSet<i64> = if exists {
        compat::applied_migrations(connection, migrator)
            .await?
            .into_iter()
            .map(|m| m.version)
            .collect()
    } else {
        HashSet::new()
    };
    compat::run_migrations(migrator, connection).await?;
    let mut applied: Vec<i64> = compat::applied_migrations(connection, migrator)
        .await?
        .into_iter()
        .map(|m| m.version)
        .filter(|v| !before.contains(v))
        .collect();
    applied.sort_unstable();
    Ok(applied)
}

impl fmt::Debug for MigrationEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MigrationEngine")
            .field("target", &self.target.label())
            .field("auth", &self.auth)
            .field("connections_opened", &self.opened.load(Ordering::Relaxed))
            .field("auth_retries", &self.auth_retries.load(Ordering::Relaxed))
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
        let settings = custom_source_settings(self.settings, self.token_source.is_some());
        let target = Target::from_settings(&settings)?;
        target.ensure_relay()?;
        // A refresher would live on the runtime that builds the engine, which is often a
        // throwaway one; each connect fetches a token when needed instead.
        let options = self.auth_options.background_refresh(false);
        let auth = Auth::build(&settings, self.token_source, options).await?;
        Ok(MigrationEngine {
            auth,
            target,
            opened: AtomicU64::new(0),
            auth_retries: AtomicU64::new(0),
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
