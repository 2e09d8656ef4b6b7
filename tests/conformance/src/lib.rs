//! The cross-adapter conformance suite: one scenario list, written once, run against every
//! adapter through the [`Adapter`] trait, so no adapter can silently differ.
//!
//! The [`Adapter`] impls live in `src/adapters/`; each adapter has one test file in `tests/`
//! that calls [`conformance_tests!`](crate::conformance_tests) with its impl.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cloud_pg_auth::engine::{
    DEFAULT_CONNECTION_TIMEOUT, DEFAULT_DISPOSE_TIMEOUT, DEFAULT_MAX_LIFETIME, DEFAULT_MAX_SIZE,
    MigrationReport,
};
use cloud_pg_auth::{AuthOptions, BoxError, EngineStatus, Settings, TokenSource};

/// Options every adapter's pooled engine accepts in the scenarios: the builder methods every
/// adapter shares (`pool_builder_methods!`), so each adapter applies them the same way.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The pool's maximum size.
    pub max_size: usize,
    /// Connections older than this are replaced (`None`: kept).
    pub max_lifetime: Option<Duration>,
    /// How long a checkout may wait for a connection.
    pub connection_timeout: Duration,
    /// How long `dispose()` waits for checked-out connections.
    pub dispose_timeout: Duration,
    /// The credential's options (clock, background refresh).
    pub auth: AuthOptions,
    /// Tokens from this source instead of the one the settings name.
    pub token_source: Option<Arc<dyn TokenSource>>,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_size: DEFAULT_MAX_SIZE,
            max_lifetime: Some(DEFAULT_MAX_LIFETIME),
            // Shorter than the default: a scenario that fails should fail soon.
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT.min(Duration::from_secs(10)),
            dispose_timeout: DEFAULT_DISPOSE_TIMEOUT,
            auth: AuthOptions::default(),
            token_source: None,
        }
    }
}

/// One adapter as the scenarios see it: the surface every adapter shares (issue 12), so a
/// scenario is written once. Errors are boxed so scenarios can read their chains.
#[async_trait]
pub trait Adapter: Send + Sync + 'static {
    /// `deadpool`, `bb8`, `diesel-async`, `sqlx` (sqlx 0.9) or `sqlx-0.8`.
    const NAME: &'static str;
    /// Whether a checkout straight from the pool reports a failed login only as the pool's
    /// timeout (bb8 retries failed connects until its connection timeout and keeps the error
    /// to its error sink), rather than as the login's error.
    const POOL_HIDES_LOGIN_ERRORS: bool = false;
    /// The adapter's pooled engine; clones share the pool and the credential.
    type Pooled: Clone + Send + Sync + 'static;
    /// The pool under the engine, as `engine.pool()` hands it out.
    type Pool: Send + Sync + 'static;
    /// The adapter's migration engine.
    type Migration: Send + Sync + 'static;
    /// A connection checked out of the pool and kept across calls.
    type Held: Send + 'static;

    /// A pooled engine built with `options` (checked by the builder), with its own credential.
    async fn pooled(settings: Settings, options: EngineOptions) -> Result<Self::Pooled, BoxError>;
    /// Checks out a connection (reused or new) and returns `SELECT current_user`.
    async fn current_user(engine: &Self::Pooled) -> Result<String, BoxError>;
    /// Checks out a connection and returns a server setting (`SHOW name`, as
    /// `current_setting(name)`): what the session was given at login.
    async fn show(engine: &Self::Pooled, name: &str) -> Result<String, BoxError>;
    /// Checks out a connection that the pool opens for this call, returns `SELECT
    /// current_user` and discards the connection, so the next call opens another.
    async fn current_user_on_new_connection(engine: &Self::Pooled) -> Result<String, BoxError>;
    /// Checks out a connection to keep (returned to the pool when dropped).
    async fn hold(engine: &Self::Pooled) -> Result<Self::Held, BoxError>;
    /// `SELECT 1` on a held connection: one round trip once the connection has prepared the
    /// statement (the first call prepares it).
    async fn select_one(held: &mut Self::Held) -> Result<(), BoxError>;
    /// A clone of the engine's pool (`engine.pool().clone()`).
    fn pool(engine: &Self::Pooled) -> Self::Pool;
    /// Checks out a connection straight from a pool clone and returns `SELECT current_user`.
    async fn current_user_through_pool(pool: &Self::Pool) -> Result<String, BoxError>;
    /// The engine's status.
    fn status(engine: &Self::Pooled) -> EngineStatus;
    /// `format!("{engine:?}")`.
    fn debug(engine: &Self::Pooled) -> String;
    /// The engine's credential.
    fn auth(engine: &Self::Pooled) -> cloud_pg_auth::Auth;
    /// Closes the pool, stops the refresher and drops the credential, waiting for checked-out
    /// connections at most the dispose timeout. Later checkouts fail.
    async fn dispose(engine: &Self::Pooled);
    /// Whether `dispose()` ran.
    fn is_disposed(engine: &Self::Pooled) -> bool;

    /// A migration engine built from settings, with its own credential.
    async fn migration(settings: Settings) -> Result<Self::Migration, BoxError> {
        Self::migration_with_source(settings, None).await
    }
    /// A migration engine built from settings, with its own credential taking tokens from
    /// `token_source` when given (the builder's `token_source`).
    async fn migration_with_source(
        settings: Settings,
        token_source: Option<Arc<dyn TokenSource>>,
    ) -> Result<Self::Migration, BoxError>;
    /// Runs the adapter's conformance migrations (one migration, `conformance_items`, which
    /// creates the table of that name).
    async fn migrate(engine: &Self::Migration) -> Result<MigrationReport, BoxError>;
    /// The migration engine's status.
    fn migration_status(engine: &Self::Migration) -> EngineStatus;
    /// Drops the migration engine's credential.
    async fn dispose_migration(engine: &Self::Migration);
}

