//! The adapter's error.

use std::time::Duration;

use cloud_pg_auth::login::is_refused_login;

use super::sqlx;
use crate::relay::RelayError;

/// What can go wrong in this crate. Causes stay in the [`source`](std::error::Error::source)
/// chain: a token failure reaches the caller of [`PooledEngine::get`](super::PooledEngine::get)
/// with the identity endpoint's own error underneath.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Settings, token, TLS or login trouble (from `cloud-pg-auth`; a refused or failed
    /// login carries sqlx's error as its source).
    #[error(transparent)]
    Auth(cloud_pg_auth::Error),
    /// A statement failed or the connection broke.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// A migration run failed.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The pool gave no connection in time. `cause` is why a new connection could not be
    /// opened, when that was the reason (sqlx retries refused connections until the timeout
    /// and reports only the timeout).
    #[error("timed out after {waited:?} waiting for a connection; {}", timeout_hint(cause.is_some()))]
    Timeout {
        /// The configured connection timeout.
        waited: Duration,
        /// Why the last connection attempt failed, if one did.
        #[source]
        cause: Option<Box<Error>>,
    },
    /// The engine's local relay could not be started: sqlx connects, without TLS, to a
    /// private socket of the engine, which does TLS itself (see the crate documentation).
    #[error(
        "cannot start the engine's local relay at {place}; set TMPDIR to a short directory this user can write"
    )]
    Relay {
        /// The socket path or directory.
        place: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The engine was disposed.
    #[error("the engine was disposed; create a new one")]
    Disposed,
}

fn timeout_hint(has_cause: bool) -> &'static str {
    if has_cause {
        "a new connection could not be opened"
    } else {
        "raise connection_timeout or max_size, and check the engine status"
    }
}

impl Error {
    /// Whether the server refused the credentials (a SQLSTATE of
    /// [`REFUSED_LOGIN_SQLSTATES`](cloud_pg_auth::login::REFUSED_LOGIN_SQLSTATES)).
    #[must_use]
    pub fn is_auth_failure(&self) -> bool {
        match self {
            Self::Auth(e) => e.is_auth_failure(),
            Self::Sqlx(e) => is_refused_login(sqlstate(e).as_deref()),
            Self::Timeout {
                cause: Some(cause), ..
            } => cause.is_auth_failure(),
            _ => false,
        }
    }
}

/// The SQLSTATE the server sent with sqlx's error, if any.
pub(crate) fn sqlstate(error: &sqlx::Error) -> Option<String> {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|code| code.into_owned())
}

cloud_pg_auth::adapter_error_conversions!(Error);

impl From<RelayError> for Error {
    fn from(error: RelayError) -> Self {
        Self::Relay {
            place: error.place,
            source: error.source,
        }
    }
}
