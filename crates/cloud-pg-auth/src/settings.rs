//! Connection settings: a `postgres://` URL, the libpq environment and `PGAUTH_*` variables.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use percent_encoding::percent_decode_str;

use crate::aws::AwsOptions;
use crate::azure::AzureOptions;
use crate::cache::RefreshPolicy;
use crate::error::ConfigError;
use crate::{Env, Secret};

/// How the password is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuthMethod {
    /// A static password (`PGPASSWORD` or the URL): the backward-compatible path.
    Password,
    /// A Microsoft Entra access token (Azure Database for PostgreSQL).
    Azure,
    /// An RDS IAM auth token (AWS RDS and Aurora).
    Aws,
    /// Decide from the settings: a password → password; an Azure host → azure; an RDS host → aws.
    #[default]
    Auto,
    /// A token source passed in code (a [`CallbackSource`](crate::CallbackSource) or your own
    /// [`TokenSource`](crate::TokenSource)); treated like a token for TLS. Not read from the
    /// environment: engines' `token_source(..)` builders set it when the method is `Auto`.
    Custom,
}

impl AuthMethod {
    /// The name used in settings and status output.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Azure => "azure",
            Self::Aws => "aws",
            Self::Auto => "auto",
            Self::Custom => "custom",
        }
    }

    /// Whether the method sends a token as the password (so TLS must be verified).
    #[must_use]
    pub fn is_token(self) -> bool {
        matches!(self, Self::Azure | Self::Aws | Self::Custom)
    }
}

impl FromStr for AuthMethod {
    type Err = ConfigError;

    fn from_str(value: &str) -> Result<Self, ConfigError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "password" => Ok(Self::Password),
            "azure" | "entra" => Ok(Self::Azure),
            "aws" | "iam" => Ok(Self::Aws),
            "auto" => Ok(Self::Auto),
            v if v.contains(',') || v.contains('+') || v.contains(' ') => Err(ConfigError::new(
                "PGAUTH_METHOD",
                format!(
                    "{value:?} names more than one method; choose one of password, azure, aws or auto"
                ),
            )),
            _ => Err(ConfigError::new(
                "PGAUTH_METHOD",
                format!("unknown method {value:?}; use password, azure, aws or auto"),
            )),
        }
    }
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it, without certificate checks; plaintext otherwise.
    Prefer,
    /// TLS without certificate checks (for token methods: checked as `verify-full`).
    Require,
    /// TLS, certificate chain checked, host name not checked.
    VerifyCa,
    /// TLS, certificate chain and host name checked.
    VerifyFull,
}

impl SslMode {
    /// The libpq name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// Whether the server certificate's chain is checked.
    #[must_use]
    pub fn verifies(self) -> bool {
        matches!(self, Self::VerifyCa | Self::VerifyFull)
    }
}

impl FromStr for SslMode {
    type Err = ConfigError;

    fn from_str(value: &str) -> Result<Self, ConfigError> {
        match value {
            "disable" => Ok(Self::Disable),
            // libpq's `allow` tries plaintext first; we never prefer plaintext.
            "allow" | "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            _ => Err(ConfigError::new(
                "PGSSLMODE",
                format!(
                    "unknown sslmode {value:?}; use disable, prefer, require, verify-ca or verify-full"
                ),
            )),
        }
    }
}

