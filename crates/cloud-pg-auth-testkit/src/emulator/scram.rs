//! SCRAM-SHA-256 for the front's password check (RFC 5802/7677 over PBKDF2-HMAC-SHA256), and
//! the verifier the bootstrap stores, so the fixture password itself never appears in SQL
//! (or in the driver's logs of that SQL).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};

use crate::util::ct_eq;

pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

pub(crate) fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut salt1 = salt.to_vec();
    salt1.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac_sha256(password, &salt1);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac_sha256(password, &u);
        for (o, b) in out.iter_mut().zip(u.iter()) {
            *o ^= b;
        }
    }
    out
}

/// Checks a cleartext password against a `pg_authid.rolpassword` SCRAM-SHA-256 verifier.
pub(crate) fn verify_password(verifier: &str, password: &str) -> bool {
    let parse = || -> Option<bool> {
        let rest = verifier.strip_prefix("SCRAM-SHA-256$")?;
        let (iter_salt, keys) = rest.split_once('$')?;
        let (iterations, salt) = iter_salt.split_once(':')?;
        let (stored_key, _server_key) = keys.split_once(':')?;
        let iterations: u32 = iterations
            .parse()
            .ok()
            .filter(|i| (1..=10_000_000).contains(i))?;
        let salt = STANDARD.decode(salt).ok()?;
        let stored_key = STANDARD.decode(stored_key).ok()?;
        let salted = pbkdf2_sha256(password.as_bytes(), &salt, iterations);
        let client_key = hmac_sha256(&salted, b"Client Key");
        Some(ct_eq(&Sha256::digest(client_key), &stored_key))
    };
    parse().unwrap_or(false)
}

/// The `pg_authid.rolpassword` PostgreSQL stores for `password`: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
pub(crate) fn scram_verifier(password: &str) -> String {
    const ITERATIONS: u32 = 4096;
    let salt: [u8; 16] = rand::random();
    let salted = pbkdf2_sha256(password.as_bytes(), &salt, ITERATIONS);
    let stored = Sha256::digest(hmac_sha256(&salted, b"Client Key"));
    let server = hmac_sha256(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored),
        STANDARD.encode(server)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_verifier_checks_password() {
        // Verifier for password "secret" (salt "c2FsdA==", 4096 iterations), computed here.
        let salt = b"salt";
        let salted = pbkdf2_sha256(b"secret", salt, 4096);
        let stored = Sha256::digest(hmac_sha256(&salted, b"Client Key"));
        let server = hmac_sha256(&salted, b"Server Key");
        let verifier = format!(
            "SCRAM-SHA-256$4096:{}${}:{}",
            STANDARD.encode(salt),
            STANDARD.encode(stored),
            STANDARD.encode(server)
        );
        assert!(verify_password(&verifier, "secret"));
        assert!(!verify_password(&verifier, "Secret"));
        assert!(!verify_password("md5abc", "secret"));
    }

    #[test]
    fn the_stored_verifier_checks_the_password_and_does_not_hold_it() {
        let verifier = scram_verifier("fixture-password");
        assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{verifier}");
        assert!(!verifier.contains("fixture-password"));
        assert!(verify_password(&verifier, "fixture-password"));
        assert!(!verify_password(&verifier, "fixture-passwort"));
    }

    #[test]
    fn pbkdf2_matches_rfc7914_vector() {
        // RFC 7914 section 11: PBKDF2-HMAC-SHA256("passwd", "salt", 1), first 32 bytes.
        let out = pbkdf2_sha256(b"passwd", b"salt", 1);
        assert_eq!(
            hex::encode(out),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
    }
}
