//! The migration engine of the tokio-postgres adapters (deadpool, bb8): unpooled connections
//! with a credential of their own, and [`Migrations`] run over them.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_postgres::Client;

use super::{MigrateError, MigrationReport, Migrations};
use crate::{Auth, AuthOptions, ConfigError, EngineStatus, PgConnector, Settings, TokenSource};

/// What an adapter's [`MigrationEngine`] hands out: the type of its connections and the
/// error its methods return. An adapter implements it on a type of its own and names the
/// engine `MigrationEngine<ThatType>` (the deadpool and bb8 adapters use their `Manager`).
pub trait Flavor {
    /// What [`MigrationEngine::connect`] returns: a tokio-postgres client, or a wrapper
    /// around one.
    type Client: Send;
    /// The adapter's error.
    type Error: From<crate::Error> + From<ConfigError> + From<MigrateError>;

    /// Wraps a new connection: its client and its spawned I/O task.
    fn client(client: Client, task: JoinHandle<()>) -> Self::Client;

    /// The tokio-postgres client of a connection [`Flavor::client`] made.
    fn as_client(client: &mut Self::Client) -> &mut Client;
}

/// Unpooled connections for migrations and admin work, with a credential of its own (its own
/// token cache, no background refresh), so it can live on a short-lived runtime without
/// touching the pooled engine's credential.
///
/// `F` is the adapter ([`Flavor`]): it decides what [`MigrationEngine::connect`] returns and
/// which error the methods return.
pub struct MigrationEngine<F> {
    connector: PgConnector,
    flavor: PhantomData<fn() -> F>,
}

impl<F: Flavor> MigrationEngine<F> {
    /// An engine from the process environment.
    pub async fn from_env() -> Result<Self, F::Error> {
        Self::from_settings(Settings::from_env()?).await
    }

    /// An engine from settings.
    pub async fn from_settings(settings: Settings) -> Result<Self, F::Error> {
        Self::builder(settings).build().await
    }

    /// An engine from a `postgres://` URL.
    pub async fn from_url(url: &str) -> Result<Self, F::Error> {
        Self::from_settings(Settings::from_url(url)?).await
    }

    /// A builder.
    pub fn builder(settings: Settings) -> MigrationEngineBuilder<F> {
        MigrationEngineBuilder {
            settings,
            auth_options: AuthOptions::default(),
            token_source: None,
            flavor: PhantomData,
        }
    }

    /// Opens a new connection with a fresh token. It closes when dropped.
    pub async fn connect(&self) -> Result<F::Client, F::Error> {
        let (client, task) = self.connector.connect().await?;
        Ok(F::client(client, task))
    }

    /// Applies the pending migrations over a new connection (see
    /// [`Migrations::run`]: one transaction each, an advisory lock around the run).
    pub async fn run_migrations(
        &self,
        migrations: &Migrations,
    ) -> Result<MigrationReport, F::Error> {
        let mut client = self.connect().await?;
        Ok(migrations.run(F::as_client(&mut client)).await?)
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

    /// Drops the credential. Later connects fail with the adapter's `Error::Disposed`.
    /// Idempotent.
    pub async fn dispose(&self) {
        self.connector.dispose().await;
    }
}

impl<F> fmt::Debug for MigrationEngine<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MigrationEngine")
            .field("connector", &self.connector)
            .finish()
    }
}

/// Builds a [`MigrationEngine`]; from [`MigrationEngine::builder`].
#[must_use]
pub struct MigrationEngineBuilder<F> {
    settings: Settings,
    auth_options: AuthOptions,
    token_source: Option<Arc<dyn TokenSource>>,
    flavor: PhantomData<fn() -> F>,
}

impl<F: Flavor> MigrationEngineBuilder<F> {
    /// The credential's options (clock). Background refresh stays off whatever they say: the
    /// engine is short-lived and may run on a runtime that ends soon. The refresh policy and
    /// the fallback password come from the settings.
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
    pub async fn build(self) -> Result<MigrationEngine<F>, F::Error> {
        let options = self.auth_options.background_refresh(false);
        Ok(MigrationEngine {
            connector: PgConnector::build(&self.settings, self.token_source, options).await?,
            flavor: PhantomData,
        })
    }
}

impl<F> fmt::Debug for MigrationEngineBuilder<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MigrationEngineBuilder")
            .field("settings", &self.settings)
            .field("auth_options", &self.auth_options)
            .field("token_source", &self.token_source)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::testing::{FakeSource, offline_settings};

    /// A flavor of plain clients, with the core's error widened by migration errors.
    struct Plain;

    #[derive(Debug)]
    enum PlainError {
        Auth(crate::Error),
        Migrate(MigrateError),
    }

    impl From<crate::Error> for PlainError {
        fn from(error: crate::Error) -> Self {
            Self::Auth(error)
        }
    }

    impl From<ConfigError> for PlainError {
        fn from(error: ConfigError) -> Self {
            Self::Auth(error.into())
        }
    }

    impl From<MigrateError> for PlainError {
        fn from(error: MigrateError) -> Self {
            Self::Migrate(error)
        }
    }

    impl Flavor for Plain {
        type Client = Client;
        type Error = PlainError;

        fn client(client: Client, _task: JoinHandle<()>) -> Client {
            client
        }

        fn as_client(client: &mut Client) -> &mut Client {
            client
        }
    }

    #[tokio::test]
    async fn a_migration_engine_owns_its_credential_without_a_refresher() {
        let source = FakeSource::new(Arc::new(crate::clock::SystemClock), None);
        let dropped = source.drop_flag();
        let engine = MigrationEngine::<Plain>::builder(offline_settings())
            .token_source(source)
            .auth_options(AuthOptions::default().background_refresh(true))
            .build()
            .await
            .unwrap();
        assert!(!engine.auth().refresher_running());
        assert!(!engine.status().auth.background_refresh);
        assert!(engine.status().pool.is_none());
        assert_eq!(engine.auth().source_info().label(), "callback fake");
        let text = format!("{engine:?}");
        assert!(
            text.starts_with("MigrationEngine { connector: PgConnector"),
            "{text}"
        );
        engine.dispose().await;
        assert!(dropped.load(Ordering::SeqCst));
        assert!(matches!(
            engine.connect().await,
            Err(PlainError::Auth(crate::Error::Disposed))
        ));
        assert!(matches!(
            engine.run_migrations(&Migrations::new([]).unwrap()).await,
            Err(PlainError::Auth(crate::Error::Disposed))
        ));
    }

    #[tokio::test]
    async fn settings_without_a_method_are_refused_with_the_setting_to_change() {
        let Err(PlainError::Auth(crate::Error::Config(error))) =
            MigrationEngine::<Plain>::from_settings(offline_settings()).await
        else {
            panic!("settings without a method were accepted");
        };
        assert_eq!(error.setting(), "PGAUTH_METHOD");
        let Err(PlainError::Auth(crate::Error::Config(error))) =
            MigrationEngine::<Plain>::from_url("mysql://db").await
        else {
            panic!("a non-postgres URL was accepted");
        };
        assert_eq!(error.setting(), "url");
        // A migration failure keeps its own type in the adapter's error.
        let error = PlainError::from(MigrateError::DuplicateVersion {
            version: 1,
            first: "a".into(),
            second: "b".into(),
        });
        assert!(matches!(
            error,
            PlainError::Migrate(MigrateError::DuplicateVersion { version: 1, .. })
        ));
    }
}
