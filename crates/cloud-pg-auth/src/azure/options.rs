//! The Azure token source's settings: read from the environment and checked.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::cloud::host_of_url;
use super::{AzureCloud, AzureCredentialKind, UserAssigned, audience, cloud_for_host};
use crate::Secret;
use crate::env::Env;
use crate::error::ConfigError;

/// The default time allowed for one token request (HTTP exchange or `az` run).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Settings of the Azure token source. Build with [`AzureOptions::from_env`] or in code with
/// `AzureOptions::default()` and the builder methods, each named after the setting.
#[derive(Clone)]
pub struct AzureOptions {
    /// The cloud (`PGAUTH_AZURE_CLOUD`): picks the scope and the authority.
    pub(crate) cloud: AzureCloud,
    /// The credential kind (`PGAUTH_AZURE_CREDENTIAL`).
    pub(crate) credential: AzureCredentialKind,
    /// Spells out the cloud's scope (`PGAUTH_AZURE_SCOPE`). Only the Azure Database for
    /// PostgreSQL audience of the cloud is accepted: any other would put a token for another
    /// service on the wire as a password.
    pub(crate) scope: Option<String>,
    /// A user-assigned managed identity. When unset, a managed identity falls back to
    /// `client_id` (as `AZURE_CLIENT_ID` does), then to the system-assigned identity.
    pub(crate) managed_identity: Option<UserAssigned>,
    /// The Entra tenant (`AZURE_TENANT_ID`), for workload identity and client secrets.
    pub(crate) tenant_id: Option<String>,
    /// The application's client id (`AZURE_CLIENT_ID`).
    pub(crate) client_id: Option<String>,
    /// A service principal's client secret (`AZURE_CLIENT_SECRET`).
    pub(crate) client_secret: Option<Secret>,
    /// The federated token file of workload identity (`AZURE_FEDERATED_TOKEN_FILE`).
    pub(crate) federated_token_file: Option<PathBuf>,
    /// The Entra authority as an `https` URL (`AZURE_AUTHORITY_HOST`); the cloud's by default.
    pub(crate) authority_host: Option<String>,
    /// A PEM file of extra certificate authorities trusted for the authority and identity
    /// endpoints (`PGAUTH_AZURE_CA_FILE`), on top of the system's.
    pub(crate) ca_file: Option<PathBuf>,
    /// Lets `auto` use the VM metadata endpoint when nothing else is configured
    /// (`PGAUTH_AZURE_MANAGED_IDENTITY=1`).
    pub(crate) managed_identity_opt_in: bool,
    /// The App Service / Container Apps identity endpoint (`IDENTITY_ENDPOINT`).
    pub(crate) identity_endpoint: Option<String>,
    /// The secret header value that goes with it (`IDENTITY_HEADER`).
    pub(crate) identity_header: Option<Secret>,
    /// The search path used to find and run `az` (`PATH`); the process's `PATH` when unset.
    pub(crate) cli_search_path: Option<OsString>,
    /// The time allowed for one token request. [`DEFAULT_TIMEOUT`] by default.
    pub(crate) timeout: Duration,
}

