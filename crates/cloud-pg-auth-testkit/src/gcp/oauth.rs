//! Google's OAuth 2 token endpoint: the JWT-bearer grant of service account keys (the RS256
//! assertion verified against the account's public key) and the refresh-token grant of user
//! credentials. Errors use Google's codes and descriptions.

use std::time::{Duration, SystemTime};

use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Value, json};

use super::GcpIdentity;
use super::check::{CLOUD_PLATFORM_SCOPE, GcpPrincipal, PrincipalKind};
use crate::identity::{Body, json_response};
use crate::util::{ct_eq, unix};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The scopes gcloud's `application-default login` consents to by default.
pub(crate) const USER_SCOPES: [&str; 4] = [
    "openid",
    "https://www.googleapis.com/auth/userinfo.email",
    CLOUD_PLATFORM_SCOPE,
    "https://www.googleapis.com/auth/sqlservice.login",
];

/// Google allows this much clock difference on `iat` and `exp`.
const LEEWAY: u64 = 60;

/// A refused grant: the status and Google's error code and description.
#[derive(Debug)]
struct OAuthError {
    status: u16,
    code: &'static str,
    description: String,
}

fn oauth_error(status: u16, code: &'static str, description: &str) -> OAuthError {
    OAuthError {
        status,
        code,
        description: description.to_string(),
    }
}

type Response = hyper::Response<Body>;

/// Answers `POST /token` with a form body.
pub(crate) fn handle(identity: &GcpIdentity, form: &[(String, String)]) -> Response {
    let get = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let result = match get("grant_type") {
        Some(JWT_BEARER) => jwt_bearer(identity, get("assertion")),
        Some("refresh_token") => refresh(
            identity,
            get("client_id"),
            get("client_secret"),
            get("refresh_token"),
            get("scope"),
        ),
        Some(other) => Err(oauth_error(
            400,
            "unsupported_grant_type",
            &format!("Invalid grant_type: {other}"),
        )),
        None => Err(oauth_error(
            400,
            "unsupported_grant_type",
            "Invalid grant_type: ",
        )),
    };
    match result {
        Ok(principal) => {
            let lifetime = identity.token_lifetime();
            let token = identity
                .inner
                .tokens
                .issue(principal, SystemTime::now(), lifetime);
            json_response(
                200,
                &json!({
                    "access_token": token,
                    "expires_in": lifetime.as_secs(),
                    "token_type": "Bearer",
                }),
            )
        }
        Err(error) => {
            identity.inner.counts.refused();
            json_response(
                error.status,
                &json!({ "error": error.code, "error_description": error.description }),
            )
        }
    }
}

fn invalid_grant(description: &str) -> OAuthError {
    oauth_error(400, "invalid_grant", description)
}

/// Verifies a service account's signed assertion and names the principal it asks for.
fn jwt_bearer(identity: &GcpIdentity, assertion: Option<&str>) -> Result<GcpPrincipal, OAuthError> {
    identity.inner.counts.jwt_grant();
    let assertion = assertion.ok_or_else(|| {
        oauth_error(
            400,
            "invalid_request",
            "Missing required parameter: assertion",
        )
    })?;
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| invalid_grant("Invalid JWT: could not decode the header."))?;
    if header.alg != Algorithm::RS256 {
        return Err(invalid_grant("Invalid JWT Signature."));
    }
    // The key is found by `kid`, as Google does; `iss` must then be that key's account.
    let account = identity
        .key_account_by_kid(header.kid.as_deref().unwrap_or_default())
        .ok_or_else(|| invalid_grant("Invalid JWT Signature."))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[identity.token_uri()]);
    validation.set_issuer(&[account.email()]);
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    validation.leeway = LEEWAY;
    let claims = jsonwebtoken::decode::<Value>(assertion, account.decoding_key(), &validation)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidAudience => invalid_grant("Invalid JWT: Failed audience check."),
                ErrorKind::InvalidIssuer => invalid_grant("Invalid JWT Signature."),
                ErrorKind::ExpiredSignature => invalid_grant(
                    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
                ),
                _ => invalid_grant("Invalid JWT Signature."),
            }
        })?
        .claims;
    let seconds = |name: &str| claims.get(name).and_then(Value::as_u64).unwrap_or_default();
    let (iat, exp) = (seconds("iat"), seconds("exp"));
    let now = unix(SystemTime::now()).max(0) as u64;
    let short_lived = exp > iat && exp - iat <= 3600 && iat <= now + LEEWAY;
    if !short_lived {
        return Err(invalid_grant(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        ));
    }
    let scopes: Vec<String> = claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if scopes.is_empty() {
        return Err(oauth_error(
            400,
            "invalid_scope",
            "Invalid oauth scope or ID token audience provided.",
        ));
    }
    Ok(GcpPrincipal {
        email: account.email().to_string(),
        kind: PrincipalKind::ServiceAccount,
        scopes,
    })
}

/// Exchanges the user's refresh token; the token carries the consented scopes, or the
/// subset asked for.
fn refresh(
    identity: &GcpIdentity,
    client_id: Option<&str>,
    client_secret: Option<&str>,
    refresh_token: Option<&str>,
    scope: Option<&str>,
) -> Result<GcpPrincipal, OAuthError> {
    identity.inner.counts.refresh_grant();
    let user = identity.user();
    let client_ok = client_id.is_some_and(|id| id == user.client_id())
        && client_secret.is_some_and(|s| ct_eq(s.as_bytes(), user.client_secret().as_bytes()));
    if !client_ok {
        return Err(oauth_error(
            401,
            "invalid_client",
            "The OAuth client was not found.",
        ));
    }
    if !refresh_token.is_some_and(|t| ct_eq(t.as_bytes(), user.refresh_token().as_bytes())) {
        return Err(invalid_grant("Bad Request"));
    }
    let scopes: Vec<String> = match scope {
        None => USER_SCOPES.iter().map(|s| s.to_string()).collect(),
        Some(asked) => {
            let asked: Vec<String> = asked
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if asked.iter().any(|s| !USER_SCOPES.contains(&s.as_str())) {
                return Err(oauth_error(
                    400,
                    "invalid_scope",
                    "The requested scope is not a subset of the scopes the user consented to.",
                ));
            }
            asked
        }
    };
    Ok(GcpPrincipal {
        email: user.email().to_string(),
        kind: PrincipalKind::User,
        scopes,
    })
}

/// How long tokens live unless set otherwise: what Google answers (`expires_in` 3599).
pub(crate) const DEFAULT_LIFETIME: Duration = Duration::from_secs(3599);