/// Where the root certificates for `verify-ca`/`verify-full` come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RootCerts {
    /// The Mozilla roots compiled in (webpki-roots): Azure's servers chain to them.
    #[default]
    Bundled,
    /// The operating system's store (`sslrootcert=system`).
    System,
    /// A PEM file, such as the RDS global bundle or a test CA (`sslrootcert=FILE`).
    File(PathBuf),
}

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
    /// Reads the process environment, then validates.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_vars(&Env::from_process())
    }

    /// Reads settings from `env`: the libpq variables, `DATABASE_URL` (whose parts win over
    /// the separate variables, as a libpq connection string does), `PGAUTH_*` and the cloud
    /// variables. Validates before returning.
    pub fn from_env_vars(env: &Env) -> Result<Self, ConfigError> {
        let mut s = Self {
            host: env.get("PGHOST").map(str::to_string),
            dbname: env.get("PGDATABASE").map(str::to_string),
            user: env.get("PGUSER").map(str::to_string),
            password: env.get("PGPASSWORD").map(Secret::new),
            application_name: env.get("PGAPPNAME").map(str::to_string),
            env: env.clone(),
            ..Self::default()
        };
        if let Some(addr) = env.get("PGHOSTADDR") {
            s.hostaddr = Some(parse_hostaddr("PGHOSTADDR", addr)?);
        }
        if let Some(port) = env.get("PGPORT") {
            s.port = parse_port("PGPORT", port)?;
        }
        if let Some(mode) = env.get("PGSSLMODE") {
            s.ssl_mode = Some(mode.parse()?);
        }
        if let Some(root) = env.get("PGSSLROOTCERT") {
            s.root_certs = parse_root_certs(root);
        }
        if let Some(timeout) = env.get("PGCONNECT_TIMEOUT") {
            s.connect_timeout = parse_timeout("PGCONNECT_TIMEOUT", timeout)?;
        }
        if let Some(method) = env.get("PGAUTH_METHOD") {
            s.method = method.parse()?;
        }
        if let Some(flag) = env.get("PGAUTH_INSECURE_LOOPBACK") {
            s.insecure_loopback = parse_bool("PGAUTH_INSECURE_LOOPBACK", flag)?;
        }
        s.fallback_password = env.get("PGAUTH_FALLBACK_PASSWORD").map(Secret::new);
        if let Some(url) = env.get("DATABASE_URL") {
            s.apply_url("DATABASE_URL", url)?;
        }
        s.azure = AzureOptions::from_env(env)?;
        s.aws = AwsOptions::from_env(env)?;
        check_one_cloud(env, s.resolved_method_lenient())?;
        s.validate()?;
        Ok(s)
    }

    /// Parses a `postgres://` or `postgresql://` URL, then validates. Query parameters take
    /// libpq's names (`host`, `hostaddr`, `port`, `user`, `password`, `dbname`, `sslmode`,
    /// `sslrootcert`, `application_name`, `connect_timeout`) plus `pgauth_method` and
    /// `pgauth_insecure_loopback`. Errors never quote the URL: it may hold a password.
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let mut s = Self::default();
        s.apply_url("url", url)?;
        s.validate()?;
        Ok(s)
    }

    fn apply_url(&mut self, setting: &str, raw: &str) -> Result<(), ConfigError> {
        let bad = |msg: &str| ConfigError::new(setting, msg);
        let rest = raw
            .strip_prefix("postgres://")
            .or_else(|| raw.strip_prefix("postgresql://"))
            .ok_or_else(|| bad("must start with postgres:// or postgresql://"))?;
        check_url_shape(rest).map_err(|msg| bad(&msg))?;
        // Past the shape check, an '@' after the host can only be a password with an
        // unencoded '/', '?' or '#'; then every error stays generic so none quotes a piece.
        let suspect = url_has_stray_at(rest);
        let generic = || bad(UNENCODED_USERINFO);
        let url = url::Url::parse(raw).map_err(|e| {
            if suspect {
                generic()
            } else {
                bad(&format!("is not a valid URL ({e})"))
            }
        })?;
        if !url.username().is_empty() {
            self.user = Some(decode(setting, "user name", url.username())?);
        }
        if let Some(password) = url.password() {
            self.password = Some(Secret::new(decode(setting, "password", password)?));
        }
        if let Some(host) = url.host_str().filter(|h| !h.is_empty()) {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            self.host = Some(decode(setting, "host", host)?);
        }
        if let Some(port) = url.port() {
            self.port = parse_port(&format!("{setting} port"), &port.to_string())?;
        }
        let db = decode(setting, "database", url.path().trim_start_matches('/'))?;
        if !db.is_empty() {
            self.dbname = Some(db);
        }
        for pair in url
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(if suspect {
                    generic()
                } else {
                    bad(&format!(
                        "query parameter {} has no value; write name=value",
                        quoted_key(pair)
                    ))
                });
            };
            let value = decode(setting, "query parameter", value)?;
            let name = format!("{setting} {key}");
            match key {
                "sslmode" => {
                    self.ssl_mode = Some(
                        value
                            .parse()
                            .map_err(|e: ConfigError| ConfigError::new(name, e.message()))?,
                    )
                }
                "sslrootcert" => self.root_certs = parse_root_certs(&value),
                "application_name" => self.application_name = Some(value),
                "connect_timeout" => self.connect_timeout = parse_timeout(&name, &value)?,
                "host" => self.host = Some(value),
                "hostaddr" => self.hostaddr = Some(parse_hostaddr(&name, &value)?),
                "port" => self.port = parse_port(&name, &value)?,
                "user" => self.user = Some(value),
                "dbname" => self.dbname = Some(value),
                "password" => self.password = Some(Secret::new(value)),
                "pgauth_method" => {
                    let method: AuthMethod = value
                        .parse()
                        .map_err(|e: ConfigError| ConfigError::new(name.clone(), e.message()))?;
                    if self.method != AuthMethod::Auto
                        && method != AuthMethod::Auto
                        && method != self.method
                    {
                        return Err(ConfigError::new(
                            name,
                            format!(
                                "says {} but PGAUTH_METHOD says {}; two methods at once, keep one",
                                method.as_str(),
                                self.method.as_str()
                            ),
                        ));
                    }
                    self.method = method;
                }
                "pgauth_insecure_loopback" => self.insecure_loopback = parse_bool(&name, &value)?,
                _ if suspect => return Err(generic()),
                _ => {
                    return Err(bad(&format!(
                        "unknown query parameter {}; supported: sslmode, sslrootcert, application_name, connect_timeout, host, hostaddr, port, user, dbname, password, pgauth_method, pgauth_insecure_loopback",
                        quoted_key(key)
                    )));
                }
            }
        }
        Ok(())
    }

    /// The method in force: `method` itself, or what `Auto` picks from the settings.
    pub fn resolved_method(&self) -> Result<AuthMethod, ConfigError> {
        if self.method != AuthMethod::Auto {
            return Ok(self.method);
        }
        if self.password.is_some() {
            return Ok(AuthMethod::Password);
        }
        let host = self.host.as_deref().unwrap_or("");
        if crate::azure::cloud_for_host(host).is_some() {
            return Ok(AuthMethod::Azure);
        }
        if crate::aws::is_rds_host(host) {
            return Ok(AuthMethod::Aws);
        }
        Err(ConfigError::new(
            "PGAUTH_METHOD",
            "cannot tell how to log in: set PGAUTH_METHOD to password, azure or aws (auto picks password when PGPASSWORD is set, azure for *.postgres.database.azure.com hosts, aws for *.rds.amazonaws.com hosts)",
        ))
    }

    fn resolved_method_lenient(&self) -> Option<AuthMethod> {
        self.resolved_method().ok()
    }

    /// The sslmode in force: the configured one, or the default for the method.
    pub fn effective_ssl_mode(&self) -> Result<SslMode, ConfigError> {
        let method = self.resolved_method()?;
        Ok(self.ssl_mode.unwrap_or(if method.is_token() {
            SslMode::VerifyFull
        } else {
            SslMode::Prefer
        }))
    }

    /// Whether the address dialled is a loopback one: `hostaddr` when set, else the host
    /// (`localhost` counts here; what it resolves to is checked again when dialling).
    #[must_use]
    pub fn host_is_loopback(&self) -> bool {
        match self.hostaddr {
            Some(addr) => addr.is_loopback(),
            None => self.host.as_deref().is_some_and(is_loopback),
        }
    }

    /// Whether the host is a Unix socket directory (a path, as in libpq).
    #[must_use]
    pub fn host_is_unix_socket(&self) -> bool {
        self.host
            .as_deref()
            .is_some_and(crate::net::is_unix_socket_dir)
    }

    /// Checks the settings together; the error names the setting to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let method = self.resolved_method()?;
        let host = self.host.as_deref().ok_or_else(|| {
            ConfigError::new(
                "PGHOST",
                "no server host; set PGHOST or give a host in DATABASE_URL",
            )
        })?;
        if host.contains(',') {
            return Err(ConfigError::new("PGHOST", HOST_LIST));
        }
        if host.trim().is_empty() || host.chars().any(char::is_whitespace) {
            return Err(ConfigError::new(
                "PGHOST",
                format!("{host:?} is not a host name"),
            ));
        }
        let unix_socket = self.host_is_unix_socket();
        if unix_socket && self.hostaddr.is_some() {
            return Err(ConfigError::new(
                "PGHOSTADDR",
                "is set while PGHOST is a Unix socket directory; unset one of them",
            ));
        }
        if self.port == 0 {
            return Err(ConfigError::new(
                "PGPORT",
                "must be a number from 1 to 65535",
            ));
        }
        if let Some(user) = &self.user
            && (user.is_empty() || user.contains('\0'))
        {
            return Err(ConfigError::new(
                "PGUSER",
                "is empty or contains a NUL byte",
            ));
        }
        let mode = self.effective_ssl_mode()?;
        match method {
            AuthMethod::Password => {
                let Some(password) = &self.password else {
                    return Err(ConfigError::new(
                        "PGPASSWORD",
                        "PGAUTH_METHOD=password needs a password; set PGPASSWORD (or give one in DATABASE_URL), or choose PGAUTH_METHOD=azure or aws",
                    ));
                };
                if password.is_empty() {
                    return Err(ConfigError::new(
                        "PGPASSWORD",
                        "is empty; the server refuses empty passwords",
                    ));
                }
                if self.user.is_none() {
                    return Err(ConfigError::new(
                        "PGUSER",
                        "no user; set PGUSER or give a user in DATABASE_URL",
                    ));
                }
                if self.fallback_password.is_some() {
                    return Err(ConfigError::new(
                        "PGAUTH_FALLBACK_PASSWORD",
                        "only applies to token methods (azure, aws); unset it or PGPASSWORD",
                    ));
                }
            }
            AuthMethod::Azure | AuthMethod::Aws | AuthMethod::Custom => {
                if self.password.is_some() {
                    return Err(ConfigError::new(
                        "PGPASSWORD",
                        format!(
                            "a password is set together with PGAUTH_METHOD={}; the token is the password, so unset PGPASSWORD (or the URL's password), or set PGAUTH_METHOD=password. For a deliberate fallback use PGAUTH_FALLBACK_PASSWORD",
                            method.as_str()
                        ),
                    ));
                }
                if mode == SslMode::VerifyCa && !matches!(self.root_certs, RootCerts::File(_)) {
                    return Err(crate::tls::verify_ca_needs_root_file());
                }
                // A Unix socket is local: the token never crosses the network.
                if !unix_socket && !mode.verifies() && mode != SslMode::Require {
                    if !self.insecure_loopback {
                        return Err(ConfigError::new(
                            "PGSSLMODE",
                            format!(
                                "sslmode={} would send the token, a password, in clear; use verify-full (the default for token methods), or for a loopback test set-up set PGAUTH_INSECURE_LOOPBACK=1",
                                mode.as_str()
                            ),
                        ));
                    }
                    if !self.host_is_loopback() {
                        return Err(ConfigError::new(
                            "PGAUTH_INSECURE_LOOPBACK",
                            format!(
                                "is accepted only for loopback hosts (127.0.0.1, ::1, localhost), not {}; use sslmode=verify-full",
                                self.dialled_label()
                            ),
                        ));
                    }
                }
                if method == AuthMethod::Custom {
                    if self.user.is_none() {
                        return Err(ConfigError::new(
                            "PGUSER",
                            "no user; set PGUSER or give a user in DATABASE_URL",
                        ));
                    }
                } else if method == AuthMethod::Azure {
                    self.azure.check_host(host)?;
                } else {
                    let user = self.user.as_deref().ok_or_else(|| {
                        ConfigError::new(
                            "PGUSER",
                            "AWS IAM tokens are signed for one database user; set PGUSER",
                        )
                    })?;
                    crate::aws::validate_username(user)?;
                    if self.aws.region.is_none() && crate::aws::region_from_host(host).is_none() {
                        return Err(ConfigError::new(
                            "AWS_REGION",
                            format!(
                                "not set and {host:?} is not an RDS host name to read the region from; set AWS_REGION"
                            ),
                        ));
                    }
                }
            }
            AuthMethod::Auto => unreachable!("resolved_method never returns Auto"),
        }
        if self.insecure_loopback && !unix_socket && !self.host_is_loopback() {
            return Err(ConfigError::new(
                "PGAUTH_INSECURE_LOOPBACK",
                format!(
                    "is accepted only for loopback hosts (127.0.0.1, ::1, localhost), not {}",
                    self.dialled_label()
                ),
            ));
        }
        if let RootCerts::File(path) = &self.root_certs
            && mode.verifies()
            && !path.is_file()
        {
            return Err(ConfigError::new(
                "PGSSLROOTCERT",
                format!("{} is not a readable file", path.display()),
            ));
        }
        Ok(())
    }

    fn dialled_label(&self) -> String {
        match self.hostaddr {
            Some(addr) => format!("{addr} (PGHOSTADDR)"),
            None => format!("{:?}", self.host.as_deref().unwrap_or_default()),
        }
    }

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

