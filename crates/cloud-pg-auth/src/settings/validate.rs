//! Checking settings together, with errors that name the setting to change.

use std::time::Duration;

use super::parse::HOST_LIST;
use super::{AuthMethod, RootCerts, Settings, SslMode};
use crate::error::ConfigError;
use crate::input::is_loopback;

impl Settings {
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
        if crate::aws::dsql::is_dsql_host(host) {
            return Ok(AuthMethod::Dsql);
        }
        if crate::aws::is_rds_host(host) {
            return Ok(AuthMethod::Aws);
        }
        Err(ConfigError::new(
            "PGAUTH_METHOD",
            "cannot tell how to log in: set PGAUTH_METHOD to password, azure, aws, dsql or gcp (auto picks password when PGPASSWORD is set, azure for *.postgres.database.azure.com hosts, aws for *.rds.amazonaws.com hosts, dsql for *.dsql.<region>.on.aws hosts; never gcp, whose hosts do not say they are google's)",
        ))
    }

    pub(super) fn resolved_method_lenient(&self) -> Option<AuthMethod> {
        self.resolved_method().ok()
    }

    /// What [`Settings::from_env`] and [`Settings::from_url`] check: all of
    /// [`Settings::validate`], except that `auto` with nothing to decide by (no password, a
    /// host of no known cloud) is left to a token source given to the engine's builder
    /// (`token_source(..)`). Such settings are checked as a custom source's, the user aside:
    /// the engine's build checks it (PGUSER) or, without a source, says it cannot tell how
    /// to log in.
    pub(super) fn validate_read(&self) -> Result<(), ConfigError> {
        if self.method != AuthMethod::Auto || self.resolved_method().is_ok() {
            return self.validate();
        }
        match self.clone().for_custom_source().validate() {
            Err(e) if e.setting() == "PGUSER" && self.user.is_none() => Ok(()),
            other => other,
        }
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
        self.validate_session()?;
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
            AuthMethod::Azure
            | AuthMethod::Aws
            | AuthMethod::Dsql
            | AuthMethod::Gcp
            | AuthMethod::Custom => {
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
                            "no user for the custom token source to log in as; set PGUSER or give a user in DATABASE_URL",
                        ));
                    }
                } else if method == AuthMethod::Azure {
                    self.azure.check_host(host)?;
                } else if method == AuthMethod::Dsql {
                    self.check_dsql(host)?;
                } else if method == AuthMethod::Gcp {
                    self.check_gcp_user()?;
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
        if method != AuthMethod::Dsql && self.aws.dsql_token_expires.is_some() {
            return Err(ConfigError::new(
                crate::aws::dsql::TOKEN_EXPIRES_VAR,
                format!(
                    "sets the lifetime of aurora dsql tokens but the method is {}; unset it or set PGAUTH_METHOD=dsql",
                    method.as_str()
                ),
            ));
        }
        self.check_fallback_user(method)?;
        self.check_migration_identity(method)?;
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

    /// Aurora DSQL: the endpoint name in the host (SNI and the token), a role, a region, a
    /// token lifetime in range and no signing port (DSQL tokens name no port).
    fn check_dsql(&self, host: &str) -> Result<(), ConfigError> {
        if self.host_is_unix_socket() {
            return Err(ConfigError::new(
                "PGHOST",
                "is a unix socket directory, but aurora dsql is reached over tls by its endpoint name; set PGHOST to <cluster-id>.dsql.<region>.on.aws",
            ));
        }
        crate::aws::dsql::signing_host(host, "PGHOST")?;
        if self.user.is_none() {
            return Err(ConfigError::new(
                "PGUSER",
                "aurora dsql needs the role to log in as; set PGUSER to admin or to a role mapped with AWS IAM GRANT",
            ));
        }
        // DSQL has no password logins at all: a fallback password could never log in.
        if self.fallback_password.is_some() {
            return Err(ConfigError::new(
                "PGAUTH_FALLBACK_PASSWORD",
                "aurora dsql accepts no password logins, so a fallback password cannot work; unset it",
            ));
        }
        if self.aws.signing_port.is_some() {
            return Err(ConfigError::new(
                "PGAUTH_AWS_SIGNING_PORT",
                "aurora dsql tokens name no port; unset it (a tunnel's address and port go in PGHOSTADDR and PGPORT)",
            ));
        }
        crate::aws::dsql::check_token_expires(self.aws.get_dsql_token_expires())?;
        if self.aws.region.is_none() && crate::aws::region_from_host(host).is_none() {
            return Err(ConfigError::new(
                "AWS_REGION",
                format!(
                    "not set and {host:?} is not an aurora dsql endpoint (<cluster-id>.dsql.<region>.on.aws) to read the region from; set AWS_REGION"
                ),
            ));
        }
        Ok(())
    }

    /// Google: `PGUSER` is optional (derived from the principal's email); when set, it must
    /// not keep a service account's `.gserviceaccount.com`, which the database user drops.
    fn check_gcp_user(&self) -> Result<(), ConfigError> {
        let Some(user) = self.user.as_deref() else {
            return Ok(());
        };
        let suffix = crate::gcp::SERVICE_ACCOUNT_SUFFIX;
        if let Some(stem) =
            crate::gcp::strip_service_account_suffix(user).filter(|stem| !stem.is_empty())
        {
            return Err(ConfigError::new(
                "PGUSER",
                format!(
                    "{user:?} keeps {suffix}, but a service account's database user is its email without it; set PGUSER={stem:?} or unset PGUSER to derive it"
                ),
            ));
        }
        Ok(())
    }

    /// Checks a pool's max connection lifetime (`max_lifetime`, `None`: no limit) against
    /// the server's own limit: Aurora DSQL closes connections after 60 minutes, so a pool
    /// must replace them sooner (the default, 55 minutes, does).
    pub fn check_max_lifetime(&self, max_lifetime: Option<Duration>) -> Result<(), ConfigError> {
        let Some(limit) = self
            .resolved_method()
            .ok()
            .and_then(AuthMethod::server_connection_limit)
        else {
            return Ok(());
        };
        match max_lifetime {
            Some(lifetime) if lifetime < limit => Ok(()),
            _ => Err(ConfigError::new(
                "max_lifetime",
                format!(
                    "is {}, but aurora dsql closes connections after {} minutes; set max_lifetime below that (the default, 55 minutes, is)",
                    max_lifetime.map_or("no limit".to_string(), |l| format!("{} s", l.as_secs())),
                    limit.as_secs() / 60
                ),
            )),
        }
    }

    /// Whether migration engines may run with these settings: Aurora DSQL has no advisory
    /// locks (the runners' lock) and runs one DDL statement per transaction, never mixed with
    /// DML (the runners' history table), so they refuse there.
    pub fn check_migration_support(&self) -> Result<(), ConfigError> {
        match self.resolved_method() {
            Ok(method) if !method.supports_migrations() => Err(ConfigError::new(
                "PGAUTH_METHOD",
                "aurora dsql has no advisory locks and runs one ddl statement per transaction without dml, so the migration engines cannot run there; apply schema changes with a dsql-aware tool (one ddl per transaction, no locks), see docs/dsql.md",
            )),
            _ => Ok(()),
        }
    }

    /// The fallback role is a password role for token methods: it needs the fallback
    /// password and a method whose own login is a token.
    fn check_fallback_user(&self, method: AuthMethod) -> Result<(), ConfigError> {
        let Some(user) = &self.fallback_user else {
            return Ok(());
        };
        let error = |message: &str| Err(ConfigError::new("PGAUTH_FALLBACK_USER", message));
        if user.is_empty() || user.contains('\0') {
            return error("is empty or contains a NUL byte");
        }
        if !method.is_token() {
            return error("only applies to token methods (azure, aws); unset it");
        }
        if self.fallback_password.is_none() {
            return error(
                "names the role the fallback password logs in as, but no fallback password is set; set PGAUTH_FALLBACK_PASSWORD or unset PGAUTH_FALLBACK_USER",
            );
        }
        Ok(())
    }

    pub(super) fn dialled_label(&self) -> String {
        match self.hostaddr {
            Some(addr) => format!("{addr} (PGHOSTADDR)"),
            None => format!("{:?}", self.host.as_deref().unwrap_or_default()),
        }
    }
}
