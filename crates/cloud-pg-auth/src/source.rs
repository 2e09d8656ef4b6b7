//! Token sources: where a password or token comes from.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use serde::Serialize;

use crate::error::{BoxError, TokenError, TokenErrorKind};
use crate::{AccessToken, Secret};

/// Where tokens come from. One fetch asks the identity endpoint (or the callback) once;
/// caching, refresh and retry belong to [`TokenCache`](crate::TokenCache), not to sources.
///
/// Object-safe: engines hold an `Arc<dyn TokenSource>`.
#[async_trait]
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// Fetches a new token. Called by the cache, at most one call at a time per cache.
    async fn fetch(&self) -> Result<AccessToken, TokenError>;

    /// What this source is, for status output and error messages.
    fn info(&self) -> SourceInfo;
}

/// A description of a source, free of secrets: [`SourceInfo::new`] and the builder methods,
/// each named after the field; read back with the `get_*` methods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceInfo {
    /// `password`, `callback`, `azure` or `aws`.
    pub(crate) method: &'static str,
    /// `public`, `usgov`, `china`, or an AWS region.
    pub(crate) cloud: Option<String>,
    /// The credential kind, for example `managed-identity` or `default-chain`.
    pub(crate) credential_kind: Option<String>,
    /// A label for the identity (client id, role ARN, user), never a secret.
    pub(crate) identity: Option<String>,
    /// The endpoint asked for tokens, where there is one.
    pub(crate) endpoint: Option<String>,
}

impl SourceInfo {
    /// A source of the given method.
    #[must_use]
    pub fn new(method: &'static str) -> Self {
        Self {
            method,
            cloud: None,
            credential_kind: None,
            identity: None,
            endpoint: None,
        }
    }

    /// Sets the cloud.
    #[must_use]
    pub fn cloud(mut self, cloud: impl Into<String>) -> Self {
        self.cloud = Some(cloud.into());
        self
    }

    /// Sets the credential kind.
    #[must_use]
    pub fn credential_kind(mut self, kind: impl Into<String>) -> Self {
        self.credential_kind = Some(kind.into());
        self
    }

    /// Sets the identity label.
    #[must_use]
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// Sets the endpoint.
    #[must_use]
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The method: `password`, `callback`, `azure`, `aws`, `dsql` or `gcp`.
    #[must_use]
    pub fn get_method(&self) -> &'static str {
        self.method
    }

    /// The cloud or AWS region.
    #[must_use]
    pub fn get_cloud(&self) -> Option<&str> {
        self.cloud.as_deref()
    }

    /// The credential kind.
    #[must_use]
    pub fn get_credential_kind(&self) -> Option<&str> {
        self.credential_kind.as_deref()
    }

    /// The identity label.
    #[must_use]
    pub fn get_identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// The endpoint asked for tokens.
    #[must_use]
    pub fn get_endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    /// A short name for messages: `azure managed-identity (client id ...)`.
    #[must_use]
    pub fn label(&self) -> String {
        let mut label = self.method.to_string();
        if let Some(kind) = &self.credential_kind {
            label.push(' ');
            label.push_str(kind);
        }
        if let Some(endpoint) = &self.endpoint {
            label.push_str(" at ");
            label.push_str(endpoint);
        }
        label
    }
}

/// A fixed password: the backward-compatible path. Never expires.
#[derive(Clone)]
pub struct StaticPassword {
    password: Secret,
}

impl StaticPassword {
    /// A source that always yields `password`.
    #[must_use]
    pub fn new(password: impl Into<Secret>) -> Self {
        Self {
            password: password.into(),
        }
    }
}

impl fmt::Debug for StaticPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticPassword")
            .field("password", &self.password)
            .finish()
    }
}

#[async_trait]
impl TokenSource for StaticPassword {
    async fn fetch(&self) -> Result<AccessToken, TokenError> {
        Ok(AccessToken::new(self.password.clone()))
    }

    fn info(&self) -> SourceInfo {
        SourceInfo::new("password")
    }
}

type CallbackFn = dyn Fn() -> BoxFuture<'static, Result<AccessToken, BoxError>> + Send + Sync;

/// A password provider written by the user: a sync or async closure that returns a
/// password or token, with an expiry if it has one (`AccessToken::with_expiry`).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use cloud_pg_auth::{AccessToken, CallbackSource};
///
/// let from_vault = CallbackSource::new("vault", || async {
///     let password = String::from("read from a vault");
///     Ok::<_, std::io::Error>(
///         AccessToken::new(password).with_expiry(SystemTime::now() + Duration::from_secs(600)),
///     )
/// });
/// let from_file = CallbackSource::sync("file", || {
///     Ok::<_, std::io::Error>(AccessToken::new(std::fs::read_to_string("/run/secrets/pg")?))
/// });
/// # let _ = (from_vault, from_file);
/// ```
#[derive(Clone)]
pub struct CallbackSource {
    label: String,
    callback: Arc<CallbackFn>,
}

impl CallbackSource {
    /// An async callback. `label` names it in status output and errors.
    pub fn new<F, Fut, E>(label: impl Into<String>, callback: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<AccessToken, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        Self {
            label: label.into(),
            callback: Arc::new(move || {
                let fut = callback();
                Box::pin(async move { fut.await.map_err(Into::into) })
            }),
        }
    }

    /// A blocking-free synchronous callback.
    pub fn sync<F, E>(label: impl Into<String>, callback: F) -> Self
    where
        F: Fn() -> Result<AccessToken, E> + Send + Sync + 'static,
        E: Into<BoxError>,
    {
        let callback = Arc::new(callback);
        Self::new(label, move || {
            let callback = Arc::clone(&callback);
            async move { callback() }
        })
    }
}

impl fmt::Debug for CallbackSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackSource")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TokenSource for CallbackSource {
    async fn fetch(&self) -> Result<AccessToken, TokenError> {
        (self.callback)().await.map_err(|cause| {
            TokenError::new(
                TokenErrorKind::Transient,
                format!("password callback {:?}", self.label),
                "the callback failed",
            )
            .with_cause(cause)
        })
    }

    fn info(&self) -> SourceInfo {
        SourceInfo::new("callback").identity(self.label.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_password_yields_the_password_and_hides_it() {
        let s = StaticPassword::new("pw-123");
        let t = s.fetch().await.unwrap();
        assert_eq!(t.secret().expose(), "pw-123");
        assert!(t.expires_at().is_none());
        assert!(!format!("{s:?}").contains("pw-123"));
    }

    #[tokio::test]
    async fn callbacks_pass_values_and_errors() {
        let ok = CallbackSource::sync("ok", || {
            Ok::<_, std::io::Error>(AccessToken::new("cb-secret"))
        });
        assert_eq!(ok.fetch().await.unwrap().secret().expose(), "cb-secret");
        let bad = CallbackSource::new("bad", || async {
            Err::<AccessToken, _>(std::io::Error::other("vault sealed"))
        });
        let e = bad.fetch().await.unwrap_err();
        assert_eq!(
            e.chain_text(),
            "password callback \"bad\": the callback failed: vault sealed"
        );
        assert_eq!(bad.info().method, "callback");
    }
}