/// Azure and AWS settings together are two clouds at once: refuse rather than guess.
fn check_one_cloud(env: &Env, method: Option<AuthMethod>) -> Result<(), ConfigError> {
    const AZURE_ONLY: &[&str] = &[
        "PGAUTH_AZURE_CREDENTIAL",
        "PGAUTH_AZURE_CLOUD",
        "PGAUTH_AZURE_SCOPE",
    ];
    const AWS_ONLY: &[&str] = &["PGAUTH_AWS_SIGNING_HOST", "PGAUTH_AWS_SIGNING_PORT"];
    let azure = AZURE_ONLY.iter().find(|n| env.is_set(n));
    let aws = AWS_ONLY.iter().find(|n| env.is_set(n));
    match (azure, aws, method) {
        (Some(a), Some(b), _) => Err(ConfigError::new(
            *a,
            format!(
                "both an Azure setting ({a}) and an AWS setting ({b}) are set; a connection uses one cloud, unset one of them"
            ),
        )),
        (Some(a), None, Some(AuthMethod::Aws)) => Err(ConfigError::new(
            *a,
            "is an Azure setting but PGAUTH_METHOD resolves to aws; unset it or set PGAUTH_METHOD=azure",
        )),
        (None, Some(b), Some(AuthMethod::Azure)) => Err(ConfigError::new(
            *b,
            "is an AWS setting but PGAUTH_METHOD resolves to azure; unset it or set PGAUTH_METHOD=aws",
        )),
        _ => Ok(()),
    }
}

