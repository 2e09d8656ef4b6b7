//! Microsoft Entra side of the emulator: clouds, the identities of the emulated tenant,
//! RS256 signing keys, token minting and the checks Azure Database for PostgreSQL applies.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Error;
use crate::util::{now_unix, unix, uuid};

/// The Azure cloud whose audiences and authorities the emulator imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    /// Azure public cloud.
    #[default]
    Public,
    /// Azure US Government.
    UsGov,
    /// Azure operated by 21Vianet (China).
    China,
}

impl Cloud {
    /// The `aud` of Azure Database for PostgreSQL tokens in this cloud.
    pub fn audience(self) -> &'static str {
        match self {
            Cloud::Public => "https://ossrdbms-aad.database.windows.net",
            Cloud::UsGov => "https://ossrdbms-aad.database.usgovcloudapi.net",
            Cloud::China => "https://ossrdbms-aad.database.chinacloudapi.cn",
        }
    }

    /// The scope clients request: the audience plus `/.default`.
    pub fn scope(self) -> String {
        format!("{}/.default", self.audience())
    }

    /// The real authority host of this cloud (informational; the emulator serves its own).
    pub fn authority_host(self) -> &'static str {
        match self {
            Cloud::Public => "https://login.microsoftonline.com/",
            Cloud::UsGov => "https://login.microsoftonline.us/",
            Cloud::China => "https://login.chinacloudapi.cn/",
        }
    }

    /// The host of the v1 token issuer (`iss = https://<host>/<tenant>/`).
    pub fn sts_host(self) -> &'static str {
        match self {
            Cloud::Public => "sts.windows.net",
            Cloud::UsGov => "sts.usgovcloudapi.net",
            Cloud::China => "sts.chinacloudapi.cn",
        }
    }

    /// The name used on the command line (`public`, `usgov`, `china`).
    pub fn name(self) -> &'static str {
        match self {
            Cloud::Public => "public",
            Cloud::UsGov => "usgov",
            Cloud::China => "china",
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Cloud {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "public" | "azurepubliccloud" | "azurecloud" => Ok(Cloud::Public),
            "usgov" | "usgovernment" | "azureusgovernment" | "azureusgovernmentcloud" => {
                Ok(Cloud::UsGov)
            }
            "china" | "azurechina" | "azurechinacloud" => Ok(Cloud::China),
            other => Err(Error::InvalidArgument(format!(
                "unknown cloud {other:?} (expected public, usgov or china)"
            ))),
        }
    }
}

/// The identities of the emulated tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IdentityKind {
    /// The user-assigned managed identity (`AZURE_CLIENT_ID`); maps to `azure_role()`.
    #[default]
    UserAssigned,
    /// The host's system-assigned managed identity (the default of the managed-identity
    /// endpoints); maps to `azure_system_role()`.
    SystemAssigned,
    /// The app registration used with workload identity and client secrets; maps to
    /// `azure_workload_role()`.
    Workload,
    /// A user (`alice@contoso.example`); maps to `azure_user_role()`.
    User,
    /// A service principal of the tenant that no database role maps to.
    Unmapped,
}

/// The object type of a principal, as `pgaadauth_create_principal_with_oid` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrincipalType {
    User,
    Service,
}

impl PrincipalType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PrincipalType::User => "user",
            PrincipalType::Service => "service",
        }
    }
}

/// One identity of the emulated tenant.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub kind: IdentityKind,
    /// Display name (service principals) or UPN (users): the PostgreSQL role name.
    pub name: String,
    /// `appid`: client id of the identity, or of the client app for a user.
    pub client_id: String,
    /// `oid`/`sub`: object (principal) id.
    pub object_id: String,
    /// `xms_mirid` of managed identities.
    pub resource_id: Option<String>,
    pub principal_type: PrincipalType,
}

/// The emulated tenant: ids and identities.
#[derive(Debug, Clone)]
pub(crate) struct Tenant {
    pub tenant_id: String,
    pub identities: Vec<Identity>,
}

/// Well-known app id of the Azure CLI, the `appid` of user tokens from `az`.
const AZURE_CLI_APP_ID: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

pub(crate) const UAMI_NAME: &str = "pgauth-uami";
pub(crate) const SYSTEM_NAME: &str = "pgauth-webapp";
pub(crate) const WORKLOAD_NAME: &str = "pgauth-workload";
pub(crate) const USER_UPN: &str = "alice@contoso.example";
pub(crate) const UNMAPPED_NAME: &str = "pgauth-unmapped";

