//! Which credential the options pick: the `auto` chain (settings and `PATH` only, never the
//! network) and what each credential needs.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use super::{AzureCredentialKind, AzureOptions, UserAssigned};
use crate::Secret;
use crate::error::ConfigError;

impl AzureOptions {
    /// What the `auto` chain (or the explicit kind) picks, checking that it has what it needs.
    /// `az_on_path` finds the `az` program; it is consulted only when the CLI could be picked.
    pub(crate) fn choose(
        &self,
        az_on_path: impl FnOnce() -> Option<PathBuf>,
    ) -> Result<Choice, ConfigError> {
        match self.credential {
            AzureCredentialKind::ManagedIdentity => {
                self.managed_identity_choice("PGAUTH_AZURE_CREDENTIAL")
            }
            AzureCredentialKind::WorkloadIdentity => self.workload_identity_choice(),
            AzureCredentialKind::ClientSecret => self.client_secret_choice(),
            AzureCredentialKind::Cli => az_on_path()
                .map(|program| Choice::Cli { program })
                .ok_or_else(|| {
                    ConfigError::new(
                        "PGAUTH_AZURE_CREDENTIAL",
                        "the azure cli (az) was not found on PATH; install it and run az login, \
                         or choose another credential with PGAUTH_AZURE_CREDENTIAL",
                    )
                }),
            AzureCredentialKind::Auto => self.auto_choice(az_on_path),
        }
    }

    fn auto_choice(
        &self,
        az_on_path: impl FnOnce() -> Option<PathBuf>,
    ) -> Result<Choice, ConfigError> {
        if self.federated_token_file.is_some() {
            return self.workload_identity_choice();
        }
        if self.identity_endpoint.is_some() || self.managed_identity_opt_in {
            return self.managed_identity_choice("IDENTITY_ENDPOINT");
        }
        if self.client_secret.is_some() {
            return self.client_secret_choice();
        }
        if let Some(program) = az_on_path() {
            return Ok(Choice::Cli { program });
        }
        let secret_note = match (&self.tenant_id, &self.client_id) {
            (Some(_), Some(_)) => {
                "AZURE_TENANT_ID and AZURE_CLIENT_ID are set but AZURE_CLIENT_SECRET is not"
            }
            _ => "AZURE_CLIENT_SECRET is not set",
        };
        Err(ConfigError::new(
            "PGAUTH_AZURE_CREDENTIAL",
            format!(
                "no azure credential is configured (auto looked for, in order: \
                 workload identity: AZURE_FEDERATED_TOKEN_FILE is not set; \
                 managed identity: IDENTITY_ENDPOINT is not set and PGAUTH_AZURE_MANAGED_IDENTITY \
                 is not 1; client secret: {secret_note}; azure cli: az was not found on PATH); \
                 on an azure vm set PGAUTH_AZURE_MANAGED_IDENTITY=1, on a laptop install the \
                 azure cli and run az login, or set PGAUTH_AZURE_CREDENTIAL to the credential \
                 you mean"
            ),
        ))
    }

    fn managed_identity_choice(&self, setting: &str) -> Result<Choice, ConfigError> {
        let user_assigned = self
            .managed_identity
            .clone()
            .or_else(|| self.client_id.clone().map(UserAssigned::ClientId));
        let endpoint = match (&self.identity_endpoint, &self.identity_header) {
            (Some(url), Some(header)) => ManagedIdentityEndpoint::AppService {
                url: url.clone(),
                header: header.clone(),
            },
            (Some(_), None) => {
                let setting = if setting == "IDENTITY_ENDPOINT" {
                    "IDENTITY_HEADER"
                } else {
                    setting
                };
                return Err(ConfigError::new(
                    setting,
                    "IDENTITY_ENDPOINT is set but IDENTITY_HEADER is not: that is an azure arc \
                     or service fabric managed identity, which is not supported; set \
                     IDENTITY_HEADER (app service, container apps) or unset IDENTITY_ENDPOINT",
                ));
            }
            (None, _) => ManagedIdentityEndpoint::Imds,
        };
        Ok(Choice::ManagedIdentity {
            endpoint,
            user_assigned,
        })
    }

