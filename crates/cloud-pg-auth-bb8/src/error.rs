//! This crate's error: a bb8 timeout carries the last connection failure as its cause.

use std::sync::Arc;
use std::time::Duration;

use cloud_pg_auth::login::is_refused_login;
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
    /// The pool gave no connection in time.
    #[error("{}", timeout_message(*waited, cause.is_some()))]
    Timeout {
        /// The pool's connection timeout.
        waited: Duration,
        /// The last failure to open a connection during the wait, if there was one.
        #[source]
        cause: Option<Arc<Error>>,
    },
    /// Settings, token, TLS or login trouble (from `cloud-pg-auth`).
    #[error(transparent)]
    Auth(cloud_pg_auth::Error),
    /// The engine was disposed or dropped.
    #[error("the engine was disposed; create a new one")]
    Disposed,
    /// A query failed or the connection broke (tokio-postgres).
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    /// A connection reached its max lifetime and was replaced. Only a custom error sink
    /// (through [`PooledEngineBuilder::configure`](crate::PooledEngineBuilder::configure))
    /// sees this.
    #[error("the connection reached its max lifetime and was replaced")]
    Expired,
    /// A migration run failed (the core's runner).
    #[error(transparent)]
    Migrate(#[from] MigrateError),
}

cloud_pg_auth::adapter_error_conversions!(Error);

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
    /// Whether the server refused the credentials
    /// ([`REFUSED_LOGIN_SQLSTATES`](cloud_pg_auth::login::REFUSED_LOGIN_SQLSTATES)),
    /// directly or as the cause of a timeout.
    #[must_use]
    pub fn is_auth_failure(&self) -> bool {
        match self {
            Self::Timeout { cause, .. } => cause.as_deref().is_some_and(Self::is_auth_failure),
            Self::Auth(e) => e.is_auth_failure(),
            Self::Postgres(e) => is_refused_login(e.code().map(|state| state.code())),
            _ => false,
        }
    }
}
