//! sqlx connect options from the settings, on the core's login layer: the user, the TLS
//! decision, retry-once and failed-login explanations are `LoginTarget`'s. sqlx never does
//! TLS itself: it connects to the engine's relay, which opens the server connection the way
//! the other adapters do.

use std::fmt;
use std::future::Future;

use cloud_pg_auth::login::{AttemptError, LoginStats, LoginTarget};
use cloud_pg_auth::{AccessToken, Settings};
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
    relay: Relay,
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
        // Malformed options (and a NUL byte) were refused by `LoginTarget::from_settings`.
        // The relay sends the server exactly these options, in place of what sqlx sends (it
        // always sends the PGOPTIONS of this process's environment, and can only append to
        // it): the caller's own, then the settings', so that the settings' win.
        let options_sent = join_options(
            base.as_ref().and_then(callers_options),
            settings.get_options(),
        );
        // sqlx has no constructor that reads nothing: `new_without_pgpass` reads PGHOST,
        // PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE, PGSSLROOTCERT, PGSSLCERT, PGSSLKEY,
        // PGAPPNAME and PGOPTIONS. Each is overwritten below or by the relay (PGOPTIONS),
        // except the three certificate paths (unused: sqlx reads them only for TLS, and it
        // is told `disable`).
        let mut options = base
            .unwrap_or_else(PgConnectOptions::new_without_pgpass)
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
        // Every host goes through the relay, a socket directory too: it applies the
        // options above, the keepalives and target_session_attrs, which sqlx cannot.
        let relay = Relay::bind(
            endpoint.clone(),
            login.tls().clone(),
            settings,
            options_sent,
        )?;
        let options = route(options, &relay, endpoint.port());
        Ok(Self {
            options,
            dbname,
            login,
            relay,
        })
    }

    /// Makes sure the relay accepts connections (on the current runtime).
    pub(crate) fn ensure_relay(&self) -> Result<(), Error> {
        Ok(self.relay.ensure_running()?)
    }

    /// Stops the relay and removes its socket directory.
    pub(crate) async fn stop_relay(&self) {
        self.relay.stop().await;
    }

    #[cfg(test)]
    pub(crate) fn relay(&self) -> &Relay {
        &self.relay
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
        self.relay.take_failure(db.message())
    }
}

/// The `options` a caller's base adds to the `PGOPTIONS` sqlx read from the environment
/// (every sqlx constructor starts from it; its setter appends).
fn callers_options(base: &PgConnectOptions) -> Option<String> {
    let inherited = PgConnectOptions::new_without_pgpass()
        .get_options()
        .map(str::to_owned);
    without_inherited(base.get_options()?, inherited.as_deref())
}

/// `all` without the leading `inherited` options, `None` when nothing is left.
pub(crate) fn without_inherited(all: &str, inherited: Option<&str>) -> Option<String> {
    let all = all.trim();
    let inherited = inherited.map(str::trim).filter(|i| !i.is_empty());
    let own = match inherited.and_then(|i| all.strip_prefix(i)) {
        Some(rest) if rest.is_empty() || rest.starts_with(' ') => rest.trim_start(),
        _ => all,
    };
    (!own.is_empty()).then(|| own.to_owned())
}

/// Two `options` strings as one, `None` when both are absent.
pub(crate) fn join_options(first: Option<String>, second: Option<&str>) -> Option<String> {
    match (first, second) {
        (Some(first), Some(second)) => Some(format!("{first} {second}")),
        (first, second) => first.or_else(|| second.map(str::to_owned)),
    }
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
            .finish_non_exhaustive()
    }
}
