//! This crate's error, and how deadpool's pool errors map onto it.

use std::time::Duration;

use cloud_pg_auth::login::is_refused_login;
use cloud_pg_auth::migrate::MigrateError;
use deadpool::managed::{BuildError, HookError, PoolError, TimeoutType, Timeouts};
use tokio_postgres::error::SqlState;

/// What can go wrong in this crate. Causes stay in the [`source`](std::error::Error::source)
/// chain: a token failure reaches the caller of [`PooledEngine::get`](crate::PooledEngine::get)
/// with the identity endpoint's own error underneath.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Settings, token, TLS or login trouble (from `cloud-pg-auth`).
    #[error(transparent)]
    Auth(cloud_pg_auth::Error),
    /// The engine was disposed or dropped.
    #[error("the engine was disposed; create a new one")]
    Disposed,
    /// The pool gave no connection in time.
    #[error("timed out after {waited:?} {}; raise connection_timeout or max_size, and check the engine status", stage(*kind))]
    Timeout {
        /// The pool's timeout for that step.
        waited: Duration,
        /// Which step ran out of time.
        kind: TimeoutType,
    },
    /// A statement failed, the connection broke, or an idle one failed its checkout check.
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    /// A migration run failed.
    #[error(transparent)]
    Migrate(#[from] MigrateError),
    /// A hook added through [`PooledEngineBuilder::configure`](crate::PooledEngineBuilder::configure) failed.
    #[error("a pool hook failed: {message}")]
    Hook {
        /// The hook's message.
        message: String,
    },
    /// The pool could not be built.
    #[error("could not build the pool")]
    Build(#[source] BuildError),
}

cloud_pg_auth::adapter_error_conversions!(Error);

fn stage(kind: TimeoutType) -> &'static str {
    match kind {
        TimeoutType::Wait => "waiting for a free connection",
        TimeoutType::Create => "opening a new connection (token fetch and login)",
        TimeoutType::Recycle => "checking an idle connection",
    }
}

impl Error {
    /// Whether the server refused the credentials
    /// ([`REFUSED_LOGIN_SQLSTATES`](cloud_pg_auth::login::REFUSED_LOGIN_SQLSTATES)).
    #[must_use]
    pub fn is_auth_failure(&self) -> bool {
        match self {
            Self::Auth(error) => error.is_auth_failure(),
            Self::Postgres(error) => is_refused_login(error.code().map(SqlState::code)),
            _ => false,
        }
    }

    /// deadpool's error as this crate's; `timeouts` are the pool's own (`configure` may
    /// have changed one of them).
    pub(crate) fn from_pool(error: PoolError<Self>, timeouts: &Timeouts) -> Self {
        match error {
            PoolError::Backend(e) | PoolError::PostCreateHook(HookError::Backend(e)) => e,
            PoolError::Timeout(kind) => {
                let limit = match kind {
                    TimeoutType::Wait => timeouts.wait,
                    TimeoutType::Create => timeouts.create,
                    TimeoutType::Recycle => timeouts.recycle,
                };
                Self::Timeout {
                    waited: limit.unwrap_or_default(),
                    kind,
                }
            }
            PoolError::Closed => Self::Disposed,
            PoolError::PostCreateHook(HookError::Message(message)) => Self::Hook {
                message: message.into_owned(),
            },
            PoolError::NoRuntimeSpecified => Self::Build(BuildError::NoRuntimeSpecified),
        }
    }
}
