use std::sync::Arc;
use std::time::Duration;

use cloud_pg_auth::migrate::MigrateError;

/// What can go wrong in this crate. Causes stay in the [`source`](std::error::Error::source)
/// chain.
///
/// bb8 reports a failed connection attempt only to its error sink and lets the caller wait
/// until the connection timeout; this crate's sink keeps the last failure, and
/// [`Error::Timeout`] carries it, so a token failure is not reported as a bare timeout.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Settings, token, TLS or login trouble (from `cloud-pg-auth`).
    #[error(transparent)]
    Auth(cloud_pg_auth::Error),
    /// A statement failed or the connection broke.
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    /// A migration run failed.
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    /// The pool gave no connection in time.
    #[error("{}", timeout_message(*waited, cause.is_some()))]
    Timeout {
        /// The configured connection timeout.
        waited: Duration,
        /// The last failure to open a connection during the wait, if there was one.
        #[source]
        cause: Option<Arc<Error>>,
    },
    /// A connection reached its max lifetime and was replaced. Only a custom error sink
    /// (through [`PooledEngineBuilder::configure`](crate::PooledEngineBuilder::configure))
    /// sees this.
    #[error("the connection reached its max lifetime and was replaced")]
    Expired,
    /// The engine was disposed.
    #[error("the engine was disposed; create a new one")]
    Disposed,
}

fn timeout_message(waited: Duration, has_cause: bool) -> String {
    if has_cause {
        format!("no connection within {waited:?}: opening a new connection failed")
    } else {
        format!(
            "no connection within {waited:?}; all connections are in use: raise max_size or connection_timeout, or return connections sooner"
        )
    }
}

impl Error {
    /// Whether the server refused the credentials (SQLSTATE 28P01 or 28000), directly or as
    /// the cause of a timeout.
    #[must_use]
    pub fn is_auth_failure(&self) -> bool {
        match self {
            Self::Auth(e) => e.is_auth_failure(),
            Self::Postgres(e) => matches!(
                e.code().map(tokio_postgres::error::SqlState::code),
                Some("28P01" | "28000")
            ),
            Self::Timeout {
                cause: Some(cause), ..
            } => cause.is_auth_failure(),
            _ => false,
        }
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

impl From<cloud_pg_auth::ConfigError> for Error {
    fn from(error: cloud_pg_auth::ConfigError) -> Self {
        Self::Auth(error.into())
    }
}
