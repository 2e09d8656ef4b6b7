//! The access tokens the emulator issued, and the check Cloud SQL and AlloyDB apply to one
//! presented as a password.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::principals::{SERVICE_ACCOUNT_SUFFIX, username_for};
use crate::util::random_alnum;

/// The scope every Google database accepts besides its own login scope.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// Which Google database checks the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GcpProduct {
    /// Cloud SQL for PostgreSQL.
    CloudSql,
    /// AlloyDB for PostgreSQL.
    AlloyDb,
}

impl GcpProduct {
    /// `cloudsql` or `alloydb`, as `PGAUTH_GCP_PRODUCT` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CloudSql => "cloudsql",
            Self::AlloyDb => "alloydb",
        }
    }

    /// The product's login scope.
    pub fn login_scope(self) -> &'static str {
        match self {
            Self::CloudSql => "https://www.googleapis.com/auth/sqlservice.login",
            Self::AlloyDb => "https://www.googleapis.com/auth/alloydb.login",
        }
    }

    /// Whether a token with `scope` may log in: the login scope or `cloud-platform`.
    pub fn accepts_scope(self, scope: &str) -> bool {
        scope == self.login_scope() || scope == CLOUD_PLATFORM_SCOPE
    }
}

/// Whose token it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrincipalKind {
    /// A service account (metadata server or key file).
    ServiceAccount,
    /// A user (refresh token).
    User,
    /// A federated workload (a token from the Security Token Service); its "email" is the
    /// `principal://` identifier, which names no database user.
    Federated,
}

/// The principal a token was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcpPrincipal {
    /// The principal's email.
    pub email: String,
    /// Service account or user.
    pub kind: PrincipalKind,
    /// The scopes the token carries.
    pub scopes: Vec<String>,
}

impl GcpPrincipal {
    /// The database user name the token logs in as.
    pub fn username(&self) -> String {
        username_for(&self.email)
    }
}

/// Why a Google database refused a token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GcpRejection {
    /// The role name carries `.gserviceaccount.com`: no such IAM user, so the server tries
    /// a password and fails.
    SuffixInRole,
    /// Not a token this emulator issued (malformed, revoked, or from elsewhere).
    UnknownToken,
    /// The token has expired.
    Expired,
    /// The token lacks the product's login scope (and `cloud-platform`).
    Scope {
        /// The scopes the token has.
        scopes: Vec<String>,
    },
    /// The token belongs to another principal than the role's.
    RoleMismatch {
        /// The principal's database user name.
        token_user: String,
    },
}

impl GcpRejection {
    /// A short label for counters and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::SuffixInRole => "gcp_suffix",
            Self::UnknownToken => "gcp_unknown_token",
            Self::Expired => "gcp_expired",
            Self::Scope { .. } => "gcp_scope",
            Self::RoleMismatch { .. } => "gcp_role",
        }
    }

    /// The SQLSTATE: `28P01` for the password failure, `28000` for the IAM failures (the
    /// real code is unconfirmed; both are refused-login codes).
    pub fn code(&self) -> &'static str {
        match self {
            Self::SuffixInRole => "28P01",
            _ => "28000",
        }
    }

    /// The FATAL message text the real server sends for `role`: one text per product and
    /// kind of role, whatever the reason (the reason is only in the server's log).
    pub fn message(&self, product: GcpProduct, role: &str) -> String {
        if *self == Self::SuffixInRole {
            return format!("password authentication failed for user \"{role}\"");
        }
        match product {
            GcpProduct::CloudSql if is_service_account_role(role) => {
                format!("Cloud SQL IAM service account authentication failed for user \"{role}\"")
            }
            GcpProduct::CloudSql => {
                format!("Cloud SQL IAM user authentication failed for user \"{role}\"")
            }
            GcpProduct::AlloyDb => {
                format!("AlloyDB IAM user authentication failed for user \"{role}\"")
            }
        }
    }

    /// What the server's log would say, distinct per reason.
    pub fn detail(&self) -> String {
        match self {
            Self::SuffixInRole => {
                "the role name ends in .gserviceaccount.com; iam service account users are named without it"
                    .into()
            }
            Self::UnknownToken => "Invalid Credentials: the access token is not valid".into(),
            Self::Expired => "Invalid Credentials: the access token has expired".into(),
            Self::Scope { scopes } => format!(
                "Request had insufficient authentication scopes (token scopes: {})",
                scopes.join(" ")
            ),
            Self::RoleMismatch { token_user } => {
                format!("the access token belongs to {token_user}, not to this role")
            }
        }
    }
}

/// Whether a role name is a service account's (`name@project.iam`).
fn is_service_account_role(role: &str) -> bool {
    role.ends_with(".iam") || role.contains(SERVICE_ACCOUNT_SUFFIX)
}

/// What the emulator remembers of a token it issued.
#[derive(Debug, Clone)]
struct Issued {
    principal: GcpPrincipal,
    expires_at: SystemTime,
}

/// The tokens issued so far.
#[derive(Debug, Default)]
pub(crate) struct TokenStore {
    issued: Mutex<HashMap<String, Issued>>,
}

impl TokenStore {
    /// Issues an opaque token (`ya29.` and random characters) for `principal`.
    pub(crate) fn issue(
        &self,
        principal: GcpPrincipal,
        now: SystemTime,
        lifetime: Duration,
    ) -> String {
        let token = format!("ya29.emu-{}", random_alnum(120));
        let issued = Issued {
            principal,
            expires_at: now + lifetime,
        };
        self.issued.lock().unwrap().insert(token.clone(), issued);
        token
    }

    /// The principal of an issued token that is unexpired at `now`.
    pub(crate) fn lookup(&self, token: &str, now: SystemTime) -> Option<GcpPrincipal> {
        let issued = self.issued.lock().unwrap().get(token).cloned()?;
        (now < issued.expires_at).then_some(issued.principal)
    }

    /// Checks `token` presented as the password of `role` on `product` at `now`.
    pub(crate) fn check(
        &self,
        token: &str,
        role: &str,
        product: GcpProduct,
        now: SystemTime,
    ) -> Result<GcpPrincipal, GcpRejection> {
        if role.contains(SERVICE_ACCOUNT_SUFFIX) {
            return Err(GcpRejection::SuffixInRole);
        }
        let issued = self
            .issued
            .lock()
            .unwrap()
            .get(token)
            .cloned()
            .ok_or(GcpRejection::UnknownToken)?;
        if now >= issued.expires_at {
            return Err(GcpRejection::Expired);
        }
        if !issued
            .principal
            .scopes
            .iter()
            .any(|s| product.accepts_scope(s))
        {
            return Err(GcpRejection::Scope {
                scopes: issued.principal.scopes.clone(),
            });
        }
        let token_user = issued.principal.username();
        if token_user != role {
            return Err(GcpRejection::RoleMismatch { token_user });
        }
        Ok(issued.principal)
    }
}
