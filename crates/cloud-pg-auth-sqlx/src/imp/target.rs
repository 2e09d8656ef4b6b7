//! sqlx connect options from the settings. sqlx never does TLS itself: it connects to the
//! engine's relay, which opens the server connection the way the other adapters do.

use std::fmt;

use cloud_pg_auth::net::Endpoint;
use cloud_pg_auth::tls::TlsPolicy;
use cloud_pg_auth::{AccessToken, ConfigError, Settings, chain_text};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::error::is_auth_failure;
use super::{Error, sqlx};
use crate::relay::{CANNOT_CONNECT_NOW, Relay, UNABLE_TO_CONNECT};

/// What every connection of one engine shares: server, database, route and user. The
/// password is added per token by [`Target::options_for`]. Never printed: sqlx's
/// `PgConnectOptions` shows its password in `Debug`.
pub(crate) struct Target {
    options: PgConnectOptions,
    user: Option<String>,
    endpoint: Endpoint,
    /// `None` when the host is a Unix socket directory: sqlx connects there directly
    /// (PostgreSQL does no TLS over a Unix socket).
    relay: Option<Relay>,
}

impl Target {
    /// Validates the settings, decides TLS and the address with the core (as for every
    /// adapter), and binds the engine's relay.
    pub(crate) fn from_settings(settings: &Settings) -> Result<Self, Error> {
        settings.validate()?;
        let endpoint = Endpoint::from_settings(settings)?;
        let policy = TlsPolicy::from_settings(settings)?;
        // `new_without_pgpass` reads PG* variables; every field that matters is set below,
        // and the password only ever comes from a token. TLS is the relay's, so sqlx's
        // `ssl_root_cert` (added to the public roots by sqlx) is never given.
        let mut options = PgConnectOptions::new_without_pgpass()
            .host(endpoint.host())
            .port(endpoint.port())
            .ssl_mode(PgSslMode::Disable)
            .password("");
        if let Some(db) = &settings.dbname {
            options = options.database(db);
        }
        if let Some(app) = &settings.application_name {
            options = options.application_name(app);
        }
        let relay = match endpoint.unix_socket_dir() {
            Some(dir) => {
                options = options.socket(dir);
                None
            }
            None => {
                let relay = Relay::bind(endpoint.clone(), policy, settings.connect_timeout)?;
                options = route(options, &relay, &endpoint);
                Some(relay)
            }
        };
        Ok(Self {
            options,
            user: settings.user.clone(),
            endpoint,
            relay,
        })
    }

    /// Makes sure the relay accepts connections (on the current runtime).
    pub(crate) fn ensure_relay(&self) -> Result<(), Error> {
        match &self.relay {
            Some(relay) => Ok(relay.ensure_running()?),
            None => Ok(()),
        }
    }

    /// Stops the relay and removes its socket directory.
    pub(crate) async fn stop_relay(&self) {
        if let Some(relay) = &self.relay {
            relay.stop().await;
        }
    }

    #[cfg(test)]
    pub(crate) fn relay(&self) -> Option<&Relay> {
        self.relay.as_ref()
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
            "{} as {}",
            self.endpoint.label(),
            self.user.as_deref().unwrap_or("<user from token>")
        )
    }

    /// A failed login as the core reports it. When the relay could not open the server
    /// connection (dial, TLS, certificate), that is the core's typed error, with its
    /// explanation.
    pub(crate) fn login_error(&self, error: sqlx::Error, refused_twice: bool) -> Error {
        if let sqlx::Error::Database(db) = &error
            && matches!(
                db.code().as_deref(),
                Some(UNABLE_TO_CONNECT | CANNOT_CONNECT_NOW)
            )
            && let Some(cause) = self
                .relay
                .as_ref()
                .and_then(|relay| relay.take_failure(db.message()))
        {
            return Error::Auth(cause);
        }
        let text = chain_text(&error);
        let user = self.user.as_deref().unwrap_or("<user from token>");
        let message = if is_auth_failure(&error) && refused_twice {
            format!(
                "the server refused the credentials twice, also with the newest token available ({text}); check that the role {user:?} exists and is mapped to this identity (Azure: pgaadauth_create_principal; AWS: GRANT rds_iam), and see docs/troubleshooting.md"
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

/// `options` pointed at the relay, without TLS (the relay does it).
fn route(options: PgConnectOptions, relay: &Relay, endpoint: &Endpoint) -> PgConnectOptions {
    #[cfg(unix)]
    {
        options.socket(relay.socket_dir()).port(endpoint.port())
    }
    #[cfg(not(unix))]
    {
        let _ = endpoint;
        options.host("127.0.0.1").port(relay.local_port())
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("target", &self.label())
            .field("relay", &self.relay.is_some())
            .finish_non_exhaustive()
    }
}
