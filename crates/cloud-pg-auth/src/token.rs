//! Access tokens and what a source knows about them.

use std::fmt;
use std::time::SystemTime;

use serde::Serialize;

use crate::Secret;

/// A password or token, with its expiry and what the source learned about the identity.
#[derive(Clone)]
pub struct AccessToken {
    secret: Secret,
    expires_at: Option<SystemTime>,
    refresh_at: Option<SystemTime>,
    details: TokenDetails,
    /// The fallback password rather than a token (see [`AccessToken::is_fallback`]).
    fallback: bool,
}

/// Non-secret facts about a token: who it names and how the login name was found.
/// `TokenDetails::default()` and the builder methods, each named after the field; read back
/// with the `get_*` methods.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TokenDetails {
    /// A label for the identity (client id, object id, ARN, user), never a secret.
    pub(crate) identity: Option<String>,
    /// The PostgreSQL role name the source derived from the token, if any.
    pub(crate) username: Option<String>,
    /// Where `username` came from.
    pub(crate) username_source: Option<UsernameSource>,
    /// Ids found in the token (`appid`, `oid`), so a misused GUID user name can be spotted.
    pub(crate) ids: Vec<String>,
}

/// Where a login name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum UsernameSource {
    /// `PGUSER`, the URL or code.
    Settings,
    /// The last segment of the token's `xms_mirid` (managed identity).
    XmsMirid,
    /// The token's `upn`.
    Upn,
    /// The token's `preferred_username`.
    PreferredUsername,
    /// The token's `unique_name`.
    UniqueName,
    /// A Google service account's or user's email (the key file's `client_email` or the
    /// metadata server's `email`), `.gserviceaccount.com` dropped.
    GoogleEmail,
}

impl UsernameSource {
    /// The name used in status output.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Settings => "settings",
            Self::XmsMirid => "xms_mirid",
            Self::Upn => "upn",
            Self::PreferredUsername => "preferred_username",
            Self::UniqueName => "unique_name",
            Self::GoogleEmail => "google_email",
        }
    }
}

impl TokenDetails {
    /// Sets the identity label (never a secret).
    #[must_use]
    pub fn identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Some(identity.into());
        self
    }

    /// Sets the role name derived from the token.
    #[must_use]
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Sets where the role name came from.
    #[must_use]
    pub fn username_source(mut self, source: UsernameSource) -> Self {
        self.username_source = Some(source);
        self
    }

    /// Sets the ids found in the token (`appid`, `oid`).
    #[must_use]
    pub fn ids(mut self, ids: Vec<String>) -> Self {
        self.ids = ids;
        self
    }

    /// The identity label.
    #[must_use]
    pub fn get_identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// The role name derived from the token.
    #[must_use]
    pub fn get_username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// Where the role name came from.
    #[must_use]
    pub fn get_username_source(&self) -> Option<UsernameSource> {
        self.username_source
    }

    /// The ids found in the token.
    #[must_use]
    pub fn get_ids(&self) -> &[String] {
        &self.ids
    }
}

impl AccessToken {
    /// A token that never expires (a static password).
    #[must_use]
    pub fn new(secret: impl Into<Secret>) -> Self {
        Self {
            secret: secret.into(),
            expires_at: None,
            refresh_at: None,
            details: TokenDetails::default(),
            fallback: false,
        }
    }

    /// The configured fallback password, to log in as `user` (the fallback role) or, when
    /// `None`, as the service's own user.
    pub(crate) fn fallback(password: Secret, user: Option<&str>) -> Self {
        let mut details = TokenDetails::default();
        if let Some(user) = user {
            details = details
                .username(user)
                .username_source(UsernameSource::Settings);
        }
        Self {
            fallback: true,
            ..Self::new(password).with_details(details)
        }
    }

    /// Sets the instant after which the server refuses the token.
    #[must_use]
    pub fn with_expiry(mut self, expires_at: SystemTime) -> Self {
        self.expires_at = Some(expires_at);
        self
    }

    /// Sets the expiry only when one is known.
    #[must_use]
    pub fn with_optional_expiry(mut self, expires_at: Option<SystemTime>) -> Self {
        self.expires_at = expires_at;
        self
    }

    /// Sets the source's own advice on when to refresh (for example a `refresh_in` field).
    #[must_use]
    pub fn with_refresh_hint(mut self, refresh_at: SystemTime) -> Self {
        self.refresh_at = Some(refresh_at);
        self
    }

    /// Sets the non-secret details.
    #[must_use]
    pub fn with_details(mut self, details: TokenDetails) -> Self {
        self.details = details;
        self
    }

    /// The secret, to be sent as the password.
    #[must_use]
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// When the server starts refusing the token; `None` for a password that does not expire.
    #[must_use]
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The source's refresh advice, if it gave one.
    #[must_use]
    pub fn refresh_hint(&self) -> Option<SystemTime> {
        self.refresh_at
    }

    /// Non-secret facts about the token.
    #[must_use]
    pub fn details(&self) -> &TokenDetails {
        &self.details
    }

    /// Whether this is the configured fallback password, served by the cache because no
    /// valid token could be had. Its details name the fallback role (`PGAUTH_FALLBACK_USER`)
    /// when one is set; [`LoginTarget::user_for`](crate::login::LoginTarget::user_for) logs
    /// in as it.
    #[must_use]
    pub fn is_fallback(&self) -> bool {
        self.fallback
    }

    /// Whether the token is still accepted at `now` (a login takes it at that instant).
    #[must_use]
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|exp| now < exp)
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &self.secret)
            .field("expires_at", &self.expires_at)
            .field("refresh_at", &self.refresh_at)
            .field("details", &self.details)
            .field("fallback", &self.fallback)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn debug_hides_the_secret() {
        let t = AccessToken::new("eyJhbGciOi.secret-part")
            .with_expiry(SystemTime::UNIX_EPOCH + Duration::from_secs(10));
        let printed = format!("{t:?} {t:#?}");
        assert!(!printed.contains("secret-part"), "{printed}");
        assert!(printed.contains("redacted"));
    }

    #[test]
    fn validity_is_strict_at_expiry() {
        let exp = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let t = AccessToken::new("x").with_expiry(exp);
        assert!(t.is_valid_at(exp - Duration::from_secs(1)));
        assert!(!t.is_valid_at(exp));
        assert!(AccessToken::new("x").is_valid_at(exp));
    }
}
