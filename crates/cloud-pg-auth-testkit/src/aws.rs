//! RDS IAM authentication tokens: a small SigV4 query-string signer and the verifier the
//! emulator's PostgreSQL front uses. Aurora DSQL tokens, signed the same way, are in
//! [`dsql`].
//!
//! A token is `host:port/?Action=connect&DBUser=<user>&X-Amz-Algorithm=AWS4-HMAC-SHA256&
//! X-Amz-Credential=<akid>%2F<yyyymmdd>%2F<region>%2Frds-db%2Faws4_request&X-Amz-Date=...&
//! X-Amz-Expires=<secs>&X-Amz-SignedHeaders=host[&X-Amz-Security-Token=...]&X-Amz-Signature=<hex>`,
//! exactly what `aws_sdk_rds::auth_token::AuthTokenGenerator` and boto3's
//! `generate_db_auth_token` produce.

use std::fmt;
use std::time::SystemTime;

use hmac::{Hmac, KeyInit as _, Mac};
use sha2::{Digest, Sha256};

use crate::util::{civil_from_days, days_from_civil, unix};

pub mod dsql;
mod presign;

/// The longest lifetime RDS accepts for a token, in seconds.
pub const MAX_EXPIRES: u64 = 900;

const SERVICE: &str = "rds-db";
pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What [`sign_rds_token`] signs.
#[derive(Clone)]
pub struct SignParams {
    /// Access key id (`AKIA...`/`ASIA...`).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials, sent as `X-Amz-Security-Token`.
    pub session_token: Option<String>,
    /// Region, e.g. `us-east-1`.
    pub region: String,
    /// Database host name as the client connects to it.
    pub host: String,
    /// Database port.
    pub port: u16,
    /// Database user (`DBUser`).
    pub user: String,
    /// Signing time (`X-Amz-Date`).
    pub time: SystemTime,
    /// `X-Amz-Expires`, in seconds (not capped here, so tests can craft bad tokens).
    pub expires_in: u64,
}

impl fmt::Debug for SignParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignParams")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("region", &self.region)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("time", &self.time)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, as SigV4 requires.
pub fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

pub(crate) fn amz_date(t: SystemTime) -> String {
    let secs = unix(t);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

pub(crate) fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (y, mo, d) = (digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let (h, mi, se) = (digits(9..11)?, digits(11..13)?, digits(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo as u32, d as u32) * 86_400 + h * 3600 + mi * 60 + se)
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The SigV4 signing key: `HMAC("AWS4"+secret, date) → region → service → "aws4_request"`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, service.as_bytes());
    hmac(&k, b"aws4_request")
}

/// Canonical query string: every parameter but the signature, encoded and sorted.
fn canonical_query(params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "X-Amz-Signature")
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    encoded.sort();
    encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The SigV4 signature of a presigned `GET /` for `service`, signing only the `host` header.
pub(crate) fn signature_for(
    service: &str,
    secret: &str,
    amz_date: &str,
    region: &str,
    host_port: &str,
    params: &[(String, String)],
) -> [u8; 32] {
    let canonical_request = format!(
        "GET\n/\n{}\nhost:{}\n\nhost\n{}",
        canonical_query(params),
        host_port,
        EMPTY_SHA256
    );
    let date = &amz_date[..8];
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let key = signing_key(secret, date, region, service);
    hmac(&key, string_to_sign.as_bytes())
}

/// Signs an RDS IAM auth token, byte for byte what the AWS SDKs produce for the same input.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use cloud_pg_auth_testkit::aws::{sign_rds_token, SignParams};
///
/// let token = sign_rds_token(&SignParams {
///     access_key_id: "akid".into(),
///     secret_access_key: "secret".into(),
///     session_token: None,
///     region: "us-east-1".into(),
///     host: "prod-instance.us-east-1.rds.amazonaws.com".into(),
///     port: 3306,
///     user: "peccy".into(),
///     time: UNIX_EPOCH + Duration::from_secs(1724709600),
///     expires_in: 900,
/// });
/// assert!(token.ends_with(
///     "X-Amz-Signature=dd0cba843009474347af724090233265628ace491ea17ce3eb3da098b983ad89"
/// ));
/// ```
pub fn sign_rds_token(p: &SignParams) -> String {
    presign::presign(presign::Presign {
        service: SERVICE,
        access_key_id: &p.access_key_id,
        secret_access_key: &p.secret_access_key,
        session_token: p.session_token.as_deref(),
        region: &p.region,
        host: &format!("{}:{}", p.host, p.port),
        leading: vec![
            ("Action".into(), "connect".into()),
            ("DBUser".into(), p.user.clone()),
        ],
        time: p.time,
        expires_in: p.expires_in,
        session_token_last: false,
    })
}

/// What the verifier checks a token against.
#[derive(Clone)]
pub struct VerifyParams {
    /// The only access key id accepted.
    pub access_key_id: String,
    /// Its secret.
    pub secret_access_key: String,
    /// Expected region.
    pub region: String,
    /// Expected `DBUser` (the startup user; compared case-sensitively).
    pub user: String,
    /// Accepted signed `host:port` values.
    pub allowed_hosts: Vec<String>,
    /// The current time.
    pub now: SystemTime,
    /// Largest accepted `X-Amz-Expires` (RDS: 900).
    pub max_expires: u64,
    /// Accepted clock skew for an `X-Amz-Date` in the future, in seconds.
    pub max_future_skew: u64,
}