    fn workload_identity_choice(&self) -> Result<Choice, ConfigError> {
        let missing = |name: &str| {
            ConfigError::new(
                name,
                format!(
                    "workload identity needs AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID and \
                     AZURE_TENANT_ID; {name} is not set (check the pod's azure.workload.identity \
                     labels and service account)"
                ),
            )
        };
        Ok(Choice::WorkloadIdentity {
            token_file: self
                .federated_token_file
                .clone()
                .ok_or_else(|| missing("AZURE_FEDERATED_TOKEN_FILE"))?,
            client_id: self
                .client_id
                .clone()
                .ok_or_else(|| missing("AZURE_CLIENT_ID"))?,
            tenant_id: self
                .tenant_id
                .clone()
                .ok_or_else(|| missing("AZURE_TENANT_ID"))?,
        })
    }

    fn client_secret_choice(&self) -> Result<Choice, ConfigError> {
        let missing = |name: &str| {
            ConfigError::new(
                name,
                format!(
                    "a client secret credential needs AZURE_TENANT_ID, AZURE_CLIENT_ID and \
                     AZURE_CLIENT_SECRET; {name} is not set"
                ),
            )
        };
        Ok(Choice::ClientSecret {
            tenant_id: self
                .tenant_id
                .clone()
                .ok_or_else(|| missing("AZURE_TENANT_ID"))?,
            client_id: self
                .client_id
                .clone()
                .ok_or_else(|| missing("AZURE_CLIENT_ID"))?,
            secret: self
                .client_secret
                .clone()
                .ok_or_else(|| missing("AZURE_CLIENT_SECRET"))?,
        })
    }

    /// Finds `az` on `cli_search_path` (or the process `PATH`).
    pub(crate) fn find_az(&self) -> Option<PathBuf> {
        let path = self
            .cli_search_path
            .clone()
            .or_else(|| std::env::var_os("PATH"))?;
        find_program(&path, "az")
    }
}

/// Where a managed identity asks for tokens.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum ManagedIdentityEndpoint {
    /// App Service / Container Apps: `IDENTITY_ENDPOINT` with the `X-IDENTITY-HEADER` secret.
    AppService { url: String, header: Secret },
    /// The VM's instance metadata service.
    Imds,
}

impl fmt::Debug for ManagedIdentityEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AppService { url, .. } => f
                .debug_struct("AppService")
                .field("url", url)
                .finish_non_exhaustive(),
            Self::Imds => f.write_str("Imds"),
        }
    }
}

/// The credential a source will use, resolved from [`AzureOptions`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Choice {
    ManagedIdentity {
        endpoint: ManagedIdentityEndpoint,
        user_assigned: Option<UserAssigned>,
    },
    WorkloadIdentity {
        token_file: PathBuf,
        client_id: String,
        tenant_id: String,
    },
    ClientSecret {
        tenant_id: String,
        client_id: String,
        secret: Secret,
    },
    Cli {
        program: PathBuf,
    },
}

impl Choice {
    /// The kind picked.
    pub(crate) fn kind(&self) -> AzureCredentialKind {
        match self {
            Self::ManagedIdentity { .. } => AzureCredentialKind::ManagedIdentity,
            Self::WorkloadIdentity { .. } => AzureCredentialKind::WorkloadIdentity,
            Self::ClientSecret { .. } => AzureCredentialKind::ClientSecret,
            Self::Cli { .. } => AzureCredentialKind::Cli,
        }
    }
}
/// Finds an executable `name` in a `PATH`-style list of directories.
fn find_program(path: &std::ffi::OsStr, name: &str) -> Option<PathBuf> {
    let names: BTreeSet<String> = if cfg!(windows) {
        [
            format!("{name}.cmd"),
            format!("{name}.exe"),
            name.to_string(),
        ]
        .into()
    } else {
        [name.to_string()].into()
    };
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}
