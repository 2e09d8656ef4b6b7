use std::time::Duration;

use cloud_pg_auth::migrate::MigrateError;
use deadpool::managed::{BuildError, HookError, PoolError, TimeoutType};

/// What can go wrong in this crate. Causes stay in the [`source`](std::error::Error::source)
/// chain: a token failure reaches the caller of [`PooledEngine::get`](crate::PooledEngine::get)
/// with the identity endpoint's own error underneath.
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
    #[error("timed out after {waited:?} {}; raise connection_timeout or max_size, and check the engine status", stage(*kind))]
    Timeout {
        /// The configured connection timeout.
        waited: Duration,
        /// Which step ran out of time.
        kind: TimeoutType,
    },
    /// A hook added through [`PooledEngineBuilder::configure`](crate::PooledEngineBuilder::configure) failed.
    #[error("a pool hook failed: {message}")]
    Hook {
        /// The hook's message.
        message: String,
    },
    /// The pool could not be built.
    #[error("could not build the pool")]
    Build(#[source] BuildError),
    /// The engine was disposed.
    #[error("the engine was disposed; create a new one")]
    Disposed,
}

fn stage(kind: TimeoutType) -> &'static str {
    match kind {
        TimeoutType::Wait => "waiting for a free connection",
        TimeoutType::Create => "opening a new connection (token fetch and login)",
        TimeoutType::Recycle => "checking an idle connection",
    }
}

impl Error {
    /// Whether the server refused the credentials (SQLSTATE 28P01 or 28000).
    #[must_use]
    pub fn is_auth_failure(&self) -> bool {
        match self {
            Self::Auth(e) => e.is_auth_failure(),
            Self::Postgres(e) => matches!(
                e.code().map(tokio_postgres::error::SqlState::code),
                Some("28P01" | "28000")
            ),
            _ => false,
        }
    }

    pub(crate) fn from_pool(error: PoolError<Self>, waited: Duration) -> Self {
        match error {
            PoolError::Backend(e) => e,
            PoolError::Timeout(kind) => Self::Timeout { waited, kind },
            PoolError::Closed => Self::Disposed,
            PoolError::PostCreateHook(HookError::Backend(e)) => e,
            PoolError::PostCreateHook(HookError::Message(message)) => Self::Hook {
                message: message.into_owned(),
            },
            PoolError::NoRuntimeSpecified => Self::Build(BuildError::NoRuntimeSpecified),
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
