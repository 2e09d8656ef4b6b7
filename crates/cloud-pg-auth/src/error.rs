//! Errors. Messages are lowercase, carry no secret and say what to set or do.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// A boxed error, the cause type of the crate's errors.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is missing, malformed or contradicts another one. Raised at start-up.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No valid token could be had from the token source.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// TLS could not be set up (bad root certificate file, for example).
    #[error("tls setup failed: {message}")]
    Tls {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The server could not be reached or refused the login.
    #[error("could not connect to {target}: {message}")]
    Connect {
        /// `host:port` and user, never the password.
        target: String,
        /// A short description, with a hint where one helps.
        message: String,
        /// The SQLSTATE the server answered with, if it answered.
        sqlstate: Option<String>,
        /// The driver's error.
        #[source]
        source: BoxError,
    },
    /// The engine was disposed; create a new one.
    #[error("the engine was disposed; create a new one")]
    Disposed,
}

impl Error {
    /// The SQLSTATE the server sent, if the error came from the server.
    #[must_use]
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Self::Connect { sqlstate, .. } => sqlstate.as_deref(),
            _ => None,
        }
    }

    /// Whether the server refused the credentials (one of
    /// [`REFUSED_LOGIN_SQLSTATES`](crate::login::REFUSED_LOGIN_SQLSTATES)).
    #[must_use]
    pub fn is_auth_failure(&self) -> bool {
        crate::login::is_refused_login(self.sqlstate())
    }
}

/// A bad or contradictory setting. `setting` names what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {message}")]
pub struct ConfigError {
    setting: String,
    message: String,
}

impl ConfigError {
    /// A problem with `setting` (an environment variable, URL part or field name).
    pub fn new(setting: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            message: message.into(),
        }
    }

    /// The setting to change.
    #[must_use]
    pub fn setting(&self) -> &str {
        &self.setting
    }

    /// What is wrong and what to do.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// How a token fetch failed, which decides whether and when to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenErrorKind {
    /// Network trouble, 5xx, timeouts: retry with backoff.
    Transient,
    /// 429 or a similar request to slow down: retry no sooner than `retry_after`.
    Throttled,
    /// The identity is wrong or missing (400 identity not found, bad client secret): retrying
    /// soon will not help, but the cache still backs off and tries again later.
    Rejected,
    /// The source is misconfigured (missing variable, bad file).
    Config,
}

/// A token source failed. `origin` names the source so the user knows which endpoint to check.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct TokenError {
    origin: String,
    message: String,
    kind: TokenErrorKind,
    retry_after: Option<Duration>,
    #[source]
    cause: Option<BoxError>,
}

impl TokenError {
    /// A failure of the source named `origin`.
    pub fn new(
        kind: TokenErrorKind,
        origin: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            origin: origin.into(),
            message: message.into(),
            kind,
            retry_after: None,
            cause: None,
        }
    }

    /// Keeps the underlying error in the source chain.
    #[must_use]
    pub fn with_cause(mut self, cause: impl Into<BoxError>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    /// The server's advice on when to try again (`Retry-After`).
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Which source failed.
    #[must_use]
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// What happened.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The kind of failure.
    #[must_use]
    pub fn kind(&self) -> TokenErrorKind {
        self.kind
    }

    /// When to retry, if the source said.
    #[must_use]
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The message with every cause in the chain, for status output and logs.
    #[must_use]
    pub fn chain_text(&self) -> String {
        chain_text(self)
    }

    /// A copy for handing the same failure to several waiters: the cause chain becomes text.
    #[must_use]
    pub(crate) fn duplicate(&self) -> Self {
        Self {
            origin: self.origin.clone(),
            message: self.message.clone(),
            kind: self.kind,
            retry_after: self.retry_after,
            cause: self
                .cause
                .as_ref()
                .map(|c| Box::new(TextError(chain_text(c.as_ref()))) as BoxError),
        }
    }

    /// Adds context: this error, prefixed, keeps its cause.
    #[must_use]
    pub(crate) fn context(mut self, prefix: &str) -> Self {
        self.message = format!("{prefix}: {}", self.message);
        self
    }
}

/// An error whose text is all that is kept (a cause shared between waiters).
#[derive(Debug, Clone)]
pub(crate) struct TextError(pub(crate) String);

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for TextError {}

/// `error: cause: cause`, the way a user reads a chain.
#[must_use]
pub fn chain_text(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_text_joins_causes() {
        let e = TokenError::new(
            TokenErrorKind::Transient,
            "azure managed identity",
            "request failed",
        )
        .with_cause(std::io::Error::other("connection refused"));
        assert_eq!(
            e.chain_text(),
            "azure managed identity: request failed: connection refused"
        );
        let d = e.duplicate();
        assert_eq!(d.chain_text(), e.chain_text());
        let err = Error::from(e);
        assert!(StdError::source(&err).is_some());
    }

    #[test]
    fn config_error_names_the_setting() {
        let e = ConfigError::new("PGPORT", "must be a number from 1 to 65535");
        assert_eq!(e.to_string(), "PGPORT: must be a number from 1 to 65535");
        assert_eq!(e.setting(), "PGPORT");
    }
}
