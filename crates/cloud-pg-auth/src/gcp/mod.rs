//! OAuth 2 access tokens for Google Cloud SQL for PostgreSQL and AlloyDB IAM logins.
//!
//! The password of an IAM database user is an OAuth 2 access token of the Google principal,
//! asked for the product's login scope. Tokens are opaque (`ya29.`), not JWTs: their expiry
//! is the token endpoint's `expires_in`.
//!
//! # Credentials
//!
//! Application Default Credentials, in their usual order, without probing the network:
//!
//! 1. `GOOGLE_APPLICATION_CREDENTIALS`: a service account key file (`service_account`),
//!    user credentials (`authorized_user`), workload identity federation
//!    (`external_account`), or service account impersonation
//!    (`impersonated_service_account`).
//! 2. gcloud's file, `application_default_credentials.json` in `$CLOUDSDK_CONFIG`, else
//!    `~/.config/gcloud/` (`%APPDATA%\gcloud\` on Windows), when it exists
//!    (`gcloud auth application-default login` writes it).
//! 3. The metadata server (Compute Engine, GKE workload identity, Cloud Run), at
//!    `metadata.google.internal` or `GCE_METADATA_HOST`.
//!
//! Workload identity federation reads the subject token from a file or a URL (read again on
//! every fetch), exchanges it at Google's Security Token Service, and impersonates the
//! service account of `service_account_impersonation_url` when set; `executable` and AWS
//! credential sources are refused. Impersonation gets the source credentials' token, then
//! the service account's from IAM's `generateAccessToken`. Either way the database user name
//! is the impersonated service account's.
//!
//! Written on the core's HTTP stack (reqwest and rustls with aws-lc-rs, as for `azure`)
//! rather than on a Google auth crate: `docs/gcp.md`, "Why no Google auth crate", has the
//! figures.
//!
//! The options, the product, key files, JWT assertions and user names are plain data; the
//! token source itself, [`GcpSource`], needs the `gcp` feature.

// Compiled without the feature too, so that settings can hold `GcpOptions`; everything that
// needs reqwest is gated here. Without the feature the signing code has no caller.
#![cfg_attr(not(feature = "gcp"), allow(dead_code))]

use std::time::Duration;

use crate::error::ConfigError;

mod credentials;
mod external;
mod impersonated;
mod jwt;
mod options;
mod time;
mod username;

pub use credentials::{CredentialsFile, ServiceAccountKey, UserCredentials};
pub use external::{ExternalAccount, GOOGLE_STS_URL, SubjectTokenFormat};
pub use impersonated::{ImpersonatedCredentials, Impersonation, SourceCredentials};
pub use options::{
    CredentialsChoice, DEFAULT_METADATA_HOST, DEFAULT_TIMEOUT, ENV_VARS, GcpOptions,
};
pub use username::{
    MAX_USERNAME_LEN, SERVICE_ACCOUNT_SUFFIX, strip_service_account_suffix, username_from_email,
};

#[cfg(feature = "gcp")]
mod federation;
#[cfg(feature = "gcp")]
mod http;
#[cfg(feature = "gcp")]
mod source;
#[cfg(feature = "gcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "gcp")))]
pub use source::GcpSource;

#[cfg(test)]
mod tests;

/// Google's OAuth 2 token endpoint: the default `token_uri`, and where user credentials
/// (`authorized_user`) are refreshed.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The scope that every Google database accepts as well as its own login scope.
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// How long Google access tokens live at most (`expires_in` is 3599 s in practice).
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The Google database product, which picks the login scope (`PGAUTH_GCP_PRODUCT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GcpProduct {
    /// Cloud SQL for PostgreSQL (`cloudsql`, the default).
    #[default]
    CloudSql,
    /// AlloyDB for PostgreSQL (`alloydb`).
    AlloyDb,
}

impl GcpProduct {
    /// Every product, in the order the docs list them.
    pub const ALL: [GcpProduct; 2] = [GcpProduct::CloudSql, GcpProduct::AlloyDb];

    /// The value of `PGAUTH_GCP_PRODUCT`: `cloudsql` or `alloydb`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CloudSql => "cloudsql",
            Self::AlloyDb => "alloydb",
        }
    }

    /// The product's name in messages: `Cloud SQL` or `AlloyDB`.
    #[must_use]
    pub fn display_name(self) -> &'static str {
        match self {
            Self::CloudSql => "Cloud SQL",
            Self::AlloyDb => "AlloyDB",
        }
    }

    /// The OAuth 2 scope a login token is asked for.
    #[must_use]
    pub fn login_scope(self) -> &'static str {
        match self {
            Self::CloudSql => "https://www.googleapis.com/auth/sqlservice.login",
            Self::AlloyDb => "https://www.googleapis.com/auth/alloydb.login",
        }
    }

    /// Parses a `PGAUTH_GCP_PRODUCT` value (case-insensitive, surrounding blanks ignored;
    /// `cloud-sql` and `cloud_sql` are accepted too).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for `PGAUTH_GCP_PRODUCT` listing the accepted values.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "cloudsql" | "cloud-sql" | "cloud_sql" => Ok(Self::CloudSql),
            "alloydb" => Ok(Self::AlloyDb),
            _ => Err(ConfigError::new(
                "PGAUTH_GCP_PRODUCT",
                format!("{value:?} is not a google database product; use cloudsql or alloydb"),
            )),
        }
    }
}

impl std::str::FromStr for GcpProduct {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}
