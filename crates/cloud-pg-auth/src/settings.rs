//! Connection settings: a `postgres://` URL, the libpq environment and `PGAUTH_*` variables.
//!
//! The types (`types`), reading them from a URL or the environment (`parse`), checking them
//! together (`validate`); this file holds [`Settings`] itself and its builder methods.

mod parse;
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
use crate::{Env, Secret};

pub(crate) use parse::parse_bool;
pub use types::{AuthMethod, RootCerts, SslMode};

/// Everything needed to reach one server and log in.
///
/// Built from the environment ([`Settings::from_env`]), a URL ([`Settings::from_url`]) or
/// in code (`Settings { host: Some(..), ..Default::default() }` plus the builder methods).
/// [`Settings::validate`] fails fast with a message that names the setting to change.
#[derive(Clone)]
pub struct Settings {
    /// Server host name or IP address (`PGHOST`): the name the certificate is verified
    /// against and tokens are made for. A path is a Unix socket directory, as in libpq.
    pub host: Option<String>,
    /// The address to dial instead of resolving `host` (`PGHOSTADDR`, libpq's `hostaddr`):
    /// a private endpoint by IP, an SSH tunnel or a port-forward, with `verify-full` intact.
    pub hostaddr: Option<IpAddr>,
    /// Server port (`PGPORT`), 5432 by default.
    pub port: u16,
    /// Database (`PGDATABASE`); the user name when unset, as in libpq.
    pub dbname: Option<String>,
    /// Login role (`PGUSER`). For Azure it may be derived from the token.
    pub user: Option<String>,
    /// A static password (`PGPASSWORD`): only with the password method.
    pub password: Option<Secret>,
    /// How the password is obtained (`PGAUTH_METHOD`).
    pub method: AuthMethod,
    /// `PGSSLMODE`. `None`: `verify-full` for token methods, `prefer` for passwords (libpq's default).
    pub ssl_mode: Option<SslMode>,
    /// `PGSSLROOTCERT`.
    pub root_certs: RootCerts,
    /// `PGAPPNAME`.
    pub application_name: Option<String>,
    /// `PGCONNECT_TIMEOUT`.
    pub connect_timeout: Option<Duration>,
    /// Allow a token over plaintext or an unverified certificate, for loopback hosts only
    /// (`PGAUTH_INSECURE_LOOPBACK=1`): test set-ups such as an SSH tunnel or a local proxy.
    pub insecure_loopback: bool,
    /// A password to use when the token source fails and no valid token remains
    /// (`PGAUTH_FALLBACK_PASSWORD`). Each use is counted in the status and logged.
    pub fallback_password: Option<Secret>,
    /// Azure options (`PGAUTH_AZURE_*`, `AZURE_*`).
    pub azure: AzureOptions,
    /// AWS options (`AWS_REGION`, `PGAUTH_AWS_*`).
    pub aws: AwsOptions,
    /// Refresh timing of the token cache.
    pub refresh: RefreshPolicy,
    /// The environment the settings were read from. Cloud sources read their credential
    /// variables (such as `AWS_ACCESS_KEY_ID`) from it, so settings built from a map never
    /// mix with the process environment. Empty for settings built in code or from a URL;
    /// the SDKs' default chains then read the process environment as usual.
    pub env: Env,
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
            insecure_loopback: false,
            fallback_password: None,
            azure: AzureOptions::default(),
            aws: AwsOptions::default(),
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
            .field("insecure_loopback", &self.insecure_loopback)
            .field("fallback_password", &self.fallback_password)
            .field("azure", &self.azure)
            .field("aws", &self.aws)
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
    "PGAUTH_METHOD",
    "PGAUTH_INSECURE_LOOPBACK",
    "PGAUTH_FALLBACK_PASSWORD",
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

    /// The settings an engine works with: [`Settings::for_custom_source`] when the caller
    /// gives a token source of its own, else these settings unchanged.
    pub(crate) fn for_source(&self, custom_source: bool) -> Cow<'_, Self> {
        if custom_source && self.method == AuthMethod::Auto {
            Cow::Owned(self.clone().for_custom_source())
        } else {
            Cow::Borrowed(self)
        }
    }

    /// Sets the root certificates.
    #[must_use]
    pub fn root_certs(mut self, roots: RootCerts) -> Self {
        self.root_certs = roots;
        self
    }
}
