//! Connection settings: a `postgres://` URL, the libpq environment and `PGAUTH_*` variables.
//!
//! The types (`types`), reading them from a URL or the environment (`parse`), checking them
//! together (`validate`); this file holds [`Settings`] itself and its builder methods.

mod conninfo;
#[cfg(test)]
mod dsql_tests;
#[cfg(test)]
mod gcp_tests;
mod migration;
#[cfg(test)]
mod migration_tests;
mod parse;
mod session;
#[cfg(test)]
mod source_tests;
#[cfg(test)]
mod tests;
mod types;
mod validate;

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use crate::aws::AwsOptions;
use crate::azure::AzureOptions;
use crate::cache::RefreshPolicy;
use crate::gcp::GcpOptions;
use crate::source::TokenSource;
use crate::{Env, Secret};

pub(crate) use parse::parse_bool;
pub use session::TargetSessionAttrs;
pub use types::{AuthMethod, RootCerts, SslMode};

/// Everything needed to reach one server and log in.
///
/// Built from the environment ([`Settings::from_env`]), a URL ([`Settings::from_url`]) or
/// in code (`Settings::default().host(..)` and the other builder methods, each named after
/// the setting); read back with the `get_*` methods.
/// [`Settings::validate`] fails fast with a message that names the setting to change.
#[derive(Clone)]
pub struct Settings {
    /// Server host name or IP address (`PGHOST`): the name the certificate is verified
    /// against and tokens are made for. A path is a Unix socket directory, as in libpq.
    pub(crate) host: Option<String>,
    /// The address to dial instead of resolving `host` (`PGHOSTADDR`, libpq's `hostaddr`):
    /// a private endpoint by IP, an SSH tunnel or a port-forward, with `verify-full` intact.
    pub(crate) hostaddr: Option<IpAddr>,
    /// Server port (`PGPORT`), 5432 by default.
    pub(crate) port: u16,
    /// Database (`PGDATABASE`); the user name when unset, as in libpq.
    pub(crate) dbname: Option<String>,
    /// Login role (`PGUSER`). For Azure and Google it may be derived from the token.
    pub(crate) user: Option<String>,
    /// A static password (`PGPASSWORD`): only with the password method.
    pub(crate) password: Option<Secret>,
    /// How the password is obtained (`PGAUTH_METHOD`).
    pub(crate) method: AuthMethod,
    /// `PGSSLMODE`. `None`: `verify-full` for token methods, `prefer` for passwords (libpq's default).
    pub(crate) ssl_mode: Option<SslMode>,
    /// `PGSSLROOTCERT`.
    pub(crate) root_certs: RootCerts,
    /// `PGAPPNAME`.
    pub(crate) application_name: Option<String>,
    /// `PGCONNECT_TIMEOUT`.
    pub(crate) connect_timeout: Option<Duration>,
    /// Server options sent at login (`PGOPTIONS`, libpq's `options`): `-c name=value`.
    pub(crate) options: Option<String>,
    /// What the server must allow (`PGTARGETSESSIONATTRS`).
    pub(crate) target_session_attrs: TargetSessionAttrs,
    /// TCP keepalives on the server connection (libpq's `keepalives`, on by default).
    pub(crate) keepalives: bool,
    /// Idle time before the first keepalive probe (`keepalives_idle`).
    pub(crate) keepalives_idle: Option<Duration>,
    /// Time between keepalive probes (`keepalives_interval`).
    pub(crate) keepalives_interval: Option<Duration>,
    /// Unanswered probes before the connection is dropped (`keepalives_count`).
    pub(crate) keepalives_count: Option<u32>,
    /// Allow a token over plaintext or an unverified certificate, for loopback hosts only
    /// (`PGAUTH_INSECURE_LOOPBACK=1`): test set-ups such as an SSH tunnel or a local proxy.
    pub(crate) insecure_loopback: bool,
    /// A password to use when the token source fails and no valid token remains
    /// (`PGAUTH_FALLBACK_PASSWORD`). Each use is counted in the status and logged.
    pub(crate) fallback_password: Option<Secret>,
    /// The role the fallback password logs in as (`PGAUTH_FALLBACK_USER`): a password role,
    /// since a token role (`rds_iam`, Entra-mapped) accepts no password. Unset, the fallback
    /// password is sent as `user`.
    pub(crate) fallback_user: Option<String>,
    /// The role migration engines log in as (`PGAUTH_MIGRATION_USER`); the service's `user`
    /// when unset. See [`Settings::for_migrations`].
    pub(crate) migration_user: Option<String>,
    /// The client id of the user-assigned managed identity migrations use
    /// (`PGAUTH_MIGRATION_AZURE_CLIENT_ID`): Azure only.
    pub(crate) migration_azure_client_id: Option<String>,
    /// Azure options (`PGAUTH_AZURE_*`, `AZURE_*`).
    pub(crate) azure: AzureOptions,
    /// AWS options (`AWS_REGION`, `PGAUTH_AWS_*`).
    pub(crate) aws: AwsOptions,
    /// Google options (`PGAUTH_GCP_PRODUCT`, `GOOGLE_APPLICATION_CREDENTIALS`,
    /// `GCE_METADATA_HOST`).
    pub(crate) gcp: GcpOptions,
    /// Refresh timing of the token cache.
    pub(crate) refresh: RefreshPolicy,
    /// The environment the settings were read from. Cloud sources read their credential
    /// variables (such as `AWS_ACCESS_KEY_ID`) from it, so settings built from a map never
    /// mix with the process environment. Empty for settings built in code or from a URL;
    /// the SDKs' default chains then read the process environment as usual.
    pub(crate) env: Env,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            host: None,
            hostaddr: None,
            port: 5432,
            dbname: None,
            user: None,
            password: None,
            method: AuthMethod::Auto,
            ssl_mode: None,
            root_certs: RootCerts::Bundled,
            application_name: None,
            connect_timeout: None,
            options: None,
            target_session_attrs: TargetSessionAttrs::Any,
            keepalives: true,
            keepalives_idle: None,
            keepalives_interval: None,
            keepalives_count: None,
            insecure_loopback: false,
            fallback_password: None,
            fallback_user: None,
            migration_user: None,
            migration_azure_client_id: None,
            azure: AzureOptions::default(),
            aws: AwsOptions::default(),
            gcp: GcpOptions::default(),
            refresh: RefreshPolicy::default(),
            env: Env::default(),
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("host", &self.host)
            .field("hostaddr", &self.hostaddr)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("password", &self.password)
            .field("method", &self.method)
            .field("ssl_mode", &self.ssl_mode)
            .field("root_certs", &self.root_certs)
            .field("application_name", &self.application_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("options", &self.options)
            .field("target_session_attrs", &self.target_session_attrs)
            .field("keepalives", &self.keepalives)
            .field("keepalives_idle", &self.keepalives_idle)
            .field("keepalives_interval", &self.keepalives_interval)
            .field("keepalives_count", &self.keepalives_count)
            .field("insecure_loopback", &self.insecure_loopback)
            .field("fallback_password", &self.fallback_password)
            .field("fallback_user", &self.fallback_user)
            .field("migration_user", &self.migration_user)
            .field("migration_azure_client_id", &self.migration_azure_client_id)
            .field("azure", &self.azure)
            .field("aws", &self.aws)
            .field("gcp", &self.gcp)
            .finish_non_exhaustive()
    }
}

