//! The checks Azure Database for PostgreSQL applies to an Entra token used as a password.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::Value;

use super::{Cloud, SigningKey};
use crate::util::now_unix;

/// Why Azure Database for PostgreSQL refused an Entra token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntraRejection {
    Format,
    Signature,
    Expired,
    NotYetValid,
    Audience,
    Tenant,
    OidMismatch { user: bool },
    AppTokenForUserRole,
}

impl EntraRejection {
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            EntraRejection::Format => "entra_format",
            EntraRejection::Signature => "entra_signature",
            EntraRejection::Expired => "entra_expired",
            EntraRejection::NotYetValid => "entra_not_yet_valid",
            EntraRejection::Audience => "entra_audience",
            EntraRejection::Tenant => "entra_tenant",
            EntraRejection::OidMismatch { .. } => "entra_oid_mismatch",
            EntraRejection::AppTokenForUserRole => "entra_token_type",
        }
    }

    /// The FATAL message text (SQLSTATE 28000).
    pub(crate) fn message(&self, cloud: Cloud, role: &str) -> String {
        match self {
            EntraRejection::Format => "The access token has invalid format. Please ensure the token is passed exactly as returned by the authentication endpoint and retry.".to_string(),
            EntraRejection::Signature => "An error occurred while validating the access token. Please acquire a new token and retry.".to_string(),
            EntraRejection::Expired => "The access token has expired. Please acquire a new token and retry.".to_string(),
            EntraRejection::NotYetValid => "The access token is not yet valid. Please acquire a new token and retry.".to_string(),
            EntraRejection::Audience => format!(
                "The access token does not have a valid audience claim. Please acquire a new token for the resource \"{}\".",
                cloud.audience()
            ),
            EntraRejection::Tenant => "The access token was issued by a tenant that is not associated with this server. Please acquire a new token from the right tenant and retry.".to_string(),
            EntraRejection::OidMismatch { user: false } => format!("Service principal oid mismatch for role[{role}]"),
            EntraRejection::OidMismatch { user: true } => format!("User oid mismatch for role[{role}]"),
            EntraRejection::AppTokenForUserRole => format!(
                "Service Principals cannot generate AAD_AUTH_TOKENTYPE_APP_USER tokens for role[{role}]"
            ),
        }
    }
}

/// What the server knows about the role being logged into.
#[derive(Debug, Clone)]
pub(crate) struct RoleMapping {
    pub object_id: String,
    /// `user`, `group` or `service`.
    pub object_type: String,
}

/// Checks an Entra token presented as the password of `role`.
pub(crate) fn check_token(
    token: &str,
    keys: &[&SigningKey],
    tenant_id: &str,
    cloud: Cloud,
    leeway: u64,
    mapping: &RoleMapping,
) -> Result<Value, EntraRejection> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(EntraRejection::Format);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| EntraRejection::Format)?;
    let payload = URL_SAFE_NO_PAD
        .decode(parts[1])
        .map_err(|_| EntraRejection::Format)?;
    let claims: Value = serde_json::from_slice(&payload).map_err(|_| EntraRejection::Format)?;
    if !claims.is_object() {
        return Err(EntraRejection::Format);
    }
    if header.alg != Algorithm::RS256 {
        return Err(EntraRejection::Signature);
    }
    let key = keys
        .iter()
        .find(|k| header.kid.as_deref() == Some(k.kid.as_str()))
        .ok_or(EntraRejection::Signature)?;
    let message = format!("{}.{}", parts[0], parts[1]);
    let ok = jsonwebtoken::crypto::verify(
        parts[2],
        message.as_bytes(),
        key.decoding_key(),
        Algorithm::RS256,
    )
    .map_err(|_| EntraRejection::Signature)?;
    if !ok {
        return Err(EntraRejection::Signature);
    }

    let int = |name: &str| claims.get(name).and_then(Value::as_i64);
    let string = |name: &str| claims.get(name).and_then(Value::as_str);
    let (Some(exp), Some(nbf)) = (int("exp"), int("nbf")) else {
        return Err(EntraRejection::Format);
    };
    let now = now_unix();
    if now >= exp + leeway as i64 {
        return Err(EntraRejection::Expired);
    }
    if now + (leeway as i64) < nbf {
        return Err(EntraRejection::NotYetValid);
    }
    if string("aud") != Some(cloud.audience()) {
        return Err(EntraRejection::Audience);
    }
    if !string("tid").is_some_and(|t| t.eq_ignore_ascii_case(tenant_id)) {
        return Err(EntraRejection::Tenant);
    }
    let oid = string("oid").ok_or(EntraRejection::Format)?;
    let is_app = string("idtyp") == Some("app") || string("scp").is_none();
    let matches = match mapping.object_type.as_str() {
        "group" => claims
            .get("groups")
            .and_then(Value::as_array)
            .is_some_and(|g| g.iter().any(|v| v.as_str() == Some(&mapping.object_id))),
        _ => oid.eq_ignore_ascii_case(&mapping.object_id),
    };
    if !matches {
        if is_app && mapping.object_type == "user" {
            return Err(EntraRejection::AppTokenForUserRole);
        }
        return Err(EntraRejection::OidMismatch { user: !is_app });
    }
    if is_app && mapping.object_type == "user" {
        return Err(EntraRejection::AppTokenForUserRole);
    }
    Ok(claims)
}
