//! The adapter's error, and how pool and migration failures map onto it.

use std::time::Duration;

use cloud_pg_auth::migrate::MigrateError;
use deadpool::managed::{BuildError, HookError, PoolError, TimeoutType, Timeouts};
use diesel_async::pooled_connection::PoolError as DieselPoolError;

/// What can go wrong in this crate. Causes stay in the [`source`](std::error::Error::source)
/// chain: a token failure reaches the caller of [`PooledEngine::get`](crate::PooledEngine::get)
/// with the identity endpoint's own error underneath, not as diesel's
/// `ConnectionError::BadConnection` text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Settings, token, TLS or login trouble (from `cloud-pg-auth`).
    #[error(transparent)]
    Auth(cloud_pg_auth::Error),
    /// Setting up a new connection failed after the login (diesel-async's session set-up).
    #[error("could not set up the connection")]
    Connection(#[source] diesel::ConnectionError),
    /// A statement failed or the connection broke (including the checkout ping).
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    /// A migration failed.
    #[error("migrations failed")]
    Migrate(#[source] cloud_pg_auth::BoxError),
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
    /// Whether the server refused the credentials (one of
    /// [`REFUSED_LOGIN_SQLSTATES`](cloud_pg_auth::login::REFUSED_LOGIN_SQLSTATES)).
    #[must_use]
    pub fn is_auth_failure(&self) -> bool {
        match self {
            Self::Auth(e) => cloud_pg_auth::login::is_refused_login(e.sqlstate()),
            _ => false,
        }
    }

    /// Maps a pool error; `last_connect_error` gives back the real cause of a failed
    /// connection, which diesel-async's manager can only carry as text.
    pub(crate) fn from_pool(
        error: PoolError<DieselPoolError>,
        timeouts: &Timeouts,
        last_connect_error: impl FnOnce(&str) -> Option<Self>,
    ) -> Self {
        match error {
            PoolError::Backend(e) | PoolError::PostCreateHook(HookError::Backend(e)) => {
                Self::from_backend(e, last_connect_error)
            }
            PoolError::Timeout(kind) => Self::Timeout {
                waited: match kind {
                    TimeoutType::Wait => timeouts.wait,
                    TimeoutType::Create => timeouts.create,
                    TimeoutType::Recycle => timeouts.recycle,
                }
                .unwrap_or_default(),
                kind,
            },
            PoolError::Closed => Self::Disposed,
            PoolError::PostCreateHook(HookError::Message(message)) => Self::Hook {
                message: message.into_owned(),
            },
            PoolError::NoRuntimeSpecified => Self::Build(BuildError::NoRuntimeSpecified),
        }
    }

    fn from_backend(
        error: DieselPoolError,
        last_connect_error: impl FnOnce(&str) -> Option<Self>,
    ) -> Self {
        match error {
            DieselPoolError::ConnectionError(diesel::ConnectionError::BadConnection(text)) => {
                match last_connect_error(&text) {
                    Some(cause) => cause,
                    None => Self::Connection(diesel::ConnectionError::BadConnection(text)),
                }
            }
            DieselPoolError::ConnectionError(e) => Self::Connection(e),
            DieselPoolError::QueryError(e) => Self::Query(e),
        }
    }
}

cloud_pg_auth::adapter_error_conversions!(Error);

impl From<MigrateError> for Error {
    fn from(error: MigrateError) -> Self {
        Self::Migrate(Box::new(error))
    }
}

impl From<diesel::ConnectionError> for Error {
    fn from(error: diesel::ConnectionError) -> Self {
        Self::Connection(error)
    }
}
