//! The methods, sslmodes and root-certificate sources settings name.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::ConfigError;

/// How the password is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuthMethod {
    /// A static password (`PGPASSWORD` or the URL): the backward-compatible path.
    Password,
    /// A Microsoft Entra access token (Azure Database for PostgreSQL).
    Azure,
    /// An RDS IAM auth token (AWS RDS and Aurora).
    Aws,
    /// An Amazon Aurora DSQL auth token (names `dsql`, `aws-dsql`; docs/dsql.md).
    Dsql,
    /// A Google OAuth 2 access token (Cloud SQL for PostgreSQL and AlloyDB; names `gcp`,
    /// `google`; docs/gcp.md). Never picked by `Auto`: a Google database's host name (often
    /// an IP address) does not say it is one.
    Gcp,
    /// Decide from the settings: a password → password; an Azure host → azure; an RDS host →
    /// aws; an Aurora DSQL endpoint → dsql. Never gcp: set it.
    #[default]
    Auto,
    /// A token source passed in code (a [`CallbackSource`](crate::CallbackSource) or your own
    /// [`TokenSource`](crate::TokenSource)); treated like a token for TLS. Not read from the
    /// environment: engines' `token_source(..)` builders set it when the method is `Auto`.
    Custom,
}

impl AuthMethod {
    /// The name used in settings and status output.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Azure => "azure",
            Self::Aws => "aws",
            Self::Dsql => "dsql",
            Self::Gcp => "gcp",
            Self::Auto => "auto",
            Self::Custom => "custom",
        }
    }

    /// Whether the method sends a token as the password (so TLS must be verified).
    #[must_use]
    pub fn is_token(self) -> bool {
        matches!(
            self,
            Self::Azure | Self::Aws | Self::Dsql | Self::Gcp | Self::Custom
        )
    }

    /// The longest a connection may live on the server, if the service closes connections
    /// itself (Aurora DSQL: 60 minutes). A pool's max lifetime must stay below it.
    #[must_use]
    pub fn server_connection_limit(self) -> Option<Duration> {
        match self {
            Self::Dsql => Some(crate::aws::dsql::CONNECTION_LIMIT),
            _ => None,
        }
    }

    /// Whether the migration engines can run on this method's servers: not on Aurora DSQL,
    /// which has no advisory locks and runs one DDL statement per transaction.
    #[must_use]
    pub fn supports_migrations(self) -> bool {
        !matches!(self, Self::Dsql)
    }
}

impl FromStr for AuthMethod {
    type Err = ConfigError;

    fn from_str(value: &str) -> Result<Self, ConfigError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "password" => Ok(Self::Password),
            "azure" | "entra" => Ok(Self::Azure),
            "aws" | "iam" => Ok(Self::Aws),
            "dsql" | "aws-dsql" => Ok(Self::Dsql),
            "gcp" | "google" => Ok(Self::Gcp),
            "auto" => Ok(Self::Auto),
            v if v.contains(',') || v.contains('+') || v.contains(' ') => Err(ConfigError::new(
                "PGAUTH_METHOD",
                format!(
                    "{value:?} names more than one method; choose one of password, azure, aws, dsql, gcp or auto"
                ),
            )),
            _ => Err(ConfigError::new(
                "PGAUTH_METHOD",
                format!("unknown method {value:?}; use password, azure, aws, dsql, gcp or auto"),
            )),
        }
    }
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it, without certificate checks; plaintext otherwise.
    Prefer,
    /// TLS without certificate checks (for token methods: checked as `verify-full`).
    Require,
    /// TLS, certificate chain checked, host name not checked.
    VerifyCa,
    /// TLS, certificate chain and host name checked.
    VerifyFull,
}

impl SslMode {
    /// The libpq name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// Whether the server certificate's chain is checked.
    #[must_use]
    pub fn verifies(self) -> bool {
        matches!(self, Self::VerifyCa | Self::VerifyFull)
    }
}

impl FromStr for SslMode {
    type Err = ConfigError;

    fn from_str(value: &str) -> Result<Self, ConfigError> {
        match value {
            "disable" => Ok(Self::Disable),
            // libpq's `allow` tries plaintext first; we never prefer plaintext.
            "allow" | "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            _ => Err(ConfigError::new(
                "PGSSLMODE",
                format!(
                    "unknown sslmode {value:?}; use disable, prefer, require, verify-ca or verify-full"
                ),
            )),
        }
    }
}

/// Where the root certificates for `verify-ca`/`verify-full` come from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RootCerts {
    /// The Mozilla roots compiled in (webpki-roots): Azure's servers chain to them.
    #[default]
    Bundled,
    /// The operating system's store (`sslrootcert=system`).
    System,
    /// A PEM file, such as the RDS global bundle or a test CA (`sslrootcert=FILE`).
    File(PathBuf),
}