/// The refusal of a URL whose user info cannot be told apart from the rest. Shows no part of
/// the URL, which may hold a password.
const UNENCODED_USERINFO: &str = "cannot be read unambiguously, probably a password with an unencoded character; percent-encode '@' as %40, '/' as %2F, '?' as %3F, '#' as %23 and '%' as %25 in the user name and password (the URL is not shown, since it may hold a password)";

/// Refuses URLs that a parser would read differently from what the writer meant: an unencoded
/// '@', '/', '?' or '#' in a password moves the host into the password or the password into
/// the host, path or query.
fn check_url_shape(rest: &str) -> Result<(), String> {
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(authority_end);
    if authority.matches('@').count() > 1 || rest.contains('#') {
        return Err(UNENCODED_USERINFO.to_string());
    }
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if hostport.contains(',') {
        return Err(HOST_LIST.to_string());
    }
    let path = after.split('?').next().unwrap_or("");
    if path.contains('@') {
        return Err(UNENCODED_USERINFO.to_string());
    }
    Ok(())
}

/// An '@' after the authority, with none inside it: a password that held '/', '?' or '#'.
fn url_has_stray_at(rest: &str) -> bool {
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(authority_end);
    !authority.contains('@') && after.contains('@')
}

/// A query key as it may be quoted in a message: only when it looks like a parameter name,
/// since anything else may be a piece of a mistyped password.
fn quoted_key(key: &str) -> String {
    if !key.is_empty()
        && key.len() <= 40
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        format!("{key:?}")
    } else {
        "(not shown: it is not a parameter name)".to_string()
    }
}

const HOST_LIST: &str = "lists several hosts; give one host (each token is signed or issued for one server, and host lists are not supported yet)";

fn parse_hostaddr(setting: &str, value: &str) -> Result<IpAddr, ConfigError> {
    if value.contains(',') {
        return Err(ConfigError::new(setting, HOST_LIST));
    }
    value
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| {
            ConfigError::new(
                setting,
                format!(
                    "{value:?} is not a numeric IP address; hostaddr takes the address to dial, the name stays in PGHOST"
                ),
            )
        })
}

fn decode(setting: &str, what: &str, raw: &str) -> Result<String, ConfigError> {
    // Reject malformed escapes instead of passing them through.
    let bytes = raw.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err(ConfigError::new(
                setting,
                format!("the {what} has a malformed %-escape; encode '%' as %25"),
            ));
        }
    }
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            ConfigError::new(
                setting,
                format!("the {what} is not valid UTF-8 after %-decoding"),
            )
        })
}

