//! The claims of an Entra access token, read without checking the signature (the server
//! checks it; the client only wants the expiry and the names).

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::token::{TokenDetails, UsernameSource};

/// The claims of an Entra access token that matter to a PostgreSQL login. Every field is
/// optional: a token without them still works as a password.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwtClaims {
    /// The audience: the resource the token was issued for. Diagnostics compare it with the
    /// server's cloud (`https://ossrdbms-aad.database.windows.net` in the public cloud).
    pub aud: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: Option<i64>,
    /// The client id of the application or managed identity (v1 tokens).
    pub appid: Option<String>,
    /// The client id of the application (v2 tokens).
    pub azp: Option<String>,
    /// The object id of the identity.
    pub oid: Option<String>,
    /// The tenant.
    pub tid: Option<String>,
    /// `app` for applications and managed identities, `user` for users.
    pub idtyp: Option<String>,
    /// The Azure resource id of a managed identity (`.../userAssignedIdentities/<name>`).
    pub xms_mirid: Option<String>,
    /// A user's principal name.
    pub upn: Option<String>,
    /// A user's preferred name (v2 tokens).
    pub preferred_username: Option<String>,
    /// A user's unique name (v1 tokens).
    pub unique_name: Option<String>,
}

impl JwtClaims {
    /// Decodes the payload of a JWT (`header.payload.signature`, base64url). `None` when the
    /// token is not a JWT or its payload is not a JSON object.
    #[must_use]
    pub fn parse(token: &str) -> Option<Self> {
        let mut parts = token.split('.');
        let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
        // Lenient about claim types: a claim of an unexpected type is ignored, not fatal.
        let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let object = value.as_object()?;
        let text = |name: &str| {
            object
                .get(name)
                .and_then(serde_json::Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let exp = object.get("exp").and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_f64().map(|f| f as i64))
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        });
        // RFC 7519 allows an array of audiences; Entra sends one string.
        let aud = text("aud").or_else(|| {
            object
                .get("aud")
                .and_then(serde_json::Value::as_array)
                .and_then(|a| a.iter().find_map(serde_json::Value::as_str))
                .map(str::to_string)
        });
        Some(Self {
            aud,
            exp,
            appid: text("appid"),
            azp: text("azp"),
            oid: text("oid"),
            tid: text("tid"),
            idtyp: text("idtyp"),
            xms_mirid: text("xms_mirid"),
            upn: text("upn"),
            preferred_username: text("preferred_username"),
            unique_name: text("unique_name"),
        })
    }

    /// The `exp` claim as a time.
    #[must_use]
    pub fn expires_at(&self) -> Option<SystemTime> {
        let secs = u64::try_from(self.exp?).ok()?;
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
    }

    /// The client id: `appid`, else `azp`.
    #[must_use]
    pub fn client_id(&self) -> Option<&str> {
        self.appid.as_deref().or(self.azp.as_deref())
    }

    /// The PostgreSQL role name the token implies, and where it came from: the last segment of
    /// `xms_mirid` (a managed identity's display name), then `upn`, `preferred_username`,
    /// `unique_name`. `None` for a service principal, whose display name the token lacks.
    #[must_use]
    pub fn username(&self) -> Option<(String, UsernameSource)> {
        if let Some(name) = self
            .xms_mirid
            .as_deref()
            .and_then(|id| id.trim_end_matches('/').rsplit('/').next())
            .filter(|s| !s.is_empty())
        {
            return Some((name.to_string(), UsernameSource::XmsMirid));
        }
        [
            (&self.upn, UsernameSource::Upn),
            (&self.preferred_username, UsernameSource::PreferredUsername),
            (&self.unique_name, UsernameSource::UniqueName),
        ]
        .into_iter()
        .find_map(|(v, source)| v.clone().map(|v| (v, source)))
    }

    /// The non-secret details for [`AccessToken`](crate::AccessToken): identity label,
    /// derived user name and the ids (`appid`, `oid`) a GUID user name could be confused with.
    #[must_use]
    pub fn details(&self) -> TokenDetails {
        let derived = self.username();
        let identity = derived
            .as_ref()
            .map(|(name, _)| name.clone())
            .or_else(|| self.client_id().map(|id| format!("client id {id}")));
        let mut ids = Vec::new();
        for id in [self.client_id(), self.oid.as_deref()]
            .into_iter()
            .flatten()
        {
            if !ids.iter().any(|known: &String| known == id) {
                ids.push(id.to_string());
            }
        }
        TokenDetails {
            identity,
            username: derived.as_ref().map(|(name, _)| name.clone()),
            username_source: derived.map(|(_, source)| source),
            ids,
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::JwtClaims;

    fn check(payload: &str, expected: Option<&str>) {
        let token = format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(payload.as_bytes()));
        let claims = JwtClaims::parse(&token).expect("a JWT");
        assert_eq!(claims.aud.as_deref(), expected, "{payload}");
    }

    #[test]
    fn audience_is_read_as_string_or_first_of_array() {
        check(
            r#"{"aud":"https://ossrdbms-aad.database.windows.net"}"#,
            Some("https://ossrdbms-aad.database.windows.net"),
        );
        check(
            r#"{"aud":["https://a.example","https://b.example"]}"#,
            Some("https://a.example"),
        );
        check(r#"{"aud":""}"#, None);
        check(r#"{"aud":42}"#, None);
        check(r#"{}"#, None);
    }
}
