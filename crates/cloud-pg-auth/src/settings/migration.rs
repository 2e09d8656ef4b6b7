//! The migration identity: the role and Azure identity migration engines log in with
//! (`PGAUTH_MIGRATION_USER`, `PGAUTH_MIGRATION_AZURE_CLIENT_ID`), so the service can run as a
//! limited role and migrations as an owner role from one environment.

use super::{AuthMethod, Settings};
use crate::azure::{AzureCredentialKind, UserAssigned};
use crate::error::ConfigError;

impl Settings {
    /// The settings a migration engine logs in with: the user becomes
    /// [`migration_user`](Settings::migration_user) and, on Azure, tokens come from the
    /// identity of [`migration_azure_client_id`](Settings::migration_azure_client_id) (the
    /// user then comes from its token unless a migration user is set). Unchanged when
    /// neither is set. The fallback password and role are dropped when the login changes: they
    /// belong to the service. Applying it twice changes nothing more.
    ///
    /// Every migration engine builds its credential from these, so `MigrationEngine::from_env()`
    /// logs in as the migration role while `PooledEngine::from_env()` logs in as `PGUSER`.
    #[must_use]
    pub fn for_migrations(&self) -> Self {
        let mut s = self.clone();
        let user = s.migration_user.take();
        let client_id = s.migration_azure_client_id.take();
        if user.is_none() && client_id.is_none() {
            return s;
        }
        s.fallback_password = None;
        s.fallback_user = None;
        if let Some(id) = client_id {
            // The service's PGUSER is the service identity's role, not this identity's.
            s.user = None;
            // The client secret belongs to the service's app registration, not this identity.
            s.azure.client_secret = None;
            s.azure.client_id = Some(id.clone());
            s.azure.managed_identity = Some(UserAssigned::ClientId(id));
            // Without workload identity, the client id names a managed identity: use one even
            // where `auto` would pick the CLI or nothing.
            if s.azure.credential == AzureCredentialKind::Auto
                && s.azure.federated_token_file.is_none()
            {
                s.azure.credential = AzureCredentialKind::ManagedIdentity;
            }
        }
        if let Some(user) = user {
            s.user = Some(user);
        }
        s
    }

    /// Checks the migration settings against the method in force, naming the setting to
    /// change; then the settings migrations log in with as a whole.
    pub(super) fn check_migration_identity(&self, method: AuthMethod) -> Result<(), ConfigError> {
        if let Some(user) = &self.migration_user {
            if user.is_empty() || user.contains('\0') {
                return Err(ConfigError::new(
                    "PGAUTH_MIGRATION_USER",
                    "is empty or contains a NUL byte",
                ));
            }
            if method == AuthMethod::Aws {
                crate::aws::validate_username(user)
                    .map_err(|e| ConfigError::new("PGAUTH_MIGRATION_USER", e.message()))?;
            }
        }
        if let Some(id) = &self.migration_azure_client_id {
            if method != AuthMethod::Azure {
                return Err(ConfigError::new(
                    "PGAUTH_MIGRATION_AZURE_CLIENT_ID",
                    format!(
                        "names an azure identity but PGAUTH_METHOD resolves to {}; unset it (use PGAUTH_MIGRATION_USER for another role) or set PGAUTH_METHOD=azure",
                        method.as_str()
                    ),
                ));
            }
            if !crate::azure::is_guid(id) {
                return Err(ConfigError::new(
                    "PGAUTH_MIGRATION_AZURE_CLIENT_ID",
                    format!(
                        "{id:?} is not a client id; use the managed identity's client id, a GUID"
                    ),
                ));
            }
            let credential = self.azure.credential;
            if matches!(
                credential,
                AzureCredentialKind::ClientSecret | AzureCredentialKind::Cli
            ) {
                return Err(ConfigError::new(
                    "PGAUTH_MIGRATION_AZURE_CLIENT_ID",
                    format!(
                        "needs a managed identity or workload identity, but PGAUTH_AZURE_CREDENTIAL={credential} logs in as one identity only; unset PGAUTH_AZURE_CREDENTIAL or set it to managed-identity or workload-identity"
                    ),
                ));
            }
        }
        if self.migration_user.is_some() || self.migration_azure_client_id.is_some() {
            self.for_migrations().validate()?;
        }
        Ok(())
    }
}
