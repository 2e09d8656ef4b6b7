//! The signed assertion of the JWT-bearer grant (RFC 7523) that exchanges a service account
//! key for an access token: RS256 with the key's `kid`, signed by rustls's aws-lc-rs provider
//! (no RSA crate of its own).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::sign::SigningKey;
use rustls::{SignatureAlgorithm, SignatureScheme};
use serde::Serialize;

use super::TOKEN_LIFETIME;
use super::credentials::ServiceAccountKey;
use crate::Secret;

/// An RSA private key, ready to sign.
#[derive(Clone)]
pub(crate) struct RsaKey(Arc<dyn SigningKey>);

impl fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RsaKey(<redacted>)")
    }
}

impl RsaKey {
    /// Reads a PEM private key (PKCS#8, as Google writes it, or PKCS#1). The error finishes
    /// the sentence "the private_key ...".
    pub(crate) fn from_pem(pem: &str) -> Result<Self, String> {
        // The error of the PEM reader says what was expected, never the content.
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
            "is not a pem private key; create a new key (gcloud iam service-accounts keys \
             create) and point to it"
                .to_string()
        })?;
        let key = any_supported_type(&der).map_err(|_| {
            "cannot be read as a private key; create a new key and point to it".to_string()
        })?;
        if key.algorithm() != SignatureAlgorithm::RSA {
            return Err(
                "is not an rsa key; google service account keys are rsa: create a new key"
                    .to_string(),
            );
        }
        Ok(Self(key))
    }

    /// RSASSA-PKCS1-v1_5 with SHA-256 (JWS `RS256`) over `message`.
    pub(crate) fn sign_rs256(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        let signer = self
            .0
            .choose_scheme(&[SignatureScheme::RSA_PKCS1_SHA256])
            .ok_or("the rsa key cannot sign with rs256")?;
        signer
            .sign(message)
            .map_err(|e| format!("signing the assertion failed: {e}"))
    }
}

/// How far `iat` is back-dated.
const ISSUED_EARLIER: Duration = Duration::from_secs(10);

/// The JOSE header of an assertion.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct AssertionHeader<'a> {
    pub(crate) alg: &'static str,
    pub(crate) typ: &'static str,
    pub(crate) kid: &'a str,
}

/// The claims of an assertion: the service account, the scope asked for, the token
/// endpoint as audience, and a lifetime of one hour (Google's maximum) from `iat`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(crate) struct AssertionClaims<'a> {
    pub(crate) iss: &'a str,
    pub(crate) scope: &'a str,
    pub(crate) aud: &'a str,
    pub(crate) iat: u64,
    pub(crate) exp: u64,
}

impl<'a> AssertionClaims<'a> {
    pub(crate) fn new(key: &'a ServiceAccountKey, scope: &'a str, now: SystemTime) -> Self {
        // Issued a little in the past, as Google's Go oauth2 library does: Google refuses an
        // assertion issued in its future, so a clock slightly ahead would fail every fetch.
        let iat = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs()
            .saturating_sub(ISSUED_EARLIER.as_secs());
        Self {
            iss: &key.client_email,
            scope,
            aud: &key.token_uri,
            iat,
            exp: iat + TOKEN_LIFETIME.as_secs(),
        }
    }
}

/// The signed assertion `header.claims.signature` for `key`, asking for `scope` at `now`.
pub(crate) fn sign_assertion(
    key: &ServiceAccountKey,
    scope: &str,
    now: SystemTime,
) -> Result<Secret, String> {
    let header = AssertionHeader {
        alg: "RS256",
        typ: "JWT",
        kid: &key.private_key_id,
    };
    let claims = AssertionClaims::new(key, scope, now);
    let mut signed = format!("{}.{}", encode(&header)?, encode(&claims)?);
    let signature = key.key.sign_rs256(signed.as_bytes())?;
    signed.push('.');
    signed.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(Secret::new(signed))
}

/// A JSON value in base64url without padding, as JWS wants it.
fn encode<T: Serialize>(value: &T) -> Result<String, String> {
    serde_json::to_vec(value)
        .map(|json| URL_SAFE_NO_PAD.encode(json))
        .map_err(|e| format!("cannot encode the assertion: {e}"))
}