pub mod adapters;
pub mod bench;
pub mod bench_proxy;
pub mod demo;
pub mod latency;
pub mod scenarios;

use cloud_pg_auth::Env;
use cloud_pg_auth_testkit::Emulator;

/// The login methods every adapter is checked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A static password role.
    Password,
    /// Azure managed identity through the App Service protocol (user name from `xms_mirid`).
    AzureManagedIdentity,
    /// AKS workload identity: a federated token exchanged at the Entra endpoint.
    AzureWorkloadIdentity,
    /// An RDS IAM token signed with the emulator's test keys.
    Aws,
    /// An Aurora DSQL token for the emulator's DSQL endpoint name (dialled through
    /// `PGHOSTADDR=127.0.0.1`, `verify-full` by name). Not in [`Method::ALL`]: DSQL has no
    /// advisory locks, so migration engines refuse it (the demo checks the refusal).
    AwsDsql,
    /// Google Cloud SQL: an access token from the emulator's metadata server
    /// (`GCE_METADATA_HOST`) with the `sqlservice.login` scope, the user name derived from
    /// the service account's email (no `PGUSER`).
    GcpCloudSql,
    /// AlloyDB: as [`Method::GcpCloudSql`], with `PGAUTH_GCP_PRODUCT=alloydb` and its scope.
    GcpAlloyDb,
    /// A password callback given to the builder (`token_source`), with settings from the
    /// environment that name no method: the emulator's password role, its password from the
    /// callback. Not in [`Method::ALL`]: its engines need [`Method::token_source`].
    Callback,
}

impl Method {
    /// Every method.
    pub const ALL: [Method; 6] = [
        Method::AzureManagedIdentity,
        Method::AzureWorkloadIdentity,
        Method::Aws,
        Method::GcpCloudSql,
        Method::GcpAlloyDb,
        Method::Password,
    ];

    /// The methods whose tokens come from an emulator identity endpoint that counts requests
    /// and can be taken down: the herd, rollover and outage scenarios run for each.
    pub const ENDPOINT: [Method; 4] = [
        Method::AzureManagedIdentity,
        Method::AzureWorkloadIdentity,
        Method::GcpCloudSql,
        Method::GcpAlloyDb,
    ];

    /// The methods whose tokens are signed locally from static keys (no endpoint to count or
    /// take down): the herd and rollover scenarios run for each, counting the engine's fetches.
    pub const SIGNED: [Method; 1] = [Method::AwsDsql];

    /// The demo's rows: every method, Aurora DSQL and the password callback.
    pub const DEMO: [Method; 8] = [
        Method::AzureManagedIdentity,
        Method::AzureWorkloadIdentity,
        Method::Aws,
        Method::AwsDsql,
        Method::GcpCloudSql,
        Method::GcpAlloyDb,
        Method::Password,
        Method::Callback,
    ];

