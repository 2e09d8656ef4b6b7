//! The migration identity: the role, Azure identity or password migration engines log in
//! with (`PGAUTH_MIGRATION_USER`, `PGAUTH_MIGRATION_AZURE_CLIENT_ID`,
//! `PGAUTH_MIGRATION_PASSWORD`), so the service can run as a limited role and migrations as
//! an owner role from one environment.

use super::{AuthMethod, Settings, SslMode};
use crate::azure::{AzureCredentialKind, UserAssigned};
use crate::error::ConfigError;
use crate::{Env, Secret};

/// The variable holding the migration role's password (a secret: see
/// [`SECRET_VARS`](crate::env::SECRET_VARS)).
pub(crate) const MIGRATION_PASSWORD_VAR: &str = "PGAUTH_MIGRATION_PASSWORD";

impl Settings {
    /// The settings a migration engine logs in with: the user becomes
    /// [`migration_user`](Settings::migration_user) and, on Azure, tokens come from the
    /// identity of [`migration_azure_client_id`](Settings::migration_azure_client_id) (the
    /// user then comes from its token unless a migration user is set). With a
    /// [migration password](Settings::get_migration_password) (and a migration user, which
    /// validation requires with it) migrations log in with the password method, that password
    /// and the migration user, as libpq would with `PGUSER` and `PGPASSWORD`; the sslmode
    /// stays the service's (a token method's default `verify-full` is kept, so the password
    /// gets the same TLS as the tokens). Unchanged when none is set. The fallback password
    /// and role are dropped when the login changes: they belong to the service. Applying it
    /// twice changes nothing more.
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
        // Validation refuses a password without a user, or with a client id.
        if let (Some(password), Some(user), None) =
            (self.get_migration_password(), &user, &client_id)
        {
            return self.password_migrations(s, user, password);
        }
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

    /// The password migrations log in with (`PGAUTH_MIGRATION_PASSWORD`), read from the
    /// settings' environment ([`Settings::get_env`]): settings from
    /// [`Settings::from_env`] have it, settings built in code get it with
    /// [`Settings::env`]. Never shown by `Debug`.
    #[must_use]
    pub fn get_migration_password(&self) -> Option<Secret> {
        self.env.secret(MIGRATION_PASSWORD_VAR)
    }

    /// Whether migrations log in otherwise than the service: a migration user, Azure
    /// identity or password is set (see [`Settings::for_migrations`]).
    #[must_use]
    pub fn has_migration_identity(&self) -> bool {
        self.migration_user.is_some()
            || self.migration_azure_client_id.is_some()
            || self.env.is_set(MIGRATION_PASSWORD_VAR)
    }

    /// The migration settings with the password method: `user` and `password`, the
    /// service's sslmode kept. The environment is dropped with the cloud login it served,
    /// which also makes a second [`Settings::for_migrations`] change nothing.
    fn password_migrations(&self, mut s: Settings, user: &str, password: Secret) -> Settings {
        if s.ssl_mode.is_none() && !matches!(self.resolved_method(), Ok(AuthMethod::Password)) {
            // A token method's default: the password crosses the network as tokens would.
            s.ssl_mode = Some(SslMode::VerifyFull);
        }
        s.method = AuthMethod::Password;
        s.password = Some(password);
        s.user = Some(user.to_string());
        s.env = Env::default();
        s
    }

    /// Checks the migration settings against the method in force, naming the setting to
    /// change; then the settings migrations log in with as a whole.
    pub(super) fn check_migration_identity(&self, method: AuthMethod) -> Result<(), ConfigError> {
        let password = self.get_migration_password().is_some();
        if password {
            if self.migration_user.is_none() {
                return Err(ConfigError::new(
                    MIGRATION_PASSWORD_VAR,
                    "is set but PGAUTH_MIGRATION_USER is not; set PGAUTH_MIGRATION_USER to the role the password belongs to, or unset PGAUTH_MIGRATION_PASSWORD",
                ));
            }
            if self.migration_azure_client_id.is_some() {
                return Err(ConfigError::new(
                    MIGRATION_PASSWORD_VAR,
                    "is set together with PGAUTH_MIGRATION_AZURE_CLIENT_ID; migrations log in with a password or with that identity's tokens: unset one of them",
                ));
            }
        }
        if let Some(user) = &self.migration_user {
            if user.is_empty() || user.contains('\0') {
                return Err(ConfigError::new(
                    "PGAUTH_MIGRATION_USER",
                    "is empty or contains a NUL byte",
                ));
            }
            // With a migration password no token is signed for the user.
            if method == AuthMethod::Aws && !password {
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
