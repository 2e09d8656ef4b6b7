//! Aurora DSQL authentication tokens: the signer and the verifier the emulator's front uses.
//!
//! A token is `host/?Action=DbConnect|DbConnectAdmin&X-Amz-Algorithm=AWS4-HMAC-SHA256&
//! X-Amz-Credential=<akid>%2F<yyyymmdd>%2F<region>%2Fdsql%2Faws4_request&X-Amz-Date=...&
//! X-Amz-Expires=<secs>&X-Amz-SignedHeaders=host&X-Amz-Signature=<hex>[&X-Amz-Security-Token=...]`:
//! no port, no user, what aws-sdk-dsql's `AuthTokenGenerator` produces.

use std::fmt;
use std::time::SystemTime;

use super::presign::{Expect, Presign, PresignError, presign, verify_presigned};

/// The SigV4 service of DSQL tokens.
pub const SERVICE: &str = "dsql";
/// The longest lifetime DSQL accepts for a token, in seconds (one week).
pub const MAX_EXPIRES: u64 = 604_800;
/// The role whose tokens must use `DbConnectAdmin`.
pub const ADMIN_ROLE: &str = "admin";
/// What the front answers to any refused DSQL token, as DSQL does.
pub const ACCESS_DENIED: &str = "unable to accept connection, access denied";

/// The action a token for `user` must name: `DbConnectAdmin` for `admin`, else `DbConnect`.
pub fn action_for(user: &str) -> &'static str {
    if user == ADMIN_ROLE {
        "DbConnectAdmin"
    } else {
        "DbConnect"
    }
}

/// What [`sign_dsql_token`] signs.
#[derive(Clone)]
pub struct DsqlSignParams {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials, sent as `X-Amz-Security-Token`.
    pub session_token: Option<String>,
    /// Region, e.g. `us-east-1`.
    pub region: String,
    /// Cluster endpoint name, without port.
    pub host: String,
    /// `DbConnect` or `DbConnectAdmin` (any text, so tests can craft bad tokens).
    pub action: String,
    /// Signing time (`X-Amz-Date`).
    pub time: SystemTime,
    /// `X-Amz-Expires`, in seconds (not capped here).
    pub expires_in: u64,
}

impl fmt::Debug for DsqlSignParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DsqlSignParams")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("region", &self.region)
            .field("host", &self.host)
            .field("action", &self.action)
            .field("time", &self.time)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Signs a DSQL token, byte for byte what aws-sdk-dsql produces for the same input.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use cloud_pg_auth_testkit::aws::dsql::{sign_dsql_token, DsqlSignParams};
///
/// let token = sign_dsql_token(&DsqlSignParams {
///     access_key_id: "akid".into(),
///     secret_access_key: "secret".into(),
///     session_token: None,
///     region: "us-east-1".into(),
///     host: "peccy.dsql.us-east-1.on.aws".into(),
///     action: "DbConnect".into(),
///     time: UNIX_EPOCH + Duration::from_secs(1724716800),
///     expires_in: 450,
/// });
/// assert!(token.ends_with(
///     "X-Amz-Signature=f5f2ad764ca5df44045d4ab6ccecba0eef941b0007e5765885a0b6ed3702a3f8"
/// ));
/// ```
pub fn sign_dsql_token(p: &DsqlSignParams) -> String {
    presign(Presign {
        service: SERVICE,
        access_key_id: &p.access_key_id,
        secret_access_key: &p.secret_access_key,
        session_token: p.session_token.as_deref(),
        region: &p.region,
        host: &p.host,
        leading: vec![("Action".into(), p.action.clone())],
        time: p.time,
        expires_in: p.expires_in,
        session_token_last: true,
    })
}

/// What the verifier checks a DSQL token against.
#[derive(Clone)]
pub struct DsqlVerifyParams {
    /// The only access key id accepted.
    pub access_key_id: String,
    /// Its secret.
    pub secret_access_key: String,
    /// Expected region.
    pub region: String,
    /// The startup user: `admin` needs `DbConnectAdmin`, others `DbConnect`.
    pub user: String,
    /// Accepted signed hosts (cluster endpoint names, no port).
    pub allowed_hosts: Vec<String>,
    /// The current time.
    pub now: SystemTime,
    /// Largest accepted `X-Amz-Expires` (DSQL: 604800).
    pub max_expires: u64,
    /// Accepted clock skew for an `X-Amz-Date` in the future, in seconds.
    pub max_future_skew: u64,
}

impl fmt::Debug for DsqlVerifyParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DsqlVerifyParams")
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

/// The contents of a DSQL token that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DsqlTokenClaims {
    /// Signed host.
    pub host: String,
    /// `DbConnect` or `DbConnectAdmin`.
    pub action: String,
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

/// Why a DSQL token was refused (the client only ever sees [`ACCESS_DENIED`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DsqlTokenError {
    /// Not a well-formed token.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The credential names another service.
    #[error("token is not a dsql token")]
    WrongService,
    /// The action does not fit the role (`admin` needs `DbConnectAdmin`).
    #[error("token action {0:?} does not fit the role")]
    WrongAction(String),
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
    /// The signed host is not this cluster (or has a port).
    #[error("token is for host {0:?}")]
    WrongHost(String),
    /// The region does not match.
    #[error("token is for region {0:?}")]
    WrongRegion(String),
}

impl DsqlTokenError {
    /// A short stable label, used as the emulator's rejection reason (`dsql_<label>`).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::WrongService => "service",
            Self::WrongAction(_) => "action",
            Self::UnknownAccessKey(_) => "access_key",
            Self::BadSignature => "signature",
            Self::ExpiresTooLong(_) => "expires_too_long",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongHost(_) => "host",
            Self::WrongRegion(_) => "region",
        }
    }
}

