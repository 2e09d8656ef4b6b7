//! The methods, sslmodes and root-certificate sources settings name.

use std::path::PathBuf;
use std::str::FromStr;

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
    /// Decide from the settings: a password → password; an Azure host → azure; an RDS host → aws.
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
            Self::Auto => "auto",
            Self::Custom => "custom",
        }
    }

    /// Whether the method sends a token as the password (so TLS must be verified).
    #[must_use]
    pub fn is_token(self) -> bool {
        matches!(self, Self::Azure | Self::Aws | Self::Custom)
    }
}

impl FromStr for AuthMethod {
    type Err = ConfigError;

    fn from_str(value: &str) -> Result<Self, ConfigError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "password" => Ok(Self::Password),
            "azure" | "entra" => Ok(Self::Azure),
            "aws" | "iam" => Ok(Self::Aws),
            "auto" => Ok(Self::Auto),
            v if v.contains(',') || v.contains('+') || v.contains(' ') => Err(ConfigError::new(
                "PGAUTH_METHOD",
                format!(
                    "{value:?} names more than one method; choose one of password, azure, aws or auto"
                ),
            )),
            _ => Err(ConfigError::new(
                "PGAUTH_METHOD",
                format!("unknown method {value:?}; use password, azure, aws or auto"),
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
