//! Which credential asks Entra for tokens: the kind, and which user-assigned managed identity.

use std::fmt;
use std::str::FromStr;

use crate::error::ConfigError;

/// Which kind of credential asks Entra for tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AzureCredentialKind {
    /// The first configured credential, in the documented order (see the module docs).
    #[default]
    Auto,
    /// A managed identity: App Service / Container Apps endpoint or the VM metadata endpoint.
    ManagedIdentity,
    /// AKS workload identity: a federated token file exchanged at Entra.
    WorkloadIdentity,
    /// A service principal with a client secret.
    ClientSecret,
    /// The Azure CLI (`az login`), for local development.
    Cli,
}

impl AzureCredentialKind {
    /// The value of `PGAUTH_AZURE_CREDENTIAL`: `auto`, `managed-identity`, `workload-identity`,
    /// `client-secret` or `cli`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::ManagedIdentity => "managed-identity",
            Self::WorkloadIdentity => "workload-identity",
            Self::ClientSecret => "client-secret",
            Self::Cli => "cli",
        }
    }
}

impl fmt::Display for AzureCredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AzureCredentialKind {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v = s.trim().to_ascii_lowercase().replace('_', "-");
        match v.as_str() {
            "auto" | "default" => Ok(Self::Auto),
            "managed-identity" | "managedidentity" | "msi" | "mi" => Ok(Self::ManagedIdentity),
            "workload-identity" | "workloadidentity" => Ok(Self::WorkloadIdentity),
            "client-secret" | "clientsecret" | "service-principal" => Ok(Self::ClientSecret),
            "cli" | "azure-cli" | "az" => Ok(Self::Cli),
            _ => Err(ConfigError::new(
                "PGAUTH_AZURE_CREDENTIAL",
                format!(
                    "unknown azure credential {s:?}; use auto, managed-identity, \
                     workload-identity, client-secret or cli"
                ),
            )),
        }
    }
}

/// Which user-assigned managed identity to use. Without one, the system-assigned identity.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserAssigned {
    /// By client (application) id: `AZURE_CLIENT_ID`.
    ClientId(String),
    /// By object (principal) id: `PGAUTH_AZURE_MI_OBJECT_ID`.
    ObjectId(String),
    /// By Azure resource id: `PGAUTH_AZURE_MI_RESOURCE_ID`.
    ResourceId(String),
}

impl UserAssigned {
    /// A label for status output: `client id <id>` and so on.
    #[must_use]
    pub fn label(&self) -> String {
        match self {
            Self::ClientId(id) => format!("client id {id}"),
            Self::ObjectId(id) => format!("object id {id}"),
            Self::ResourceId(id) => format!("resource id {id}"),
        }
    }
}
