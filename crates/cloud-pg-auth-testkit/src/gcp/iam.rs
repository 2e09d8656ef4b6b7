//! IAM's `generateAccessToken`, emulated: a caller's token (a federated token, or an
//! impersonating principal's) buys a token of one of the emulator's service accounts, with
//! the scopes asked. Errors in the shape of Google APIs (`{"error": {code, message, status}}`).

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::GcpIdentity;
use super::check::{CLOUD_PLATFORM_SCOPE, GcpPrincipal, PrincipalKind};
use crate::identity::{Body, json_response};
use crate::util::{rfc3339, unix};

/// The path prefix of the service accounts' IAM credentials methods.
pub(crate) const SERVICE_ACCOUNTS_PATH: &str = "/v1/projects/-/serviceAccounts/";
/// The method after the email.
pub(crate) const GENERATE_ACCESS_TOKEN: &str = ":generateAccessToken";

/// The scope a caller's token needs to impersonate (`cloud-platform` does too).
pub const IAM_SCOPE: &str = "https://www.googleapis.com/auth/iam";

/// The longest lifetime asked that is granted (IAM's limit with the organization policy
/// that allows more than an hour).
const MAX_LIFETIME: u64 = 43_200;

type Refusal = (u16, &'static str, String);

fn refusal(code: u16, status: &'static str, message: impl Into<String>) -> Refusal {
    (code, status, message.into())
}

/// Answers `POST /v1/projects/-/serviceAccounts/{email}:generateAccessToken`.
pub(crate) fn generate_access_token(
    identity: &GcpIdentity,
    email: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> hyper::Response<Body> {
    identity.inner.counts.impersonation();
    match check(identity, email, authorization, body) {
        Ok((scopes, lifetime)) => {
            let principal = GcpPrincipal {
                email: email.to_string(),
                kind: PrincipalKind::ServiceAccount,
                scopes,
            };
            let now = SystemTime::now();
            let token = identity.inner.tokens.issue(principal, now, lifetime);
            let expire_time = rfc3339(unix(now + lifetime));
            json_response(
                200,
                &json!({ "accessToken": token, "expireTime": expire_time }),
            )
        }
        Err((code, status, message)) => {
            identity.inner.counts.refused();
            json_response(
                code,
                &json!({ "error": { "code": code, "message": message, "status": status } }),
            )
        }
    }
}

fn check(
    identity: &GcpIdentity,
    email: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Result<(Vec<String>, Duration), Refusal> {
    let unauthenticated = || {
        refusal(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        )
    };
    let token = authorization
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthenticated)?;
    let caller = identity
        .inner
        .tokens
        .lookup(token.trim(), SystemTime::now())
        .ok_or_else(unauthenticated)?;
    if !caller
        .scopes
        .iter()
        .any(|s| s == CLOUD_PLATFORM_SCOPE || s == IAM_SCOPE)
    {
        return Err(refusal(
            403,
            "PERMISSION_DENIED",
            "Request had insufficient authentication scopes.",
        ));
    }
    let known = |email: &str| identity.service_account(email).is_some();
    if !known(email) {
        return Err(refusal(
            404,
            "NOT_FOUND",
            format!("Not found; Gaia id not found for email {email}"),
        ));
    }
    // The emulator's policy: every principal but the account itself holds the token
    // creator role on the emulator's service accounts.
    if caller.email == email {
        return Err(refusal(
            403,
            "PERMISSION_DENIED",
            "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
        ));
    }
    let request: Value = serde_json::from_slice(body)
        .map_err(|_| refusal(400, "INVALID_ARGUMENT", "Invalid JSON payload received."))?;
    let scopes: Vec<String> = request
        .get("scope")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if scopes.is_empty() {
        return Err(refusal(400, "INVALID_ARGUMENT", "Scope required."));
    }
    let delegates = request.get("delegates").and_then(Value::as_array);
    for delegate in delegates.into_iter().flatten() {
        let name = delegate.as_str().unwrap_or_default();
        let email = name
            .strip_prefix("projects/-/serviceAccounts/")
            .unwrap_or(name);
        if !known(email) {
            return Err(refusal(
                404,
                "NOT_FOUND",
                format!("Not found; Gaia id not found for delegate {name}"),
            ));
        }
    }
    let asked = match request.get("lifetime").and_then(Value::as_str) {
        None => 3600,
        Some(text) => text
            .strip_suffix('s')
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| (1..=MAX_LIFETIME).contains(n))
            .ok_or_else(|| {
                refusal(
                    400,
                    "INVALID_ARGUMENT",
                    "The lifetime must be a number of seconds from 1s to 43200s.",
                )
            })?,
    };
    // The emulator's lifetime (the `token_lifetime` fault) caps what is asked.
    let lifetime = Duration::from_secs(asked).min(identity.token_lifetime());
    Ok((scopes, lifetime))
}