/// The variables [`Settings::from_env`] reads, for documentation and diagnostics.
pub const ENV_VARS: &[&str] = &[
    "DATABASE_URL",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGAPPNAME",
    "PGCONNECT_TIMEOUT",
    "PGOPTIONS",
    "PGTARGETSESSIONATTRS",
    "PGAUTH_METHOD",
    "PGAUTH_INSECURE_LOOPBACK",
    "PGAUTH_FALLBACK_PASSWORD",
    "PGAUTH_FALLBACK_USER",
    "PGAUTH_MIGRATION_USER",
    "PGAUTH_MIGRATION_AZURE_CLIENT_ID",
    "PGAUTH_MIGRATION_PASSWORD",
    "PGAUTH_GCP_PRODUCT",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GCE_METADATA_HOST",
];

impl Settings {
    /// Sets the host.
    #[must_use]
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Sets the address to dial instead of resolving the host (libpq's `hostaddr`).
    #[must_use]
    pub fn hostaddr(mut self, addr: IpAddr) -> Self {
        self.hostaddr = Some(addr);
        self
    }

    /// Sets the port.
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets the database.
    #[must_use]
    pub fn dbname(mut self, dbname: impl Into<String>) -> Self {
        self.dbname = Some(dbname.into());
        self
    }

    /// Sets the login role.
    #[must_use]
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Sets a static password (the password method).
    #[must_use]
    pub fn password(mut self, password: impl Into<Secret>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Sets the method.
    #[must_use]
    pub fn method(mut self, method: AuthMethod) -> Self {
        self.method = method;
        self
    }

    /// Sets the sslmode.
    #[must_use]
    pub fn ssl_mode(mut self, mode: SslMode) -> Self {
        self.ssl_mode = Some(mode);
        self
    }

    /// For an engine given its own token source: `Auto` becomes [`AuthMethod::Custom`], so
    /// validation neither wants a password nor guesses a cloud. Other methods stay.
    #[must_use]
    pub fn for_custom_source(mut self) -> Self {
        if self.method == AuthMethod::Auto {
            self.method = AuthMethod::Custom;
        }
        self
    }

    /// The settings an engine works with when the caller gives a token source of its own:
    /// `Auto` becomes the source's method, [`AuthMethod::Azure`] for an Azure source
    /// ([`SourceInfo`](crate::SourceInfo) method `azure`, as every `azure::AzureSource`
    /// says) and [`AuthMethod::Gcp`] for a Google one (method `gcp`), whose tokens may name
    /// the user, else
    /// [`AuthMethod::Custom`] ([`Settings::for_custom_source`]). Unchanged without a source
    /// or with a method set.
    pub(crate) fn for_source(&self, source: Option<&dyn TokenSource>) -> Cow<'_, Self> {
        match source {
            Some(source) if self.method == AuthMethod::Auto => {
                let mut settings = self.clone();
                settings.method = match source.info().get_method() {
                    "azure" => AuthMethod::Azure,
                    "gcp" => AuthMethod::Gcp,
                    _ => AuthMethod::Custom,
                };
                Cow::Owned(settings)
            }
            _ => Cow::Borrowed(self),
        }
    }

    /// Sets the root certificates.
    #[must_use]
    pub fn root_certs(mut self, roots: RootCerts) -> Self {
        self.root_certs = roots;
        self
    }

    /// Sets the application name (`PGAPPNAME`).
    #[must_use]
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// Sets the time allowed to open a connection (`PGCONNECT_TIMEOUT`).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Allows a token over plaintext or an unverified certificate to a loopback host
    /// (`PGAUTH_INSECURE_LOOPBACK`), for test set-ups.
    #[must_use]
    pub fn insecure_loopback(mut self, allow: bool) -> Self {
        self.insecure_loopback = allow;
        self
    }

    /// Sets the password used when the token source fails and no valid token remains
    /// (`PGAUTH_FALLBACK_PASSWORD`).
    #[must_use]
    pub fn fallback_password(mut self, password: impl Into<Secret>) -> Self {
        self.fallback_password = Some(password.into());
        self
    }

    /// Sets the role the fallback password logs in as (`PGAUTH_FALLBACK_USER`): a
    /// break-glass password role, since a token role (`rds_iam`, Entra-mapped) accepts no
    /// password. Needs [`Settings::fallback_password`] and a token method.
    #[must_use]
    pub fn fallback_user(mut self, user: impl Into<String>) -> Self {
        self.fallback_user = Some(user.into());
        self
    }

    /// Sets the role migration engines log in as (`PGAUTH_MIGRATION_USER`): an owner role
    /// for schema changes while the service logs in as a limited one. AWS signs the
    /// migration engine's tokens for this user; on Azure it is the role the migration
    /// identity's token logs in as (when unset, the name comes from that token). With the
    /// password method the same password is sent.
    #[must_use]
    pub fn migration_user(mut self, user: impl Into<String>) -> Self {
        self.migration_user = Some(user.into());
        self
    }

    /// Sets the client id of the user-assigned managed identity (or the workload identity)
    /// migration engines ask for tokens as (`PGAUTH_MIGRATION_AZURE_CLIENT_ID`), Azure only.
    #[must_use]
    pub fn migration_azure_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.migration_azure_client_id = Some(client_id.into());
        self
    }