fn parse_port(setting: &str, value: &str) -> Result<u16, ConfigError> {
    match value.trim().parse::<u32>() {
        Ok(p) if (1..=65_535).contains(&p) => Ok(p as u16),
        _ => Err(ConfigError::new(
            setting,
            format!("{value:?} is not a port; use a number from 1 to 65535"),
        )),
    }
}

fn parse_timeout(setting: &str, value: &str) -> Result<Option<Duration>, ConfigError> {
    match value.trim().parse::<i64>() {
        // libpq: zero, negative or absent means wait forever.
        Ok(secs) if secs <= 0 => Ok(None),
        // libpq raises timeouts under 2 s to 2 s.
        Ok(secs) => Ok(Some(Duration::from_secs(secs.max(2) as u64))),
        Err(_) => Err(ConfigError::new(
            setting,
            format!("{value:?} is not a whole number of seconds"),
        )),
    }
}

fn parse_bool(setting: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::new(
            setting,
            format!("{value:?} is not a boolean; use 1 or 0"),
        )),
    }
}

fn parse_root_certs(value: &str) -> RootCerts {
    match value {
        "system" => RootCerts::System,
        path => RootCerts::File(PathBuf::from(path)),
    }
}

/// Checks the size and connection lifetime an adapter's pool is built with: a pool of no
/// connections, or a lifetime of zero, would misbehave (or panic) in the pool libraries.
pub fn check_pool_options(
    max_size: usize,
    max_lifetime: Option<Duration>,
) -> Result<(), ConfigError> {
    if max_size == 0 {
        return Err(ConfigError::new("max_size", "must be at least 1"));
    }
    if max_lifetime == Some(Duration::ZERO) {
        return Err(ConfigError::new(
            "max_lifetime",
            "must be more than zero; pass None to keep connections without a limit",
        ));
    }
    Ok(())
}

