//! The one error type of the testkit.

/// Everything that can go wrong while starting, driving or stopping the emulator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No `initdb`/`postgres` binaries were found.
    #[error("postgresql binaries not found: {0}")]
    BinariesNotFound(String),
    /// Running as root, but the unprivileged user to run PostgreSQL as does not exist.
    #[error(
        "running as root needs an unprivileged user `{0}` to run postgresql, and it does not exist"
    )]
    UserNotFound(String),
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `initdb` failed.
    #[error("initdb failed: {0}")]
    Initdb(String),
    /// The PostgreSQL server did not start or stop.
    #[error("postgresql server: {0}")]
    Server(String),
    /// A query on the admin connection failed.
    #[error("postgresql query failed: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// TLS configuration or certificate generation failed.
    #[error("tls: {0}")]
    Tls(String),
    /// Signing or parsing a JWT failed.
    #[error("jwt: {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),
    /// An HTTP exchange failed.
    #[error("http: {0}")]
    Http(String),
    /// Fault settings were rejected.
    #[error("invalid fault settings: {0}")]
    InvalidFaults(String),
    /// An argument was invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Error::Tls(e.to_string())
    }
}

impl From<rustls::Error> for Error {
    fn from(e: rustls::Error) -> Self {
        Error::Tls(e.to_string())
    }
}
