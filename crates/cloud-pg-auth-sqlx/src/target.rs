//! sqlx connect options from the settings, under the same TLS rules as the other adapters.

use std::fmt;
use std::fmt::Write as _;

use base64::Engine as _;
use cloud_pg_auth::{AccessToken, ConfigError, RootCerts, Settings, SslMode, chain_text};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::Error;
use crate::error::is_auth_failure;

/// What every connection of one engine shares: server, database, TLS and user. The password
/// is added per token by [`Target::options_for`]. Never printed: sqlx's `PgConnectOptions`
/// shows its password in `Debug`.
pub(crate) struct Target {
    options: PgConnectOptions,
    user: Option<String>,
    host: String,
    port: u16,
    ssl_mode: PgSslMode,
}

impl Target {
    /// Validates the settings and maps them to sqlx options.
    ///
    /// sqlx's `require` never checks the certificate, so a token method gets `verify-full`
    /// unless the settings ask for `verify-ca`; a mode that does not verify is accepted only
    /// with the loopback-only opt-in (`PGAUTH_INSECURE_LOOPBACK`).
    pub(crate) fn from_settings(settings: &Settings) -> Result<Self, Error> {
        settings.validate()?;
        // sqlx builds some rustls verifiers with the process-default provider.
        cloud_pg_auth::tls::install_default_provider();
        let method = settings.resolved_method()?;
        let mode = settings.effective_ssl_mode()?;
        let insecure_ok = settings.insecure_loopback && settings.host_is_loopback();
        let ssl_mode = match mode {
            SslMode::VerifyFull => PgSslMode::VerifyFull,
            SslMode::VerifyCa => PgSslMode::VerifyCa,
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Require | SslMode::Prefer if method.is_token() && insecure_ok => {
                PgSslMode::Require
            }
            SslMode::Require | SslMode::Prefer if method.is_token() => PgSslMode::VerifyFull,
            // A root file given with `require` means verify-ca in libpq.
            SslMode::Require if matches!(settings.root_certs, RootCerts::File(_)) => {
                PgSslMode::VerifyCa
            }
            SslMode::Require => PgSslMode::Require,
            _ => PgSslMode::Prefer,
        };
        if method.is_token()
            && !matches!(ssl_mode, PgSslMode::VerifyCa | PgSslMode::VerifyFull)
            && !insecure_ok
        {
            return Err(ConfigError::new(
                "PGSSLMODE",
                format!(
                    "{} would send the token to a server whose certificate is not checked; use verify-full",
                    mode.as_str()
                ),
            )
            .into());
        }
        let host = settings.host.clone().unwrap_or_default();
        // `new_without_pgpass` reads PG* variables; every field that matters is set below,
        // and the password only ever comes from a token.
        let mut options = PgConnectOptions::new_without_pgpass()
            .host(&host)
            .port(settings.port)
            .ssl_mode(ssl_mode)
            .password("");
        if let Some(db) = &settings.dbname {
            options = options.database(db);
        }
        if let Some(app) = &settings.application_name {
            options = options.application_name(app);
        }
        if matches!(ssl_mode, PgSslMode::VerifyCa | PgSslMode::VerifyFull) {
            match &settings.root_certs {
                RootCerts::Bundled => {}
                RootCerts::File(path) => options = options.ssl_root_cert(path),
                RootCerts::System => options = options.ssl_root_cert_from_pem(system_roots_pem()?),
                other => {
                    return Err(ConfigError::new(
                        "PGSSLROOTCERT",
                        format!("{other:?} is not supported by the sqlx adapter; give a PEM file"),
                    )
                    .into());
                }
            }
        }
        Ok(Self {
            options,
            user: settings.user.clone(),
            host,
            port: settings.port,
            ssl_mode,
        })
    }

    #[cfg(test)]
    pub(crate) fn ssl_mode(&self) -> PgSslMode {
        self.ssl_mode
    }

    /// The options without any password (installed when an engine is disposed).
    pub(crate) fn base_options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    /// The login name for `token`: the settings' user, or the one the token names.
    pub(crate) fn user_for(&self, token: &AccessToken) -> Result<String, Error> {
        if let Some(user) = &self.user {
            return Ok(user.clone());
        }
        token.details().username.clone().ok_or_else(|| {
            ConfigError::new(
                "PGUSER",
                "not set, and the token names no user (no xms_mirid, upn, preferred_username or unique_name claim); set PGUSER to the identity's display name (the PostgreSQL role created for it)",
            )
            .into()
        })
    }

    /// The options for logging in with `token`.
    pub(crate) fn options_for(&self, token: &AccessToken) -> Result<PgConnectOptions, Error> {
        let user = self.user_for(token)?;
        Ok(self
            .options
            .clone()
            .username(&user)
            .password(token.secret().expose()))
    }

    /// `host:port as user`, for messages.
    pub(crate) fn label(&self) -> String {
        format!(
            "{}:{} as {}",
            self.host,
            self.port,
            self.user.as_deref().unwrap_or("<user from token>")
        )
    }

    /// A failed login as the core reports it, with a hint where one helps.
    pub(crate) fn login_error(&self, error: sqlx::Error, refused_twice: bool) -> Error {
        let text = chain_text(&error);
        let user = self.user.as_deref().unwrap_or("<user from token>");
        let message = if is_auth_failure(&error) && refused_twice {
            format!(
                "the server refused the credentials twice, the second time with a new token ({text}); check that the role {user:?} exists and is mapped to this identity (Azure: pgaadauth_create_principal; AWS: GRANT rds_iam), and see docs/troubleshooting.md"
            )
        } else if text.contains("UnknownIssuer") || text.contains("invalid peer certificate") {
            format!(
                "the server's certificate is not trusted ({text}); set PGSSLROOTCERT to the CA bundle that signs it (for RDS, the global bundle from AWS)"
            )
        } else if text.contains("NotValidForName") {
            format!(
                "the server's certificate does not name this host ({text}); connect by the name in the certificate or use sslmode=verify-ca"
            )
        } else {
            text
        };
        Error::Auth(cloud_pg_auth::Error::Connect {
            target: self.label(),
            message,
            source: Box::new(error),
        })
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("target", &self.label())
            .field("ssl_mode", &self.ssl_mode)
            .finish_non_exhaustive()
    }
}

/// The operating system's roots as PEM, the form sqlx takes extra roots in (added to the
/// Mozilla roots sqlx always trusts).
fn system_roots_pem() -> Result<Vec<u8>, Error> {
    let found = rustls_native_certs::load_native_certs();
    if found.certs.is_empty() {
        return Err(ConfigError::new(
            "PGSSLROOTCERT",
            "sslrootcert=system found no certificates in the operating system's store; give a PEM file",
        )
        .into());
    }
    let mut pem = String::new();
    for cert in found.certs {
        let body = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in body.as_bytes().chunks(64) {
            let _ = writeln!(pem, "{}", String::from_utf8_lossy(line));
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    Ok(pem.into_bytes())
}