    /// The name used in the demo's output.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::AzureManagedIdentity => "azure-managed-identity",
            Method::AzureWorkloadIdentity => "azure-workload-identity",
            Method::Aws => "aws-iam",
            Method::AwsDsql => "aws-dsql",
            Method::GcpCloudSql => "gcp-cloudsql",
            Method::GcpAlloyDb => "gcp-alloydb",
            Method::Callback => "password-callback",
        }
    }

    /// The method the engine's status reports (`status.auth.method`): `password`, `azure`,
    /// `aws`, `dsql`, `gcp` or `callback`.
    #[must_use]
    pub fn status_method(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::AzureManagedIdentity | Method::AzureWorkloadIdentity => "azure",
            Method::Aws => "aws",
            Method::AwsDsql => "dsql",
            Method::GcpCloudSql | Method::GcpAlloyDb => "gcp",
            Method::Callback => "callback",
        }
    }

    /// The emulator's label for this method's accepted logins
    /// (`Stats::logins_accepted_by_method`).
    #[must_use]
    pub fn emulator_login_label(self) -> &'static str {
        match self {
            Method::Password | Method::Callback => "password",
            Method::AzureManagedIdentity | Method::AzureWorkloadIdentity => "entra",
            Method::Aws => "aws",
            Method::AwsDsql => "dsql",
            Method::GcpCloudSql => "gcp_cloudsql",
            Method::GcpAlloyDb => "gcp_alloydb",
        }
    }

    /// The token source an engine of this method is given in code: the emulator's password
    /// from a callback for [`Method::Callback`], none for the others.
    #[must_use]
    pub fn token_source(self, emulator: &Emulator) -> Option<Arc<dyn TokenSource>> {
        let password = emulator.password().to_string();
        (self == Method::Callback).then(|| {
            let callback = cloud_pg_auth::CallbackSource::sync("vault", move || {
                Ok::<_, std::convert::Infallible>(cloud_pg_auth::AccessToken::new(
                    password.as_str(),
                ))
            });
            Arc::new(callback) as Arc<dyn TokenSource>
        })
    }

    /// The role the emulator maps this method's identity to.
    #[must_use]
    pub fn expected_role(self, emulator: &Emulator) -> String {
        match self {
            Method::Password | Method::Callback => emulator.password_role(),
            Method::AzureManagedIdentity => emulator.azure_role(),
            Method::AzureWorkloadIdentity => emulator.azure_workload_role(),
            Method::Aws => emulator.aws_role(),
            Method::AwsDsql => emulator.dsql_role(),
            Method::GcpCloudSql | Method::GcpAlloyDb => return emulator.gcp_role(),
        }
        .to_string()
    }

    /// The environment an application would have: the emulator's exports plus what the
    /// method needs.
    #[must_use]
    pub fn env(self, emulator: &Emulator) -> Vec<(String, String)> {
        let mut env = emulator.env();
        let mut set = |name: &str, value: String| {
            env.retain(|(k, _)| k != name);
            env.push((name.to_string(), value));
        };
        match self {
            Method::Password => {
                set("PGAUTH_METHOD", "password".into());
                set("PGUSER", emulator.password_role().into());
                set("PGPASSWORD", emulator.password().into());
            }
            Method::AzureManagedIdentity => {
                set("PGAUTH_METHOD", "azure".into());
                set("PGAUTH_AZURE_CREDENTIAL", "managed-identity".into());
            }
            Method::AzureWorkloadIdentity => {
                set("PGAUTH_METHOD", "azure".into());
                set("PGAUTH_AZURE_CREDENTIAL", "workload-identity".into());
                set("PGUSER", emulator.azure_workload_role().into());
                set("AZURE_CLIENT_ID", emulator.workload_client_id().into());
                set(
                    "PGAUTH_AZURE_CA_FILE",
                    emulator.ca_path().display().to_string(),
                );
            }
            Method::Aws => {
                set("PGAUTH_METHOD", "aws".into());
                set("PGUSER", emulator.aws_role().into());
            }
            Method::AwsDsql => {
                set("PGAUTH_METHOD", "dsql".into());
                set("PGHOST", emulator.dsql_host());
                set("PGHOSTADDR", "127.0.0.1".into());
                set("PGUSER", emulator.dsql_role().into());
            }
            Method::GcpCloudSql | Method::GcpAlloyDb => {
                // The metadata server only (GCE_METADATA_HOST is exported), and no PGUSER:
                // the user name comes from the service account's email.
                set("PGAUTH_METHOD", "gcp".into());
                let product = if self == Method::GcpAlloyDb {
                    "alloydb"
                } else {
                    "cloudsql"
                };
                set("PGAUTH_GCP_PRODUCT", product.into());
                env.retain(|(k, _)| k != "PGUSER" && k != "GOOGLE_APPLICATION_CREDENTIALS");
            }
            Method::Callback => {
                set("PGUSER", emulator.password_role().into());
                // No method, no password: the builder's source decides.
                env.retain(|(k, _)| k != "PGAUTH_METHOD" && k != "PGPASSWORD");
            }
        }
        env
    }

    /// Whether the migration engines run with this method (not on Aurora DSQL).
    #[must_use]
    pub fn runs_migrations(self) -> bool {
        self != Method::AwsDsql
    }

    /// Settings read from [`Method::env`].
    ///
    /// # Panics
    /// When the emulator's exports do not make valid settings (a bug in the emulator or the
    /// settings code, which the scenario then reports).
    #[must_use]
    pub fn settings(self, emulator: &Emulator) -> Settings {
        Settings::from_env_vars(&Env::from_pairs(self.env(emulator)))
            .unwrap_or_else(|e| panic!("settings for {}: {e}", self.name()))
    }

    /// Settings for a fresh database `name` owned by this method's role, so sessions of
    /// different roles (and their migrations) do not share tables.
    pub async fn settings_in_new_database(
        self,
        emulator: &Emulator,
        name: &str,
    ) -> Result<Settings, BoxError> {
        let role = self.expected_role(emulator);
        emulator
            .postgres()
            .execute_admin(&format!(
                "CREATE DATABASE {} OWNER {}",
                quote_ident(name),
                quote_ident(&role)
            ))
            .await?;
        Ok(self.settings(emulator).dbname(name))
    }
}

/// Quotes a SQL identifier.
#[must_use]
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
