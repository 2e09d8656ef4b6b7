//! sqlx connect options from the settings, on the core's login layer: the user, the TLS
//! decision, retry-once and failed-login explanations are `LoginTarget`'s. sqlx never does
//! TLS itself: it connects to the engine's relay, which opens the server connection the way
//! the other adapters do.

use std::fmt;
use std::future::Future;

use cloud_pg_auth::login::{AttemptError, LoginStats, LoginTarget};
use cloud_pg_auth::{AccessToken, ConfigError, Settings, TargetSessionAttrs};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::error::sqlstate;
use super::{Error, sqlx};
use crate::relay::{CANNOT_CONNECT_NOW, Relay, UNABLE_TO_CONNECT};

/// What every connection of one engine shares: server, database, route, the login target
/// (user, TLS decision, counters). The password is added per token by
/// [`Target::options_for`]. Never printed: sqlx's `PgConnectOptions` shows its password in
/// `Debug`.
pub(crate) struct Target {
    options: PgConnectOptions,
    /// The settings' database; `None` means the login user's name, as in libpq.
    dbname: Option<String>,
    login: LoginTarget,
    /// `None` when the host is a Unix socket directory: sqlx connects there directly
    /// (PostgreSQL does no TLS over a Unix socket).
    relay: Option<Relay>,
}

impl Target {
    /// Validates the settings, takes the login target (address, TLS decision) from the core,
    /// as every adapter does, and binds the engine's relay.
    pub(crate) fn from_settings(settings: &Settings) -> Result<Self, Error> {
        Self::with_base(settings, None)
    }

