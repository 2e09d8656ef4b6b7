//! Minting access tokens: the options tests give, and the v1 claim set.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::{Cloud, Identity, IdentityKind, SigningKey, Tenant};
use crate::Error;
use crate::util::unix;

/// Options for minting an Entra access token directly (tests).
#[derive(Debug, Clone, Default)]
pub struct MintOptions {
    /// Whose token (default: the user-assigned managed identity).
    pub identity: IdentityKind,
    /// `aud` (default: the cloud's PostgreSQL audience).
    pub audience: Option<String>,
    /// `iat` (default: now).
    pub issued_at: Option<SystemTime>,
    /// `nbf` (default: `iat`).
    pub not_before: Option<SystemTime>,
    /// `exp - iat` (default: the emulator's current token lifetime).
    pub lifetime: Option<Duration>,
    /// Sign with a key the emulator does not trust (same `kid`): a bad signature.
    pub wrong_key: bool,
    /// Replace `tid` and the issuer's tenant.
    pub tenant_id: Option<String>,
    /// Replace `oid` and `sub`.
    pub object_id: Option<String>,
}

/// What to put in a minted access token.
#[derive(Debug, Clone)]
pub(crate) struct TokenSpec<'a> {
    pub identity: &'a Identity,
    pub audience: &'a str,
    pub issued_at: SystemTime,
    pub not_before: SystemTime,
    pub lifetime: Duration,
    pub tenant_override: Option<&'a str>,
    pub oid_override: Option<&'a str>,
}

/// Builds the claim set of a v1 access token.
pub(crate) fn claims(tenant: &Tenant, cloud: Cloud, spec: &TokenSpec<'_>) -> Value {
    let identity = spec.identity;
    let audience = spec.audience;
    let iat = unix(spec.issued_at);
    let nbf = unix(spec.not_before);
    let exp = iat + spec.lifetime.as_secs() as i64;
    let tenant_override = spec.tenant_override;
    let oid_override = spec.oid_override;
    let tid = tenant_override.unwrap_or(&tenant.tenant_id);
    let oid = oid_override.unwrap_or(&identity.object_id);
    let iss = format!("https://{}/{}/", cloud.sts_host(), tid);
    let aio = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 48]>());
    let uti = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
    let rh = format!("0.{}.", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>()));
    let mut c = json!({
        "aud": audience,
        "iss": iss,
        "iat": iat,
        "nbf": nbf,
        "exp": exp,
        "aio": aio,
        "appid": identity.client_id,
        "appidacr": "2",
        "idp": iss,
        "oid": oid,
        "rh": rh,
        "sub": oid,
        "tid": tid,
        "uti": uti,
        "ver": "1.0",
        "xms_tdbr": "EU",
    });
    let obj = c.as_object_mut().expect("object");
    match identity.kind {
        IdentityKind::User => {
            obj.insert("idtyp".into(), json!("user"));
            obj.insert("appidacr".into(), json!("0"));
            obj.insert("acr".into(), json!("1"));
            obj.insert("amr".into(), json!(["pwd", "mfa"]));
            obj.insert("family_name".into(), json!("Example"));
            obj.insert("given_name".into(), json!("Alice"));
            obj.insert("name".into(), json!("Alice Example"));
            obj.insert("upn".into(), json!(identity.name));
            obj.insert("unique_name".into(), json!(identity.name));
            obj.insert("preferred_username".into(), json!(identity.name));
            obj.insert("scp".into(), json!("user_impersonation"));
            obj.insert("ipaddr".into(), json!("127.0.0.1"));
            obj.insert("puid".into(), json!("10032000DEADBEEF"));
        }
        IdentityKind::Workload | IdentityKind::Unmapped => {
            obj.insert("idtyp".into(), json!("app"));
            obj.insert("appidacr".into(), json!("1"));
        }
        IdentityKind::UserAssigned | IdentityKind::SystemAssigned => {
            obj.insert("idtyp".into(), json!("app"));
        }
    }
    if let Some(mirid) = &identity.resource_id {
        obj.insert("xms_mirid".into(), json!(mirid));
    }
    c
}

/// Mints a token with `key` (the emulator's, or a foreign one with the same kid); returns
/// the token and its `exp`.
pub(crate) fn mint(
    tenant: &Tenant,
    cloud: Cloud,
    key: &SigningKey,
    spec: &TokenSpec<'_>,
) -> Result<(String, i64), Error> {
    let c = claims(tenant, cloud, spec);
    let exp = c["exp"].as_i64().unwrap_or_default();
    Ok((key.sign(&c)?, exp))
}
