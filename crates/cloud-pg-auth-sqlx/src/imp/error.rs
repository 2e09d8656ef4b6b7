use std::time::Duration;

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
    /// Whether the server refused the credentials (SQLSTATE 28P01 or 28000).
    #[must_use]
    pub fn is_auth_failure(&self) -> bool {
        match self {
            Self::Auth(cloud_pg_auth::Error::Connect { source, .. }) => source
                .downcast_ref::<sqlx::Error>()
                .is_some_and(is_auth_failure),
            Self::Auth(e) => e.is_auth_failure(),
            Self::Sqlx(e) => is_auth_failure(e),
            Self::Timeout {
                cause: Some(cause), ..
            } => cause.is_auth_failure(),
            _ => false,
        }
    }
}

/// Whether sqlx's error is the server refusing the login (SQLSTATE 28P01 or 28000).
pub(crate) fn is_auth_failure(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(e) => matches!(e.code().as_deref(), Some("28P01" | "28000")),
        _ => false,
    }
}

impl From<cloud_pg_auth::Error> for Error {
    fn from(error: cloud_pg_auth::Error) -> Self {
        match error {
            cloud_pg_auth::Error::Disposed => Self::Disposed,
            other => Self::Auth(other),
        }
    }
}

impl From<RelayError> for Error {
    fn from(error: RelayError) -> Self {
        Self::Relay {
            place: error.place,
            source: error.source,
        }
    }
}

impl From<cloud_pg_auth::ConfigError> for Error {
    fn from(error: cloud_pg_auth::ConfigError) -> Self {
        Self::Auth(error.into())
    }
}