impl fmt::Debug for VerifyParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyParams")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("region", &self.region)
            .field("user", &self.user)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("now", &self.now)
            .field("max_expires", &self.max_expires)
            .field("max_future_skew", &self.max_future_skew)
            .finish()
    }
}

/// The contents of a token that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdsTokenClaims {
    /// Signed host.
    pub host: String,
    /// Signed port.
    pub port: u16,
    /// `DBUser`.
    pub user: String,
    /// Region of the credential scope.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// `X-Amz-Date`, seconds since the epoch.
    pub signed_at: i64,
    /// `X-Amz-Expires`.
    pub expires_in: u64,
    /// Whether an `X-Amz-Security-Token` was present.
    pub has_session_token: bool,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RdsTokenError {
    /// Not a well-formed token.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The credential names another service or action.
    #[error("token is not an rds-db connect token")]
    WrongService,
    /// The access key id is unknown.
    #[error("unknown access key id {0}")]
    UnknownAccessKey(String),
    /// The signature does not match.
    #[error("signature does not match")]
    BadSignature,
    /// `X-Amz-Expires` is above the maximum.
    #[error("x-amz-expires {0} is above the maximum")]
    ExpiresTooLong(u64),
    /// The token has expired.
    #[error("token expired")]
    Expired,
    /// `X-Amz-Date` is too far in the future.
    #[error("token is not yet valid")]
    NotYetValid,
    /// `DBUser` is not the user logging in.
    #[error("token is for user {0:?}")]
    WrongUser(String),
    /// The signed host:port is not this server.
    #[error("token is for host {0:?}")]
    WrongHost(String),
    /// The region does not match.
    #[error("token is for region {0:?}")]
    WrongRegion(String),
}

impl RdsTokenError {
    /// A short stable label, used as the emulator's rejection reason (`aws_<label>`).
    pub fn label(&self) -> &'static str {
        match self {
            RdsTokenError::Malformed(_) => "malformed",
            RdsTokenError::WrongService => "service",
            RdsTokenError::UnknownAccessKey(_) => "access_key",
            RdsTokenError::BadSignature => "signature",
            RdsTokenError::ExpiresTooLong(_) => "expires_too_long",
            RdsTokenError::Expired => "expired",
            RdsTokenError::NotYetValid => "not_yet_valid",
            RdsTokenError::WrongUser(_) => "user",
            RdsTokenError::WrongHost(_) => "host",
            RdsTokenError::WrongRegion(_) => "region",
        }
    }
}

/// Verifies an RDS IAM token like RDS does: signature recomputed with the known secret and
/// compared in constant time, expiry at most `max_expires` and not passed, user, signed
/// host:port and region.
pub fn verify_rds_token(token: &str, p: &VerifyParams) -> Result<RdsTokenClaims, RdsTokenError> {
    let token = presign::verify_presigned(
        token,
        &presign::Expect {
            service: SERVICE,
            access_key_id: &p.access_key_id,
            secret_access_key: &p.secret_access_key,
            now: p.now,
            max_expires: p.max_expires,
            max_future_skew: p.max_future_skew,
        },
    )?;
    let host_port = token.host;
    let (host, port) = host_port
        .rsplit_once(':')
        .ok_or_else(|| RdsTokenError::Malformed("no port in host".into()))?;
    let port: u16 = port
        .parse()
        .map_err(|_| RdsTokenError::Malformed("bad port".into()))?;
    if token.get("Action")? != "connect" {
        return Err(RdsTokenError::WrongService);
    }
    let user = token.get("DBUser")?;
    if user != p.user {
        return Err(RdsTokenError::WrongUser(user.to_string()));
    }
    if !p.allowed_hosts.iter().any(|h| h == host_port) {
        return Err(RdsTokenError::WrongHost(host_port.to_string()));
    }
    if token.region != p.region {
        return Err(RdsTokenError::WrongRegion(token.region));
    }
    Ok(RdsTokenClaims {
        host: host.to_string(),
        port,
        user: user.to_string(),
        has_session_token: token.has_session_token(),
        region: token.region,
        access_key_id: token.access_key_id,
        signed_at: token.signed_at,
        expires_in: token.expires_in,
    })
}

impl From<presign::PresignError> for RdsTokenError {
    fn from(error: presign::PresignError) -> Self {
        use presign::PresignError as E;
        match error {
            E::Malformed(m) => Self::Malformed(m),
            E::WrongService => Self::WrongService,
            E::UnknownAccessKey(k) => Self::UnknownAccessKey(k),
            E::BadSignature => Self::BadSignature,
            E::ExpiresTooLong(e) => Self::ExpiresTooLong(e),
            E::Expired => Self::Expired,
            E::NotYetValid => Self::NotYetValid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn amz_dates_round_trip() {
        let t = UNIX_EPOCH + Duration::from_secs(1_724_709_600);
        assert_eq!(amz_date(t), "20240826T220000Z");
        assert_eq!(parse_amz_date("20240826T220000Z"), Some(1_724_709_600));
        assert_eq!(parse_amz_date("2024-08-26T22:00:00Z"), None);
    }

    #[test]
    fn encoding_keeps_only_unreserved() {
        assert_eq!(uri_encode("a/b c+~"), "a%2Fb%20c%2B~");
    }
}