/// Whether `host` is `localhost` or a loopback IP address.
#[must_use]
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    /// Bad settings fail with an error that names `setting` and whose message contains `hint`.
    fn check(pairs: &[(&str, &str)], setting: &str, hint: &str) {
        let result = std::panic::catch_unwind(|| Settings::from_env_vars(&env(pairs)));
        let error = match result {
            Ok(Err(e)) => e,
            Ok(Ok(s)) => panic!("{pairs:?} was accepted: {s:?}"),
            Err(_) => panic!("{pairs:?} panicked"),
        };
        assert_eq!(error.setting(), setting, "{pairs:?}: {error}");
        assert!(error.message().contains(hint), "{pairs:?}: {error}");
        let text = error.to_string();
        assert_eq!(
            text,
            text.trim_end_matches('.'),
            "no trailing period: {text}"
        );
        assert!(starts_lowercase(error.message()), "not lowercase: {text}");
        for secret in ["s3cret", "hunter2"] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    /// Messages start lowercase: with a lowercase word, a quoted value or a setting's name
    /// (an all-caps identifier such as `PGAUTH_METHOD=...`), never a capitalised word.
    fn starts_lowercase(message: &str) -> bool {
        let word: String = message
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        match word.chars().next() {
            None => !message.is_empty(),
            Some(first) if first.is_lowercase() => true,
            Some(_) => word
                .chars()
                .all(|c| c.is_uppercase() || c.is_ascii_digit() || c == '_'),
        }
    }

    #[test]
    fn the_lowercase_check_can_fail() {
        assert!(!starts_lowercase("Set PGHOST"));
        assert!(!starts_lowercase(""));
        assert!(starts_lowercase("set PGHOST"));
        assert!(starts_lowercase("PGHOST is empty"));
        assert!(starts_lowercase("\"x\" is not a port"));
    }

    const AZ: (&str, &str) = ("PGHOST", "srv.postgres.database.azure.com");
    const RDS: (&str, &str) = ("PGHOST", "db.abc123.eu-west-1.rds.amazonaws.com");

    #[test]
    fn bad_settings_are_refused_with_the_setting_named() {
        check(
            &[("PGAUTH_METHOD", "bogus"), AZ],
            "PGAUTH_METHOD",
            "unknown method",
        );
        check(
            &[("PGAUTH_METHOD", "azure,aws"), AZ],
            "PGAUTH_METHOD",
            "more than one method",
        );
        check(
            &[("PGAUTH_METHOD", "azure aws"), AZ],
            "PGAUTH_METHOD",
            "more than one method",
        );
        check(
            &[("PGAUTH_METHOD", "azure"), AZ, ("PGPASSWORD", "s3cret")],
            "PGPASSWORD",
            "unset PGPASSWORD",
        );
        check(
            &[
                ("PGAUTH_METHOD", "aws"),
                (
                    "DATABASE_URL",
                    "postgres://u:hunter2@db.abc123.eu-west-1.rds.amazonaws.com/app",
                ),
            ],
            "PGPASSWORD",
            "token is the password",
        );
        check(
            &[
                ("PGAUTH_METHOD", "azure"),
                (
                    "DATABASE_URL",
                    "postgres://u@srv.postgres.database.azure.com/app?pgauth_method=aws",
                ),
            ],
            "DATABASE_URL pgauth_method",
            "two methods at once",
        );
        check(
            &[
                ("PGAUTH_METHOD", "aws"),
                RDS,
                ("PGUSER", "app"),
                ("PGAUTH_AZURE_CLOUD", "public"),
            ],
            "PGAUTH_AZURE_CLOUD",
            "Azure setting",
        );
        check(
            &[
                ("PGAUTH_METHOD", "azure"),
                AZ,
                ("PGAUTH_AWS_SIGNING_PORT", "5432"),
            ],
            "PGAUTH_AWS_SIGNING_PORT",
            "AWS setting",
        );
        check(
            &[RDS, ("PGUSER", "app"), ("PGAUTH_AWS_SIGNING_HOST", "x")],
            "PGAUTH_AWS_SIGNING_HOST",
            "PGHOSTADDR",
        );
        check(
            &[
                AZ,
                ("PGAUTH_AZURE_CLOUD", "public"),
                ("PGAUTH_AWS_SIGNING_PORT", "5432"),
            ],
            "PGAUTH_AZURE_CLOUD",
            "both an Azure setting",
        );
        check(&[("PGAUTH_METHOD", "azure")], "PGHOST", "no server host");
        check(
            &[("PGHOST", "db.internal")],
            "PGAUTH_METHOD",
            "cannot tell how to log in",
        );
        check(
            &[
                ("PGAUTH_METHOD", "password"),
                ("PGHOST", "db"),
                ("PGUSER", "u"),
            ],
            "PGPASSWORD",
            "needs a password",
        );
        check(
            &[("PGHOST", "db"), ("PGPASSWORD", "s3cret")],
            "PGUSER",
            "no user",
        );
        check(
            &[
                ("PGHOST", "db"),
                ("PGUSER", "u"),
                ("PGPASSWORD", "s3cret"),
                ("PGAUTH_FALLBACK_PASSWORD", "hunter2"),
            ],
            "PGAUTH_FALLBACK_PASSWORD",
            "only applies to token methods",
        );
        check(
            &[AZ, ("PGSSLMODE", "bogus")],
            "PGSSLMODE",
            "unknown sslmode",
        );
        check(&[AZ, ("PGSSLMODE", "disable")], "PGSSLMODE", "in clear");
        check(
            &[RDS, ("PGUSER", "app"), ("PGSSLMODE", "prefer")],
            "PGSSLMODE",
            "in clear",
        );
        check(
            &[
                ("PGAUTH_METHOD", "azure"),
                ("PGHOST", "10.0.0.5"),
                ("PGSSLMODE", "disable"),
                ("PGAUTH_INSECURE_LOOPBACK", "1"),
            ],
            "PGAUTH_INSECURE_LOOPBACK",
            "only for loopback",
        );
        check(
            &[
                ("PGHOST", "db"),
                ("PGUSER", "u"),
                ("PGPASSWORD", "s3cret"),
                ("PGAUTH_INSECURE_LOOPBACK", "1"),
            ],
            "PGAUTH_INSECURE_LOOPBACK",
            "only for loopback",
        );
        check(
            &[AZ, ("PGAUTH_INSECURE_LOOPBACK", "maybe")],
            "PGAUTH_INSECURE_LOOPBACK",
            "not a boolean",
        );
        check(&[AZ, ("PGPORT", "0")], "PGPORT", "not a port");
        check(&[AZ, ("PGPORT", "70000")], "PGPORT", "not a port");
        check(&[AZ, ("PGPORT", "abc")], "PGPORT", "not a port");
        check(
            &[AZ, ("PGCONNECT_TIMEOUT", "soon")],
            "PGCONNECT_TIMEOUT",
            "whole number",
        );
        check(
            &[("DATABASE_URL", "http://db/app")],
            "DATABASE_URL",
            "postgres://",
        );
        check(
            &[("DATABASE_URL", "postgres://u@db:99999/app")],
            "DATABASE_URL",
            "invalid port",
        );
        check(
            &[("DATABASE_URL", "postgres://u@[::1/app")],
            "DATABASE_URL",
            "invalid IPv6",
        );
        // Host lists are not supported yet, wherever they are written.
        check(
            &[
                ("PGHOST", "h1,h2"),
                ("PGPASSWORD", "s3cret"),
                ("PGUSER", "u"),
            ],
            "PGHOST",
            "several hosts",
        );
        check(
            &[("DATABASE_URL", "postgres://u:s3cret@db/app?host=h1,h2")],
            "PGHOST",
            "several hosts",
        );
        check(
            &[("DATABASE_URL", "postgres://u@h1:5432,h2:5432/app")],
            "DATABASE_URL",
            "several hosts",
        );
        check(
            &[AZ, ("PGHOSTADDR", "10.0.0.5,10.0.0.6")],
            "PGHOSTADDR",
            "several hosts",
        );
        // hostaddr is an address; the name stays in host.
        check(
            &[AZ, ("PGHOSTADDR", "db.internal")],
            "PGHOSTADDR",
            "not a numeric IP",
        );
        check(
            &[(
                "DATABASE_URL",
                "postgres://u@db/app?hostaddr=db.internal&pgauth_method=azure",
            )],
            "DATABASE_URL hostaddr",
            "not a numeric IP",
        );
        check(
            &[
                ("PGHOST", "/var/run/postgresql"),
                ("PGHOSTADDR", "127.0.0.1"),
                ("PGUSER", "u"),
                ("PGPASSWORD", "s3cret"),
            ],
            "PGHOSTADDR",
            "Unix socket",
        );
        // verify-ca with a token: only against a root file the user named.
        check(
            &[AZ, ("PGSSLMODE", "verify-ca")],
            "PGSSLMODE",
            "PGSSLROOTCERT",
        );
        check(
            &[AZ, ("PGSSLMODE", "verify-ca"), ("PGSSLROOTCERT", "system")],
            "PGSSLMODE",
            "PGHOSTADDR",
        );
        check(
            &[
                RDS,
                ("PGUSER", "app"),
                (
                    "DATABASE_URL",
                    "postgres://app@db.abc123.eu-west-1.rds.amazonaws.com/app?sslmode=verify-ca",
                ),
            ],
            "PGSSLMODE",
            "verify-full",
        );
        // The opt-out is for loopback: the dialled address decides, not the name.
        check(
            &[
                ("PGAUTH_METHOD", "azure"),
                ("PGHOST", "localhost"),
                ("PGHOSTADDR", "10.0.0.5"),
                ("PGSSLMODE", "disable"),
                ("PGAUTH_INSECURE_LOOPBACK", "1"),
            ],
            "PGAUTH_INSECURE_LOOPBACK",
            "only for loopback",
        );
        check(
            &[("DATABASE_URL", "postgres://u:pa%zzss@db/app")],
            "DATABASE_URL",
            "malformed %-escape",
        );
        check(
            &[("DATABASE_URL", "postgres://u@h1,h2/app?pgauth_method=azure")],
            "DATABASE_URL",
            "several hosts",
        );
        check(
            &[("DATABASE_URL", "postgres://u@db/app?sslmode")],
            "DATABASE_URL",
            "has no value",
        );
        check(
            &[("DATABASE_URL", "postgres://u@db/app?color=blue")],
            "DATABASE_URL",
            "unknown query parameter",
        );
        check(
            &[("DATABASE_URL", "postgres://u@db/app?sslmode=maybe")],
            "DATABASE_URL sslmode",
            "unknown sslmode",
        );
        check(&[RDS, ("PGAUTH_METHOD", "aws")], "PGUSER", "set PGUSER");
        check(
            &[
                ("PGAUTH_METHOD", "aws"),
                ("PGHOST", "db.internal"),
                ("PGUSER", "app"),
            ],
            "AWS_REGION",
            "set AWS_REGION",
        );
        check(
            &[("PGAUTH_METHOD", "aws"), RDS, ("PGUSER", "bad user/name")],
            "PGUSER",
            "",
        );
        check(
            &[
                ("PGAUTH_METHOD", "azure"),
                ("PGHOST", "srv.postgres.database.usgovcloudapi.net"),
            ],
            "PGAUTH_AZURE_CLOUD",
            "usgov",
        );
        check(
            &[AZ, ("PGAUTH_AZURE_CLOUD", "mars")],
            "PGAUTH_AZURE_CLOUD",
            "",
        );
        check(
            &[
                ("PGHOST", "db"),
                ("PGUSER", "u"),
                ("PGPASSWORD", "s3cret"),
                ("PGSSLMODE", "verify-full"),
                ("PGSSLROOTCERT", "/nonexistent/ca.pem"),
            ],
            "PGSSLROOTCERT",
            "not a readable file",
        );
    }

    /// URLs whose password holds an unencoded '/', '?', '#', '@' or '%': refused, and the
    /// message shows no piece of the password.
    #[test]
    fn unencoded_passwords_are_refused_without_showing_them() {
        for url in [
            "postgres://app:hun/ter2xyz@db.example.com/app",
            "postgres://app:hun?ter2xyz@db.example.com/app",
            "postgres://app:hun#ter2xyz@db.example.com/app",
            "postgres://app:hun@ter2xyz@db.example.com/app",
            "postgres://app:12/ter2xyz@db.example.com/app",
            "postgres://app:12?ter2xyz=1@db.example.com/app",
            "postgres://app:12?ter2xyz@db.example.com/app",
            "postgres://app:hun%zter2xyz@db.example.com/app",
            "postgres://app:hun ter2xyz@db.example.com:notaport/app",
        ] {
            let error = Settings::from_url(url).expect_err(url);
            let text = error.to_string();
            for piece in ["hun", "ter2xyz", "db.example.com", "12"] {
                assert!(!text.contains(piece), "{url}: {text}");
            }
            let via_env = Settings::from_env_vars(&env(&[("DATABASE_URL", url)]))
                .expect_err(url)
                .to_string();
            assert!(!via_env.contains("ter2xyz"), "{url}: {via_env}");
        }
        // Encoded, the same characters are fine.
        let s =
            Settings::from_url("postgres://app:hun%2F%3F%23%40%25ter2@db.example.com/app").unwrap();
        assert_eq!(
            s.password.as_ref().map(Secret::expose),
            Some("hun/?#@%ter2")
        );
        assert_eq!(s.host.as_deref(), Some("db.example.com"));
        // An '@' in a query value is no password: Entra user names hold one.
        let s = Settings::from_url(
            "postgres://srv.postgres.database.azure.com/app?user=alice@contoso.com",
        )
        .unwrap();
        assert_eq!(s.user.as_deref(), Some("alice@contoso.com"));
    }

    #[test]
    fn hostaddr_dials_an_address_and_keeps_the_name() {
        let s = Settings::from_env_vars(&env(&[AZ, ("PGHOSTADDR", "10.1.2.3")])).unwrap();
        assert_eq!(s.hostaddr, Some("10.1.2.3".parse().unwrap()));
        assert_eq!(s.host.as_deref(), Some("srv.postgres.database.azure.com"));
        assert_eq!(s.effective_ssl_mode().unwrap(), SslMode::VerifyFull);
        let s = Settings::from_url(
            "postgres://app@db.abc123.eu-west-1.rds.amazonaws.com:15432/app?hostaddr=127.0.0.1",
        )
        .unwrap();
        assert_eq!(s.hostaddr, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(s.port, 15432);
        assert_eq!(s.resolved_method().unwrap(), AuthMethod::Aws);
        let s =
            Settings::from_url("postgres://app@[::1]:5433/app?password=pw&hostaddr=[::1]").unwrap();
        assert_eq!(s.host.as_deref(), Some("::1"));
        // verify-ca is fine for a token when the roots come from a named file.
        let ca = std::env::temp_dir().join(format!("pgauth-ca-{}.pem", std::process::id()));
        std::fs::write(&ca, "not read by validation").unwrap();
        let s = Settings::from_env_vars(&env(&[
            AZ,
            ("PGSSLMODE", "verify-ca"),
            ("PGSSLROOTCERT", ca.to_str().unwrap()),
        ]));
        std::fs::remove_file(&ca).unwrap();
        assert_eq!(s.unwrap().effective_ssl_mode().unwrap(), SslMode::VerifyCa);
    }

    #[test]
    fn unix_socket_hosts_log_in_without_tls() {
        let s = Settings::from_env_vars(&env(&[
            ("PGHOST", "/var/run/postgresql"),
            ("PGUSER", "app"),
            ("PGPASSWORD", "s3cret"),
        ]))
        .unwrap();
        assert!(s.host_is_unix_socket());
        let policy = crate::tls::TlsPolicy::from_settings(&s).unwrap();
        assert!(policy.client_config().is_none());
        // A token over a local socket never crosses the network.
        let s = Settings::from_env_vars(&env(&[
            ("PGHOST", "/var/run/postgresql"),
            ("PGAUTH_METHOD", "azure"),
            ("PGUSER", "app"),
        ]))
        .unwrap();
        let policy = crate::tls::TlsPolicy::from_settings(&s).unwrap();
        assert!(policy.client_config().is_none());
    }

    #[test]
    fn good_settings_resolve() {
        let s = Settings::from_env_vars(&env(&[AZ])).unwrap();
        assert_eq!(s.resolved_method().unwrap(), AuthMethod::Azure);
        assert_eq!(s.effective_ssl_mode().unwrap(), SslMode::VerifyFull);
        let s = Settings::from_env_vars(&env(&[RDS, ("PGUSER", "app")])).unwrap();
        assert_eq!(s.resolved_method().unwrap(), AuthMethod::Aws);
        // An existing password configuration keeps working unchanged.
        let s = Settings::from_env_vars(&env(&[
            ("DATABASE_URL", "postgresql://app:s%40cret@db.internal:6432/orders?sslmode=require&application_name=api"),
            ("PGHOST", "ignored"),
        ]))
        .unwrap();
        assert_eq!(s.resolved_method().unwrap(), AuthMethod::Password);
        assert_eq!(s.host.as_deref(), Some("db.internal"));
        assert_eq!(s.port, 6432);
        assert_eq!(s.dbname.as_deref(), Some("orders"));
        assert_eq!(s.user.as_deref(), Some("app"));
        assert_eq!(s.password.as_ref().map(Secret::expose), Some("s@cret"));
        assert_eq!(s.application_name.as_deref(), Some("api"));
        assert_eq!(s.effective_ssl_mode().unwrap(), SslMode::Require);
        assert!(!format!("{s:?}").contains("s@cret"));
        // Loopback test set-ups may opt out of TLS explicitly.
        let s = Settings::from_env_vars(&env(&[
            ("PGAUTH_METHOD", "azure"),
            ("PGHOST", "127.0.0.1"),
            ("PGSSLMODE", "disable"),
            ("PGAUTH_INSECURE_LOOPBACK", "1"),
        ]))
        .unwrap();
        assert!(s.insecure_loopback);
        let s = Settings::from_url("postgres://u@[::1]:5433/db?pgauth_method=aws&sslmode=disable&pgauth_insecure_loopback=true").unwrap_err();
        assert_eq!(s.setting(), "AWS_REGION");
        assert_eq!(
            Settings::from_env_vars(&env(&[AZ, ("PGCONNECT_TIMEOUT", "1")]))
                .unwrap()
                .connect_timeout,
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn pool_options_refuse_what_a_pool_cannot_use() {
        let hour = Some(Duration::from_secs(3600));
        for (max_size, max_lifetime, expected) in [
            (0, hour, "max_size: must be at least 1"),
            (
                1,
                Some(Duration::ZERO),
                "max_lifetime: must be more than zero; pass None",
            ),
        ] {
            let error = check_pool_options(max_size, max_lifetime).unwrap_err();
            assert!(error.to_string().starts_with(expected), "{error}");
        }
        check_pool_options(1, None).unwrap();
        check_pool_options(10, hour).unwrap();
    }

    #[test]
    fn a_custom_source_makes_auto_custom_and_keeps_other_methods() {
        let auto = Settings::default().host("127.0.0.1").user("app");
        assert_eq!(auto.for_source(true).method, AuthMethod::Custom);
        assert!(matches!(auto.for_source(false), Cow::Borrowed(_)));
        let password = auto.clone().method(AuthMethod::Password);
        assert!(matches!(password.for_source(true), Cow::Borrowed(_)));
        assert_eq!(password.for_source(true).method, AuthMethod::Password);
    }
}