impl Default for AzureOptions {
    fn default() -> Self {
        Self {
            cloud: AzureCloud::Public,
            credential: AzureCredentialKind::Auto,
            scope: None,
            managed_identity: None,
            tenant_id: None,
            client_id: None,
            client_secret: None,
            federated_token_file: None,
            authority_host: None,
            ca_file: None,
            managed_identity_opt_in: false,
            identity_endpoint: None,
            identity_header: None,
            cli_search_path: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Builder methods: each sets one option and returns the options.
impl AzureOptions {
    /// Sets the cloud (`PGAUTH_AZURE_CLOUD`).
    #[must_use]
    pub fn cloud(mut self, cloud: AzureCloud) -> Self {
        self.cloud = cloud;
        self
    }

    /// Sets the credential kind (`PGAUTH_AZURE_CREDENTIAL`).
    #[must_use]
    pub fn credential(mut self, credential: AzureCredentialKind) -> Self {
        self.credential = credential;
        self
    }

    /// Spells out the scope (`PGAUTH_AZURE_SCOPE`); only the cloud's database audience is
    /// accepted.
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Sets the user-assigned managed identity.
    #[must_use]
    pub fn managed_identity(mut self, identity: UserAssigned) -> Self {
        self.managed_identity = Some(identity);
        self
    }

    /// Sets the Entra tenant (`AZURE_TENANT_ID`).
    #[must_use]
    pub fn tenant_id(mut self, tenant_id: impl Into<String>) -> Self {
        self.tenant_id = Some(tenant_id.into());
        self
    }

    /// Sets the application's client id (`AZURE_CLIENT_ID`).
    #[must_use]
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// Sets a service principal's client secret (`AZURE_CLIENT_SECRET`).
    #[must_use]
    pub fn client_secret(mut self, secret: impl Into<Secret>) -> Self {
        self.client_secret = Some(secret.into());
        self
    }

    /// Sets the federated token file of workload identity (`AZURE_FEDERATED_TOKEN_FILE`).
    #[must_use]
    pub fn federated_token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.federated_token_file = Some(path.into());
        self
    }

    /// Sets the Entra authority, an `https` URL (`AZURE_AUTHORITY_HOST`).
    #[must_use]
    pub fn authority_host(mut self, url: impl Into<String>) -> Self {
        self.authority_host = Some(url.into());
        self
    }

    /// Sets a PEM file of extra certificate authorities for the authority and identity
    /// endpoints (`PGAUTH_AZURE_CA_FILE`).
    #[must_use]
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Lets `auto` use the VM metadata endpoint (`PGAUTH_AZURE_MANAGED_IDENTITY`).
    #[must_use]
    pub fn managed_identity_opt_in(mut self, opt_in: bool) -> Self {
        self.managed_identity_opt_in = opt_in;
        self
    }

    /// Sets the App Service / Container Apps identity endpoint (`IDENTITY_ENDPOINT`).
    #[must_use]
    pub fn identity_endpoint(mut self, url: impl Into<String>) -> Self {
        self.identity_endpoint = Some(url.into());
        self
    }

    /// Sets the secret header value that goes with the identity endpoint (`IDENTITY_HEADER`).
    #[must_use]
    pub fn identity_header(mut self, header: impl Into<Secret>) -> Self {
        self.identity_header = Some(header.into());
        self
    }

    /// Sets the search path used to find and run `az` (`PATH`).
    #[must_use]
    pub fn cli_search_path(mut self, path: impl Into<OsString>) -> Self {
        self.cli_search_path = Some(path.into());
        self
    }

    /// Sets the time allowed for one token request.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The cloud.
    #[must_use]
    pub fn get_cloud(&self) -> AzureCloud {
        self.cloud
    }

    /// The credential kind as set; [`AzureOptions::resolve_credential`] says what `auto`
    /// resolves to.
    #[must_use]
    pub fn get_credential(&self) -> AzureCredentialKind {
        self.credential
    }
}

impl fmt::Debug for AzureOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureOptions")
            .field("cloud", &self.cloud)
            .field("credential", &self.credential)
            .field("scope", &self.scope)
            .field("managed_identity", &self.managed_identity)
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("federated_token_file", &self.federated_token_file)
            .field("authority_host", &self.authority_host)
            .field("ca_file", &self.ca_file)
            .field("managed_identity_opt_in", &self.managed_identity_opt_in)
            .field("identity_endpoint", &self.identity_endpoint)
            .field(
                "identity_header",
                &self.identity_header.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "cli_search_path",
                &self.cli_search_path.as_ref().map(|_| "<set>"),
            )
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Environment variables [`AzureOptions::from_env`] reads.
pub const ENV_VARS: &[&str] = &[
    "PGAUTH_AZURE_CREDENTIAL",
    "PGAUTH_AZURE_CLOUD",
    "PGAUTH_AZURE_SCOPE",
    "PGAUTH_AZURE_MI_OBJECT_ID",
    "PGAUTH_AZURE_MI_RESOURCE_ID",
    "PGAUTH_AZURE_MANAGED_IDENTITY",
    "PGAUTH_AZURE_CA_FILE",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "PATH",
];

impl AzureOptions {
    /// Reads the settings from `env` (see [`ENV_VARS`]) and checks each one.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the variable to fix.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let credential = match env.get("PGAUTH_AZURE_CREDENTIAL") {
            Some(v) => v.parse()?,
            None => AzureCredentialKind::Auto,
        };
        let cloud = match env.get("PGAUTH_AZURE_CLOUD") {
            Some(v) => v.parse()?,
            None => AzureCloud::Public,
        };
        let scope = env.get("PGAUTH_AZURE_SCOPE").map(str::to_string);
        let client_id = env.get("AZURE_CLIENT_ID").map(str::to_string);
        let object_id = env.get("PGAUTH_AZURE_MI_OBJECT_ID").map(str::to_string);
        let resource_id = env.get("PGAUTH_AZURE_MI_RESOURCE_ID").map(str::to_string);
        let managed_identity = match (object_id, resource_id) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "PGAUTH_AZURE_MI_RESOURCE_ID",
                    "set either PGAUTH_AZURE_MI_OBJECT_ID or PGAUTH_AZURE_MI_RESOURCE_ID, not both",
                ));
            }
            (Some(id), None) => Some(UserAssigned::ObjectId(id)),
            (None, Some(id)) => Some(UserAssigned::ResourceId(id)),
            (None, None) if credential == AzureCredentialKind::ManagedIdentity => {
                client_id.clone().map(UserAssigned::ClientId)
            }
            (None, None) => None,
        };
        let managed_identity_opt_in = match env.get("PGAUTH_AZURE_MANAGED_IDENTITY") {
            None => false,
            Some(v) => crate::settings::parse_bool("PGAUTH_AZURE_MANAGED_IDENTITY", v)?,
        };
        let options = Self {
            cloud,
            credential,
            scope,
            managed_identity,
            tenant_id: env.get("AZURE_TENANT_ID").map(str::to_string),
            client_id,
            client_secret: env.secret("AZURE_CLIENT_SECRET"),
            federated_token_file: env.get("AZURE_FEDERATED_TOKEN_FILE").map(PathBuf::from),
            authority_host: env.get("AZURE_AUTHORITY_HOST").map(str::to_string),
            ca_file: env.get("PGAUTH_AZURE_CA_FILE").map(PathBuf::from),
            managed_identity_opt_in,
            identity_endpoint: env.get("IDENTITY_ENDPOINT").map(str::to_string),
            identity_header: env.get("IDENTITY_HEADER").map(Secret::from),
            cli_search_path: env.get("PATH").map(OsString::from),
            timeout: DEFAULT_TIMEOUT,
        };
        options.validate()?;
        Ok(options)
    }

    /// The scope tokens are requested for: the cloud's, spelled `<audience>/.default` also
    /// when `scope` names it as a bare audience (the v2 token endpoint needs the suffix); a
    /// `scope` that is not a database audience is returned as it is, for error messages.
    #[must_use]
    pub fn effective_scope(&self) -> &str {
        match &self.scope {
            Some(scope) => match AzureCloud::for_scope(scope) {
                Some(cloud) => cloud.scope(),
                None => scope,
            },
            None => self.cloud.scope(),
        }
    }

    /// The Entra authority: `authority_host`, else the cloud's.
    #[must_use]
    pub fn effective_authority_host(&self) -> &str {
        self.authority_host
            .as_deref()
            .unwrap_or(self.cloud.authority_host())
            .trim_end_matches('/')
    }

    /// Checks each setting and that scope and authority agree with the cloud.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the variable to fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(scope) = &self.scope {
            audience::check_scope(scope, self.cloud)?;
        }
        if let Some(authority) = &self.authority_host {
            if !authority.starts_with("https://") || host_of_url(authority).is_none() {
                return Err(ConfigError::new(
                    "AZURE_AUTHORITY_HOST",
                    format!(
                        "{authority:?} is not an https url; use one such as {}",
                        self.cloud.authority_host()
                    ),
                ));
            }
            if let Some(other) = AzureCloud::for_authority(authority).filter(|c| *c != self.cloud) {
                return Err(ConfigError::new(
                    "AZURE_AUTHORITY_HOST",
                    format!(
                        "{authority} is the authority of the {other} cloud but the cloud is {}; \
                         set PGAUTH_AZURE_CLOUD={other} or change AZURE_AUTHORITY_HOST",
                        self.cloud
                    ),
                ));
            }
        }
        if let Some(endpoint) = &self.identity_endpoint {
            let ok = (endpoint.starts_with("http://") || endpoint.starts_with("https://"))
                && host_of_url(endpoint).is_some();
            if !ok {
                return Err(ConfigError::new(
                    "IDENTITY_ENDPOINT",
                    format!("{endpoint:?} is not an http url"),
                ));
            }
        }
        if let Some(tenant) = &self.tenant_id {
            let ok = !tenant.is_empty()
                && tenant
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !ok {
                return Err(ConfigError::new(
                    "AZURE_TENANT_ID",
                    format!("{tenant:?} is not a tenant id; use a GUID or a domain name"),
                ));
            }
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::new(
                "timeout",
                "the timeout must be above zero",
            ));
        }
        Ok(())
    }

    /// Checks that the server `host`, when it is an Azure one, belongs to the configured cloud,
    /// and that the scope agrees with the cloud.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] saying which setting to change.
    pub fn check_host(&self, host: &str) -> Result<(), ConfigError> {
        if let Some(host_cloud) = cloud_for_host(host).filter(|c| *c != self.cloud) {
            return Err(ConfigError::new(
                "PGAUTH_AZURE_CLOUD",
                format!(
                    "the server {host} is in the {host_cloud} cloud but the cloud is {}; \
                     set PGAUTH_AZURE_CLOUD={host_cloud}",
                    self.cloud
                ),
            ));
        }
        self.validate()
    }

    /// The credential kind these options resolve to: for `auto`, the first configured step of
    /// the chain. Instant: looks at settings and `PATH` only, never at the network.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when the chosen credential lacks a setting, or, for `auto`, when
    /// nothing is configured (the message says what each step found).
    pub fn resolve_credential(&self) -> Result<AzureCredentialKind, ConfigError> {
        self.validate()?;
        self.choose(|| self.find_az()).map(|choice| choice.kind())
    }
}