impl Tenant {
    pub(crate) fn generate() -> Tenant {
        let subscription_id = uuid();
        let resource_group = "pgauth-emulator-rg".to_string();
        let uami_id = format!(
            "/subscriptions/{subscription_id}/resourcegroups/{resource_group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{UAMI_NAME}"
        );
        let site_id = format!(
            "/subscriptions/{subscription_id}/resourcegroups/{resource_group}/providers/Microsoft.Web/sites/{SYSTEM_NAME}"
        );
        let ident = |kind, name: &str, client_id: String, resource_id, principal_type| Identity {
            kind,
            name: name.to_string(),
            client_id,
            object_id: uuid(),
            resource_id,
            principal_type,
        };
        Tenant {
            tenant_id: uuid(),
            identities: vec![
                ident(
                    IdentityKind::UserAssigned,
                    UAMI_NAME,
                    uuid(),
                    Some(uami_id),
                    PrincipalType::Service,
                ),
                ident(
                    IdentityKind::SystemAssigned,
                    SYSTEM_NAME,
                    uuid(),
                    Some(site_id),
                    PrincipalType::Service,
                ),
                ident(
                    IdentityKind::Workload,
                    WORKLOAD_NAME,
                    uuid(),
                    None,
                    PrincipalType::Service,
                ),
                ident(
                    IdentityKind::User,
                    USER_UPN,
                    AZURE_CLI_APP_ID.to_string(),
                    None,
                    PrincipalType::User,
                ),
                ident(
                    IdentityKind::Unmapped,
                    UNMAPPED_NAME,
                    uuid(),
                    None,
                    PrincipalType::Service,
                ),
            ],
        }
    }

    pub(crate) fn get(&self, kind: IdentityKind) -> &Identity {
        self.identities
            .iter()
            .find(|i| i.kind == kind)
            .expect("every identity kind exists in the tenant")
    }

    /// Managed identities selectable on the managed-identity endpoints.
    pub(crate) fn managed_identities(&self) -> impl Iterator<Item = &Identity> {
        self.identities.iter().filter(|i| {
            matches!(
                i.kind,
                IdentityKind::UserAssigned | IdentityKind::SystemAssigned
            )
        })
    }
}

/// An RS256 key with its `kid`.
pub(crate) struct SigningKey {
    pub kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Modulus and exponent, big-endian, for JWKS documents.
    pub n: Vec<u8>,
    pub e: Vec<u8>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Reads one DER TLV at the start of `input`: returns (tag, contents, rest).
fn der_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Extracts (n, e) from a PKCS#1 `RSAPublicKey` or an SPKI wrapping one.
fn rsa_components(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (tag, seq, _) = der_tlv(der)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, first, rest) = der_tlv(seq)?;
    if tag == 0x30 {
        // SubjectPublicKeyInfo: AlgorithmIdentifier, BIT STRING { RSAPublicKey }
        let (tag, bits, _) = der_tlv(rest)?;
        if tag != 0x03 || bits.is_empty() {
            return None;
        }
        return rsa_components(&bits[1..]);
    }
    if tag != 0x02 {
        return None;
    }
    let (tag, e, _) = der_tlv(rest)?;
    if tag != 0x02 {
        return None;
    }
    let strip = |v: &[u8]| {
        let mut v = v;
        while v.len() > 1 && v[0] == 0 {
            v = &v[1..];
        }
        v.to_vec()
    };
    Some((strip(first), strip(e)))
}

impl SigningKey {
    pub(crate) fn generate(kid: String) -> Result<SigningKey, Error> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?;
        let encoding = EncodingKey::from_rsa_pem(key.serialize_pem().as_bytes())?;
        let decoding = DecodingKey::from_rsa_pem(key.public_key_pem().as_bytes())?;
        let (n, e) = rsa_components(key.public_key_raw())
            .or_else(|| {
                let pem = key.public_key_pem();
                let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
                let der = base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .ok()?;
                rsa_components(&der)
            })
            .ok_or_else(|| Error::Tls("cannot read rsa public key components".into()))?;
        Ok(SigningKey {
            kid,
            encoding,
            decoding,
            n,
            e,
        })
    }

    pub(crate) fn sign(&self, claims: &Value) -> Result<String, Error> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        header.x5t = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    pub(crate) fn jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "x5t": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&self.n),
            "e": URL_SAFE_NO_PAD.encode(&self.e),
        })
    }
}

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
        &key.decoding,
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

/// Claims of the federated (Kubernetes service account) token the emulator writes to
/// `AZURE_FEDERATED_TOKEN_FILE`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FederatedClaims {
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    pub iss: String,
    pub sub: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

pub(crate) const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sign_and_verify() {
        let tenant = Tenant::generate();
        let key = SigningKey::generate("k1".into()).unwrap();
        let other = SigningKey::generate("k1".into()).unwrap();
        assert!(!key.n.is_empty() && key.e == vec![1, 0, 1]);
        let id = tenant.get(IdentityKind::UserAssigned);
        let mapping = RoleMapping {
            object_id: id.object_id.clone(),
            object_type: "service".into(),
        };
        let now = SystemTime::now();
        let (t, _) = mint(
            &tenant,
            Cloud::Public,
            &key,
            &TokenSpec {
                identity: id,
                audience: Cloud::Public.audience(),
                issued_at: now,
                not_before: now,
                lifetime: Duration::from_secs(60),
                tenant_override: None,
                oid_override: None,
            },
        )
        .unwrap();
        check_token(&t, &[&key], &tenant.tenant_id, Cloud::Public, 0, &mapping).unwrap();
        assert_eq!(
            check_token(&t, &[&other], &tenant.tenant_id, Cloud::Public, 0, &mapping),
            Err(EntraRejection::Signature)
        );
        assert_eq!(
            check_token(&t, &[&key], &tenant.tenant_id, Cloud::UsGov, 0, &mapping),
            Err(EntraRejection::Audience)
        );
    }
}
