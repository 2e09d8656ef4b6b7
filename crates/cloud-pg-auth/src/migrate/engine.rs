//! The migration engine of the tokio-postgres adapters (deadpool, bb8, diesel-async):
//! unpooled connections with a credential of their own, and a migration runner over them.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;

#[cfg(test)]
use super::Migrations;
use super::{MigrateError, MigrationReport};
use crate::engine::{CredentialConfig, Lifecycle};
use crate::{Auth, ConfigError, EngineStatus, PgConnector, Settings};

/// What an adapter's [`MigrationEngine`] hands out: the type of its connections and the
/// error its methods return. An adapter implements it on a type of its own and names the
/// engine `MigrationEngine<ThatType>` (the deadpool and bb8 adapters use their `Manager`).
pub trait Driver: 'static {
    /// What [`MigrationEngine::connect`] returns: a tokio-postgres client, or a driver's
    /// connection built on one.
    type Connection: Send;
    /// The adapter's error.
    type Error: From<crate::Error> + From<ConfigError> + From<MigrateError> + Send;

    /// Opens a connection through `connector` (a fresh token, one retry on a refusal).
    fn open(
        connector: &PgConnector,
    ) -> impl Future<Output = Result<Self::Connection, Self::Error>> + Send;
}

/// How an adapter runs migrations of kind `S` over one of its connections: the core's
/// [`Migrations`](super::Migrations) for deadpool and bb8, diesel's `MigrationSource` for diesel-async. Every
/// runner reports with the same [`MigrationReport`].
pub trait Runner<S>: Driver {
    /// Applies the pending migrations of `source` over `connection`, under the runner's
    /// lock, and reports what it did.
    fn run(
        connection: Self::Connection,
        source: S,
    ) -> impl Future<Output = Result<MigrationReport, Self::Error>> + Send;
}

/// Unpooled connections for migrations and admin work, with a credential of its own (its own
/// token cache, no background refresh), so it can live on a short-lived runtime without
/// touching the pooled engine's credential. Clones share the credential; dropping the last
/// one drops it (see [`Lifecycle`]).
///
/// `F` is the adapter ([`Driver`]): it decides what [`MigrationEngine::connect`] returns and
/// which error the methods return.
pub struct MigrationEngine<F> {
    connector: PgConnector,
    lifecycle: Lifecycle,
    driver: PhantomData<fn() -> F>,
}

impl<F> Clone for MigrationEngine<F> {
    fn clone(&self) -> Self {
        Self {
            connector: self.connector.clone(),
            lifecycle: self.lifecycle.clone(),
            driver: PhantomData,
        }
    }
}

impl<F: Driver> MigrationEngine<F> {
    crate::engine_constructors!(F::Error);

    /// A builder. The engine logs in with the settings' migration identity
    /// ([`Settings::for_migrations`]): `PGAUTH_MIGRATION_USER` and, on Azure,
    /// `PGAUTH_MIGRATION_AZURE_CLIENT_ID`, when set.
    pub fn builder(settings: Settings) -> MigrationEngineBuilder<F> {
        MigrationEngineBuilder {
            config: CredentialConfig::for_migrations(settings),
            driver: PhantomData,
        }
    }

    /// Opens a new connection with a fresh token. It closes when dropped.
    pub async fn connect(&self) -> Result<F::Connection, F::Error> {
        self.lifecycle.check_open()?;
        F::open(&self.connector).await
    }

    /// Applies the pending migrations of `source` over a new connection and reports what it
    /// did (the same [`MigrationReport`] in every adapter).
    pub async fn run_migrations<S>(&self, source: S) -> Result<MigrationReport, F::Error>
    where
        F: Runner<S>,
    {
        let connection = self.connect().await?;
        F::run(connection, source).await
    }

    /// The credential.
    #[must_use]
    pub fn auth(&self) -> &Auth {
        self.lifecycle.auth()
    }

    /// Credential status and connection counters (no pool figures).
    #[must_use]
    pub fn status(&self) -> EngineStatus {
        self.connector.engine_status(None)
    }

    /// Drops the credential. Later connects fail with the adapter's `Error::Disposed`.
    /// Connections already opened stay open until dropped. Idempotent.
    pub async fn dispose(&self) {
        self.lifecycle.dispose(|| async {}).await;
    }

    /// Whether [`MigrationEngine::dispose`] ran.
    #[must_use]
    pub fn is_disposed(&self) -> bool {
        self.lifecycle.is_disposed()
    }
}

impl<F> fmt::Debug for MigrationEngine<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MigrationEngine")
            .field("connector", &self.connector)
            .field("disposed", &self.lifecycle.is_disposed())
            .finish()
    }
}

/// Builds a [`MigrationEngine`]; from [`MigrationEngine::builder`].
#[must_use]
pub struct MigrationEngineBuilder<F> {
    config: CredentialConfig,
    driver: PhantomData<fn() -> F>,
}

impl<F: Driver> MigrationEngineBuilder<F> {
    crate::credential_builder_methods!(config);

    /// Builds the credential. Opens no connection yet.
    pub async fn build(self) -> Result<MigrationEngine<F>, F::Error> {
        let mut config = self.config;
        config.disable_background_refresh();
        let connector = config.build_connector().await?;
        let lifecycle = Lifecycle::new(connector.auth().clone(), std::time::Duration::ZERO);
        Ok(MigrationEngine {
            connector,
            lifecycle,
            driver: PhantomData,
        })
    }
}

impl<F> fmt::Debug for MigrationEngineBuilder<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MigrationEngineBuilder")
            .field("config", &self.config)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use std::sync::Arc;

    use super::*;
    use crate::AuthOptions;
    use crate::testing::{FakeSource, offline_settings};

    /// A driver of plain clients, with the core's error widened by migration errors.
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

    impl Driver for Plain {
        type Connection = tokio_postgres::Client;
        type Error = PlainError;

        async fn open(connector: &PgConnector) -> Result<Self::Connection, PlainError> {
            Ok(connector.connect().await?.0)
        }
    }

    impl Runner<&Migrations> for Plain {
        async fn run(
            mut client: tokio_postgres::Client,
            migrations: &Migrations,
        ) -> Result<MigrationReport, PlainError> {
            Ok(migrations.run(&mut client).await?)
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