    /// Sets the Azure options.
    #[must_use]
    pub fn azure(mut self, options: AzureOptions) -> Self {
        self.azure = options;
        self
    }

    /// Sets the AWS options.
    #[must_use]
    pub fn aws(mut self, options: AwsOptions) -> Self {
        self.aws = options;
        self
    }

    /// Sets the Google options (the product and where credentials come from). Settings
    /// read from the environment have them from it; in code the default is Cloud SQL with
    /// the metadata server.
    #[must_use]
    pub fn gcp(mut self, options: GcpOptions) -> Self {
        self.gcp = options;
        self
    }

    /// Sets the refresh timing of the token cache.
    #[must_use]
    pub fn refresh(mut self, policy: RefreshPolicy) -> Self {
        self.refresh = policy;
        self
    }

    /// Sets the environment cloud sources read their credential variables from (see
    /// [`Settings::get_env`]).
    #[must_use]
    pub fn env(mut self, env: Env) -> Self {
        self.env = env;
        self
    }

    /// Removes the static password: for settings read from the environment or a URL that
    /// are to log in another way, such as a custom token source.
    #[must_use]
    pub fn without_password(mut self) -> Self {
        self.password = None;
        self
    }

    /// The server host name, IP address or Unix socket directory (`PGHOST`).
    #[must_use]
    pub fn get_host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The address dialled instead of resolving the host (`PGHOSTADDR`).
    #[must_use]
    pub fn get_hostaddr(&self) -> Option<IpAddr> {
        self.hostaddr
    }

