//! SigV4 query presigning as both AWS token kinds use it (RDS `rds-db`, Aurora DSQL `dsql`):
//! a presigned `GET https://<host>/?<params>` signing only the `host` header. Signing, and the
//! checks every verifier makes before its own (service, key, signature, lifetime, clock).

use std::time::SystemTime;

use super::{ALGORITHM, amz_date, parse_amz_date, signature_for, uri_encode};
use crate::util::unix;

/// What [`presign`] signs.
pub(crate) struct Presign<'a> {
    /// The SigV4 service (`rds-db`, `dsql`).
    pub(crate) service: &'a str,
    pub(crate) access_key_id: &'a str,
    pub(crate) secret_access_key: &'a str,
    pub(crate) session_token: Option<&'a str>,
    pub(crate) region: &'a str,
    /// The signed `host` header: `host:port` for RDS, the bare name for DSQL.
    pub(crate) host: &'a str,
    /// The parameters before the SigV4 ones (`Action`, `DBUser`).
    pub(crate) leading: Vec<(String, String)>,
    pub(crate) time: SystemTime,
    pub(crate) expires_in: u64,
    /// Where the SDK puts `X-Amz-Security-Token`: after the signature (DSQL) or before it
    /// (RDS). Both sign it.
    pub(crate) session_token_last: bool,
}

/// Presigns, returning `<host>/?<query>` byte for byte as the AWS SDKs lay it out.
pub(crate) fn presign(p: Presign<'_>) -> String {
    let amz_date = amz_date(p.time);
    let credential = format!(
        "{}/{}/{}/{}/aws4_request",
        p.access_key_id,
        &amz_date[..8],
        p.region,
        p.service
    );
    let mut params = p.leading;
    params.extend([
        ("X-Amz-Algorithm".into(), ALGORITHM.into()),
        ("X-Amz-Credential".into(), credential),
        ("X-Amz-Date".into(), amz_date.clone()),
        ("X-Amz-Expires".into(), p.expires_in.to_string()),
        ("X-Amz-SignedHeaders".into(), "host".into()),
    ]);
    let session = p
        .session_token
        .map(|token| ("X-Amz-Security-Token".to_string(), token.to_string()));
    let mut signed = params.clone();
    signed.extend(session.clone());
    let signature = signature_for(
        p.service,
        p.secret_access_key,
        &amz_date,
        p.region,
        p.host,
        &signed,
    );
    let signature = ("X-Amz-Signature".to_string(), hex::encode(signature));
    if p.session_token_last {
        params.push(signature);
        params.extend(session);
    } else {
        params.extend(session);
        params.push(signature);
    }
    let query = params
        .iter()
        .map(|(k, v)| format!("{}={}", uri_encode(k), uri_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    format!("{}/?{query}", p.host)
}

/// What every verifier checks a presigned token against.
pub(crate) struct Expect<'a> {
    pub(crate) service: &'a str,
    pub(crate) access_key_id: &'a str,
    pub(crate) secret_access_key: &'a str,
    pub(crate) now: SystemTime,
    pub(crate) max_expires: u64,
    pub(crate) max_future_skew: u64,
}

/// Why a presigned token failed the shared checks.
#[derive(Debug)]
pub(crate) enum PresignError {
    Malformed(String),
    WrongService,
    UnknownAccessKey(String),
    BadSignature,
    ExpiresTooLong(u64),
    Expired,
    NotYetValid,
}

/// A token that passed the shared checks; the caller checks its own parameters, the host
/// and the region.
#[derive(Debug)]
pub(crate) struct Verified<'a> {
    /// The signed host, as in the token (`host:port` or the bare name).
    pub(crate) host: &'a str,
    pub(crate) params: Vec<(String, String)>,
    pub(crate) access_key_id: String,
    pub(crate) region: String,
    pub(crate) signed_at: i64,
    pub(crate) expires_in: u64,
}

impl Verified<'_> {
    /// The one value of `name`, or why there is not one.
    pub(crate) fn get(&self, name: &str) -> Result<&str, PresignError> {
        one(&self.params, name)
    }

    /// Whether temporary credentials signed it.
    pub(crate) fn has_session_token(&self) -> bool {
        self.params.iter().any(|(k, _)| k == "X-Amz-Security-Token")
    }
}

fn one<'p>(params: &'p [(String, String)], name: &str) -> Result<&'p str, PresignError> {
    let mut values = params.iter().filter(|(k, _)| k == name);
    let first = values
        .next()
        .ok_or_else(|| PresignError::Malformed(format!("missing {name}")))?;
    if values.next().is_some() {
        return Err(PresignError::Malformed(format!("duplicate {name}")));
    }
    Ok(first.1.as_str())
}

/// Parses `token` (an `https://` or `http://` prefix is ignored) and checks its form,
/// service, access key, signature (recomputed, compared in constant time), lifetime and
/// signing time, in the order the services report them.
pub(crate) fn verify_presigned<'t>(
    token: &'t str,
    expect: &Expect<'_>,
) -> Result<Verified<'t>, PresignError> {
    let malformed = |m: &str| PresignError::Malformed(m.to_string());
    let token = token
        .strip_prefix("https://")
        .or_else(|| token.strip_prefix("http://"))
        .unwrap_or(token);
    let (host, query) = token
        .split_once("/?")
        .ok_or_else(|| malformed("no '/?' separator"))?;
    if host.is_empty() {
        return Err(malformed("empty host"));
    }
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if one(&params, "X-Amz-Algorithm")? != ALGORITHM {
        return Err(malformed("unsupported algorithm"));
    }
    if one(&params, "X-Amz-SignedHeaders")? != "host" {
        return Err(malformed("signed headers must be host"));
    }
    let credential = one(&params, "X-Amz-Credential")?;
    let parts: Vec<&str> = credential.split('/').collect();
    let [akid, scope_date, region, service, terminator] = parts[..] else {
        return Err(malformed("bad credential scope"));
    };
    if service != expect.service || terminator != "aws4_request" {
        return Err(PresignError::WrongService);
    }
    let date = one(&params, "X-Amz-Date")?;
    let signed_at = parse_amz_date(date).ok_or_else(|| malformed("bad X-Amz-Date"))?;
    if !date.starts_with(scope_date) || scope_date.len() != 8 {
        return Err(malformed("credential date does not match X-Amz-Date"));
    }
    let expires_in: u64 = one(&params, "X-Amz-Expires")?
        .parse()
        .map_err(|_| malformed("bad X-Amz-Expires"))?;
    let signature = hex::decode(one(&params, "X-Amz-Signature")?)
        .map_err(|_| malformed("signature is not hex"))?;

    if !crate::util::ct_eq(akid.as_bytes(), expect.access_key_id.as_bytes()) {
        return Err(PresignError::UnknownAccessKey(akid.to_string()));
    }
    let expected = signature_for(
        expect.service,
        expect.secret_access_key,
        date,
        region,
        host,
        &params,
    );
    if !crate::util::ct_eq(&expected, &signature) {
        return Err(PresignError::BadSignature);
    }
    if expires_in > expect.max_expires {
        return Err(PresignError::ExpiresTooLong(expires_in));
    }
    let now = unix(expect.now);
    if now > signed_at + expires_in as i64 {
        return Err(PresignError::Expired);
    }
    if signed_at > now + expect.max_future_skew as i64 {
        return Err(PresignError::NotYetValid);
    }
    let (access_key_id, region) = (akid.to_string(), region.to_string());
    Ok(Verified {
        host,
        params,
        access_key_id,
        region,
        signed_at,
        expires_in,
    })
}
