//! RS256 signing keys, with the modulus and exponent read from DER for JWKS documents.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{Value, json};

use crate::Error;

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