    /// The server port (`PGPORT`), 5432 by default.
    #[must_use]
    pub fn get_port(&self) -> u16 {
        self.port
    }

    /// The database (`PGDATABASE`), as set: libpq then uses the user name.
    #[must_use]
    pub fn get_dbname(&self) -> Option<&str> {
        self.dbname.as_deref()
    }

    /// The login role (`PGUSER`), as set: for Azure it may come from the token instead.
    #[must_use]
    pub fn get_user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The static password (`PGPASSWORD`).
    #[must_use]
    pub fn get_password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// How the password is obtained (`PGAUTH_METHOD`).
    #[must_use]
    pub fn get_method(&self) -> AuthMethod {
        self.method
    }

    /// The sslmode as set (`PGSSLMODE`); `None` picks the method's default.
    #[must_use]
    pub fn get_ssl_mode(&self) -> Option<SslMode> {
        self.ssl_mode
    }

    /// The root certificates (`PGSSLROOTCERT`).
    #[must_use]
    pub fn get_root_certs(&self) -> &RootCerts {
        &self.root_certs
    }

    /// The application name (`PGAPPNAME`).
    #[must_use]
    pub fn get_application_name(&self) -> Option<&str> {
        self.application_name.as_deref()
    }

    /// The time allowed to open a connection (`PGCONNECT_TIMEOUT`).
    #[must_use]
    pub fn get_connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }

    /// Whether a token may go to a loopback host without encryption or verification
    /// (`PGAUTH_INSECURE_LOOPBACK`).
    #[must_use]
    pub fn get_insecure_loopback(&self) -> bool {
        self.insecure_loopback
    }

    /// The fallback password (`PGAUTH_FALLBACK_PASSWORD`).
    #[must_use]
    pub fn get_fallback_password(&self) -> Option<&Secret> {
        self.fallback_password.as_ref()
    }

    /// The role the fallback password logs in as (`PGAUTH_FALLBACK_USER`).
    #[must_use]
    pub fn get_fallback_user(&self) -> Option<&str> {
        self.fallback_user.as_deref()
    }

    /// The role migration engines log in as (`PGAUTH_MIGRATION_USER`), as set.
    #[must_use]
    pub fn get_migration_user(&self) -> Option<&str> {
        self.migration_user.as_deref()
    }

    /// The client id of the identity migrations use (`PGAUTH_MIGRATION_AZURE_CLIENT_ID`).
    #[must_use]
    pub fn get_migration_azure_client_id(&self) -> Option<&str> {
        self.migration_azure_client_id.as_deref()
    }

    /// The Azure options.
    #[must_use]
    pub fn get_azure(&self) -> &AzureOptions {
        &self.azure
    }

    /// The AWS options.
    #[must_use]
    pub fn get_aws(&self) -> &AwsOptions {
        &self.aws
    }

    /// The Google options.
    #[must_use]
    pub fn get_gcp(&self) -> &GcpOptions {
        &self.gcp
    }

    /// The refresh timing of the token cache.
    #[must_use]
    pub fn get_refresh(&self) -> &RefreshPolicy {
        &self.refresh
    }

    /// The environment the settings were read from. Cloud sources read their credential
    /// variables (such as `AWS_ACCESS_KEY_ID`) from it; empty for settings built in code or
    /// from a URL.
    #[must_use]
    pub fn get_env(&self) -> &Env {
        &self.env
    }
}