/// Verifies a DSQL token like DSQL does: signature recomputed with the known secret and
/// compared in constant time, expiry at most `max_expires` and not passed, the action for the
/// role, the signed host and the region.
pub fn verify_dsql_token(
    token: &str,
    p: &DsqlVerifyParams,
) -> Result<DsqlTokenClaims, DsqlTokenError> {
    let token = verify_presigned(
        token,
        &Expect {
            service: SERVICE,
            access_key_id: &p.access_key_id,
            secret_access_key: &p.secret_access_key,
            now: p.now,
            max_expires: p.max_expires,
            max_future_skew: p.max_future_skew,
        },
    )?;
    let action = token.get("Action")?;
    if action != action_for(&p.user) {
        return Err(DsqlTokenError::WrongAction(action.to_string()));
    }
    if !p
        .allowed_hosts
        .iter()
        .any(|h| h.eq_ignore_ascii_case(token.host))
    {
        return Err(DsqlTokenError::WrongHost(token.host.to_string()));
    }
    if token.region != p.region {
        return Err(DsqlTokenError::WrongRegion(token.region));
    }
    Ok(DsqlTokenClaims {
        host: token.host.to_string(),
        action: action.to_string(),
        has_session_token: token.has_session_token(),
        region: token.region,
        access_key_id: token.access_key_id,
        signed_at: token.signed_at,
        expires_in: token.expires_in,
    })
}

impl From<PresignError> for DsqlTokenError {
    fn from(error: PresignError) -> Self {
        match error {
            PresignError::Malformed(m) => Self::Malformed(m),
            PresignError::WrongService => Self::WrongService,
            PresignError::UnknownAccessKey(k) => Self::UnknownAccessKey(k),
            PresignError::BadSignature => Self::BadSignature,
            PresignError::ExpiresTooLong(e) => Self::ExpiresTooLong(e),
            PresignError::Expired => Self::Expired,
            PresignError::NotYetValid => Self::NotYetValid,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    const HOST: &str = "peccy.dsql.us-east-1.on.aws";
    const T: u64 = 1_724_716_800;

    fn params(action: &str) -> DsqlSignParams {
        DsqlSignParams {
            access_key_id: "akid".into(),
            secret_access_key: "secret".into(),
            session_token: None,
            region: "us-east-1".into(),
            host: HOST.into(),
            action: action.into(),
            time: UNIX_EPOCH + Duration::from_secs(T),
            expires_in: 450,
        }
    }

    fn verify(token: &str, user: &str, now: u64) -> Result<DsqlTokenClaims, DsqlTokenError> {
        verify_dsql_token(
            token,
            &DsqlVerifyParams {
                access_key_id: "akid".into(),
                secret_access_key: "secret".into(),
                region: "us-east-1".into(),
                user: user.into(),
                allowed_hosts: vec![HOST.into()],
                now: UNIX_EPOCH + Duration::from_secs(now),
                max_expires: MAX_EXPIRES,
                max_future_skew: 900,
            },
        )
    }

    #[test]
    fn the_sdk_test_vectors_sign_and_verify() {
        let admin = sign_dsql_token(&params("DbConnectAdmin"));
        assert!(admin.ends_with(
            "X-Amz-Signature=267cf8d04d84444f7a62d5bdb40c44bfc6cb13dd6c64fa7f772df6bbaa90fff1"
        ));
        assert_eq!(
            verify(&admin, "admin", T + 10).unwrap().action,
            "DbConnectAdmin"
        );
        let app = sign_dsql_token(&params("DbConnect"));
        assert!(verify(&app, "app", T + 450).is_ok());
        let with_session = sign_dsql_token(&DsqlSignParams {
            session_token: Some("a+b/c=".into()),
            ..params("DbConnect")
        });
        assert!(verify(&with_session, "app", T).unwrap().has_session_token);
    }

    #[test]
    fn bad_tokens_are_refused_with_a_reason() {
        let app = sign_dsql_token(&params("DbConnect"));
        let admin = sign_dsql_token(&params("DbConnectAdmin"));
        let other = |f: fn(&mut DsqlSignParams)| {
            let mut p = params("DbConnect");
            f(&mut p);
            sign_dsql_token(&p)
        };
        let cases: Vec<(String, &str, u64, &str)> = vec![
            (app.clone(), "admin", T, "action"),
            (admin, "app", T, "action"),
            (app.clone(), "app", T + 451, "expired"),
            (app.clone(), "app", T - 1000, "not_yet_valid"),
            (
                app.replace("Action=DbConnect", "Action=DbConnectAdmin"),
                "admin",
                T,
                "signature",
            ),
            (
                other(|p| p.host = "other.dsql.us-east-1.on.aws".into()),
                "app",
                T,
                "host",
            ),
            (other(|p| p.host = format!("{HOST}:5432")), "app", T, "host"),
            (other(|p| p.region = "us-west-2".into()), "app", T, "region"),
            (
                other(|p| p.secret_access_key = "wrong".into()),
                "app",
                T,
                "signature",
            ),
            (
                other(|p| p.access_key_id = "AKIAOTHER".into()),
                "app",
                T,
                "access_key",
            ),
            (
                other(|p| p.expires_in = MAX_EXPIRES + 1),
                "app",
                T,
                "expires_too_long",
            ),
            (
                app.replace("%2Fdsql%2F", "%2Frds-db%2F"),
                "app",
                T,
                "service",
            ),
            ("garbage".into(), "app", T, "malformed"),
        ];
        for (token, user, now, label) in cases {
            let e = verify(&token, user, now).unwrap_err();
            assert_eq!(e.label(), label, "{token} as {user}: {e}");
        }
    }
}