    /// As [`Target::from_settings`], keeping the non-routing fields of the caller's `base`
    /// (statement cache, logging, extra float digits, `options`, application name unless the
    /// settings name one). Where the connection goes and how it logs in is always the
    /// settings' and the relay's.
    pub(crate) fn with_base(
        settings: &Settings,
        base: Option<PgConnectOptions>,
    ) -> Result<Self, Error> {
        let login = LoginTarget::from_settings(settings)?;
        let endpoint = login.endpoint().clone();
        let dbname = settings.get_dbname().map(str::to_owned);
        let own_base = base.is_none();
        // sqlx has no constructor that reads nothing: `new_without_pgpass` reads PGHOST,
        // PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, PGSSLROOTCERT, PGSSLCERT, PGSSLKEY,
        // PGAPPNAME and PGOPTIONS. Each is overwritten below, except the three certificate
        // paths (unused: sqlx reads them only for TLS, and it is told `disable`) and
        // PGOPTIONS, which sqlx can only append to (see `warn_inherited_options`).
        if settings.get_target_session_attrs() != TargetSessionAttrs::Any {
            // sqlx checks no session property after login; refuse rather than ignore.
            return Err(cloud_pg_auth::Error::Config(ConfigError::new(
                "PGTARGETSESSIONATTRS",
                format!(
                    "is {} but the sqlx adapter cannot check it (sqlx has no target_session_attrs); unset it, or use the deadpool, bb8 or diesel-async adapter",
                    settings.get_target_session_attrs().as_str()
                ),
            ))
            .into());
        }
        let pairs = settings
            .get_option_pairs()
            .map_err(cloud_pg_auth::Error::Config)?;
        let base = base.unwrap_or_else(PgConnectOptions::new_without_pgpass);
        // Settings read from this process's environment carry the PGOPTIONS sqlx already
        // read: sent once, not twice.
        let inherited = own_base
            .then(|| base.get_options().map(str::to_owned))
            .flatten()
            .filter(|o| !o.trim().is_empty());
        let already_sent = inherited.is_some() && inherited.as_deref() == settings.get_options();
        if !already_sent {
            warn_inherited_options(inherited.as_deref());
        }
        let mut options = if already_sent || pairs.is_empty() {
            base
        } else {
            with_server_options(base, pairs)
        };
        options = options
            .host(endpoint.host())
            .port(endpoint.port())
            .ssl_mode(PgSslMode::Disable)
            .username(settings.get_user().unwrap_or_default())
            .password("");
        // libpq's default database is the user's name; set even then, so that PGDATABASE
        // (or the caller's options) never picks another.
        options = options.database(
            dbname
                .as_deref()
                .or(settings.get_user())
                .unwrap_or_default(),
        );
        if let Some(app) = settings.get_application_name() {
            options = options.application_name(app);
        } else if own_base {
            // The server's default, sent so that PGAPPNAME is not.
            options = options.application_name("");
        }
        let relay = match endpoint.unix_socket_dir() {
            Some(dir) => {
                options = options.socket(dir);
                None
            }
            None => {
                let relay = Relay::bind(
                    endpoint.clone(),
                    login.tls().clone(),
                    settings.get_connect_timeout(),
                )?;
                options = route(options, &relay, endpoint.port());
                Some(relay)
            }
        };
        Ok(Self {
            options,
            dbname,
            login,
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

    /// The options for logging in with `token`, as the user the core resolves.
    pub(crate) fn options_for(
        &self,
        token: &AccessToken,
    ) -> Result<PgConnectOptions, cloud_pg_auth::Error> {
        let user = self.login.user_for(token)?;
        Ok(self
            .options
            .clone()
            .database(self.dbname.as_deref().unwrap_or(&user))
            .username(&user)
            .password(token.secret().expose()))
    }

    /// `host:port as user`, for messages.
    pub(crate) fn label(&self) -> String {
        self.login.label()
    }

    /// Counts a physical connection opened.
    pub(crate) fn count_opened(&self) {
        self.login.count_opened();
    }

    /// The login counters.
    pub(crate) fn stats(&self) -> LoginStats {
        self.login.stats()
    }

    /// The core's retry-once over sqlx logins (see [`LoginTarget::retry_once`]).
    pub(crate) async fn retry_once<T, F, Fut>(&self, attempt: F) -> Result<T, Error>
    where
        F: FnMut(cloud_pg_auth::login::Attempt) -> Fut,
        Fut: Future<Output = Result<T, AttemptError<sqlx::Error>>>,
    {
        Ok(self.login.retry_once(attempt).await?)
    }

    /// sqlx's login error as an attempt's failure. When the relay could not open the server
    /// connection (dial, TLS, certificate), that is the core's typed error, which never
    /// reached a server's verdict.
    pub(crate) fn attempt_error(&self, error: sqlx::Error) -> AttemptError<sqlx::Error> {
        match self.relay_failure(&error) {
            Some(cause) => AttemptError::Before(cause),
            None => AttemptError::Server {
                sqlstate: sqlstate(&error),
                error,
            },
        }
    }

    /// A failed login as the core reports it (the relay's typed error first).
    pub(crate) fn login_error(&self, error: sqlx::Error) -> Error {
        match self.attempt_error(error) {
            AttemptError::Before(cause) => cause.into(),
            AttemptError::Server { error, sqlstate } => {
                self.login.login_error(error, sqlstate, false).into()
            }
        }
    }

    /// The relay's typed error, when sqlx's error is the relay's answer for it.
    fn relay_failure(&self, error: &sqlx::Error) -> Option<cloud_pg_auth::Error> {
        let sqlx::Error::Database(db) = error else {
            return None;
        };
        if !matches!(
            db.code().as_deref(),
            Some(UNABLE_TO_CONNECT | CANNOT_CONNECT_NOW)
        ) {
            return None;
        }
        self.relay
            .as_ref()
            .and_then(|relay| relay.take_failure(db.message()))
    }
}

/// sqlx's `options` setter appends, so a `PGOPTIONS` read by `new_without_pgpass` cannot be
/// taken out; say so rather than let it change every session unnoticed.
fn warn_inherited_options(inherited: Option<&str>) {
    if inherited.is_some_and(|o| !o.is_empty()) {
        tracing::warn!(
            "PGOPTIONS is set in this process's environment and sqlx sends it with every login \
             before the settings' options (it cannot be removed through sqlx's API); unset it, \
             or read the settings from this environment so that they agree"
        );
    }
}

/// Appends the settings' server options (`-c name=value` pairs). sqlx 0.9 escapes spaces and
/// backslashes in what it is given; sqlx 0.8 writes them as they are, so they are escaped
/// here first, the way the server reads them.
fn with_server_options(base: PgConnectOptions, pairs: Vec<(String, String)>) -> PgConnectOptions {
    let probe = base.clone().options([("p", "a b")]);
    let escapes = probe.get_options().is_some_and(|o| o.ends_with(r"a\ b"));
    if escapes {
        return base.options(pairs);
    }
    let escape = |s: &str| s.replace('\\', r"\\").replace(' ', r"\ ");
    base.options(pairs.iter().map(|(k, v)| (escape(k), escape(v))))
}

/// `options` pointed at the relay, without TLS (the relay does it).
fn route(options: PgConnectOptions, relay: &Relay, port: u16) -> PgConnectOptions {
    #[cfg(unix)]
    {
        options.socket(relay.socket_dir()).port(port)
    }
    #[cfg(not(unix))]
    {
        let _ = port;
        options.host("127.0.0.1").port(relay.local_port())
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("login", &self.login)
            .field("relay", &self.relay.is_some())
            .finish_non_exhaustive()
    }
}
