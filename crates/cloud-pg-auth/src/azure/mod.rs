//! Microsoft Entra tokens for Azure Database for PostgreSQL.
//!
//! This module is always compiled: clouds, options, the `auto` chain's choice, JWT claims and
//! user name checks are plain data. The token source itself, [`AzureSource`], needs the
//! `azure` feature (azure_identity 1.0 and azure_core 1.1).
//!
//! # Credentials
//!
//! `PGAUTH_AZURE_CREDENTIAL` picks one:
//!
//! | value | what it uses |
//! |---|---|
//! | `managed-identity` | the App Service / Container Apps endpoint (`IDENTITY_ENDPOINT`, `IDENTITY_HEADER`), else the VM's IMDS; user-assigned by `AZURE_CLIENT_ID`, `PGAUTH_AZURE_MI_OBJECT_ID` or `PGAUTH_AZURE_MI_RESOURCE_ID` |
//! | `workload-identity` | AKS workload identity: `AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`, `AZURE_TENANT_ID`, `AZURE_AUTHORITY_HOST` |
//! | `client-secret` | a service principal: `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET` |
//! | `cli` | the Azure CLI's login (`az login`), for local development |
//! | `auto` (default) | the first of the above that is configured, in a fixed order, see below |
//!
//! # The `auto` chain
//!
//! Deterministic and instant: it looks at settings only and never probes a network endpoint.
//!
//! 1. `AZURE_FEDERATED_TOKEN_FILE` set: workload identity.
//! 2. `IDENTITY_ENDPOINT` set, or `PGAUTH_AZURE_MANAGED_IDENTITY=1`: managed identity. The VM
//!    metadata endpoint (IMDS) is used only with that explicit opt-in, so a laptop never waits
//!    on an address that does not answer.
//! 3. `AZURE_CLIENT_SECRET` set: service principal with a client secret.
//! 4. `az` found on `PATH`: the Azure CLI.
//!
//! When none applies, start-up fails with a message that says what each step found.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::Secret;
use crate::env::Env;
use crate::error::ConfigError;
use crate::token::TokenDetails;

mod audience;
mod choice;
mod jwt;
#[cfg(any(feature = "azure", test))]
pub(crate) use choice::{Choice, ManagedIdentityEndpoint};
pub use jwt::JwtClaims;

#[cfg(feature = "azure")]
mod federated;
#[cfg(feature = "azure")]
mod http;
#[cfg(feature = "azure")]
mod limits;
#[cfg(feature = "azure")]
mod managed_identity;
#[cfg(feature = "azure")]
mod source;
#[cfg(feature = "azure")]
#[cfg_attr(docsrs, doc(cfg(feature = "azure")))]
pub use source::AzureSource;

/// An Azure cloud: decides the token scope, the Entra authority and the server host suffix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AzureCloud {
    /// Azure public cloud (`PGAUTH_AZURE_CLOUD=public`, the default).
    #[default]
    Public,
    /// Azure US Government (`PGAUTH_AZURE_CLOUD=usgov`).
    UsGov,
    /// Azure operated by 21Vianet in China (`PGAUTH_AZURE_CLOUD=china`).
    China,
}

impl AzureCloud {
    /// Every cloud, for lookups.
    pub const ALL: [AzureCloud; 3] = [Self::Public, Self::UsGov, Self::China];

    /// The OAuth scope of Azure Database for PostgreSQL in this cloud.
    #[must_use]
    pub fn scope(self) -> &'static str {
        match self {
            Self::Public => "https://ossrdbms-aad.database.windows.net/.default",
            Self::UsGov => "https://ossrdbms-aad.database.usgovcloudapi.net/.default",
            Self::China => "https://ossrdbms-aad.database.chinacloudapi.cn/.default",
        }
    }

    /// The token audience (`aud`): the scope without `/.default`.
    #[must_use]
    pub fn audience(self) -> &'static str {
        match self {
            Self::Public => "https://ossrdbms-aad.database.windows.net",
            Self::UsGov => "https://ossrdbms-aad.database.usgovcloudapi.net",
            Self::China => "https://ossrdbms-aad.database.chinacloudapi.cn",
        }
    }

    /// The Entra authority, as an `https` URL (what `AZURE_AUTHORITY_HOST` would hold).
    #[must_use]
    pub fn authority_host(self) -> &'static str {
        match self {
            Self::Public => "https://login.microsoftonline.com",
            Self::UsGov => "https://login.microsoftonline.us",
            Self::China => "https://login.chinacloudapi.cn",
        }
    }

    /// The host name suffix of Azure Database for PostgreSQL servers in this cloud.
    #[must_use]
    pub fn host_suffix(self) -> &'static str {
        match self {
            Self::Public => ".postgres.database.azure.com",
            Self::UsGov => ".postgres.database.usgovcloudapi.net",
            Self::China => ".postgres.database.chinacloudapi.cn",
        }
    }

    /// `public`, `usgov` or `china`, the value of `PGAUTH_AZURE_CLOUD`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::UsGov => "usgov",
            Self::China => "china",
        }
    }

    /// The cloud whose authority host `url` is, if it is a known one.
    fn for_authority(url: &str) -> Option<Self> {
        let host = host_of_url(url)?;
        Self::ALL
            .into_iter()
            .find(|c| host_of_url(c.authority_host()).is_some_and(|a| a.eq_ignore_ascii_case(host)))
    }
}

impl fmt::Display for AzureCloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AzureCloud {
    type Err = ConfigError;

    /// Parses `public`, `usgov` or `china` (case-insensitive; the SDKs' names such as
    /// `AzureUSGovernment` and `AzureChinaCloud` are accepted too).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v = s.trim().to_ascii_lowercase().replace(['-', '_', ' '], "");
        match v.as_str() {
            "public" | "azure" | "azurepublic" | "azurecloud" | "azurepubliccloud" => {
                Ok(Self::Public)
            }
            "usgov" | "usgovernment" | "azureusgovernment" | "azureusgov" | "azuregovernment" => {
                Ok(Self::UsGov)
            }
            "china" | "azurechina" | "azurechinacloud" => Ok(Self::China),
            _ => Err(ConfigError::new(
                "PGAUTH_AZURE_CLOUD",
                format!("unknown azure cloud {s:?}; use public, usgov or china"),
            )),
        }
    }
}

/// The Azure cloud a server host name belongs to, from its suffix; `None` for other hosts.
#[must_use]
pub fn cloud_for_host(host: &str) -> Option<AzureCloud> {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    AzureCloud::ALL.into_iter().find(|c| {
        host.strip_suffix(c.host_suffix())
            .is_some_and(|name| !name.is_empty())
    })
}

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

/// The default time allowed for one token request (HTTP exchange or `az` run).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Settings of the Azure token source. Build with [`AzureOptions::from_env`] or in code with
/// `AzureOptions { .., ..Default::default() }`.
#[derive(Clone)]
pub struct AzureOptions {
    /// The cloud (`PGAUTH_AZURE_CLOUD`): picks the scope and the authority.
    pub cloud: AzureCloud,
    /// The credential kind (`PGAUTH_AZURE_CREDENTIAL`).
    pub credential: AzureCredentialKind,
    /// Spells out the cloud's scope (`PGAUTH_AZURE_SCOPE`). Only the Azure Database for
    /// PostgreSQL audience of the cloud is accepted: any other would put a token for another
    /// service on the wire as a password.
    pub scope: Option<String>,
    /// A user-assigned managed identity. When unset, a managed identity falls back to
    /// `client_id` (as `AZURE_CLIENT_ID` does), then to the system-assigned identity.
    pub managed_identity: Option<UserAssigned>,
    /// The Entra tenant (`AZURE_TENANT_ID`), for workload identity and client secrets.
    pub tenant_id: Option<String>,
    /// The application's client id (`AZURE_CLIENT_ID`).
    pub client_id: Option<String>,
    /// A service principal's client secret (`AZURE_CLIENT_SECRET`).
    pub client_secret: Option<Secret>,
    /// The federated token file of workload identity (`AZURE_FEDERATED_TOKEN_FILE`).
    pub federated_token_file: Option<PathBuf>,
    /// The Entra authority as an `https` URL (`AZURE_AUTHORITY_HOST`); the cloud's by default.
    pub authority_host: Option<String>,
    /// A PEM file of extra certificate authorities trusted for the authority and identity
    /// endpoints (`PGAUTH_AZURE_CA_FILE`), on top of the system's.
    pub ca_file: Option<PathBuf>,
    /// Lets `auto` use the VM metadata endpoint when nothing else is configured
    /// (`PGAUTH_AZURE_MANAGED_IDENTITY=1`).
    pub managed_identity_opt_in: bool,
    /// The App Service / Container Apps identity endpoint (`IDENTITY_ENDPOINT`).
    pub identity_endpoint: Option<String>,
    /// The secret header value that goes with it (`IDENTITY_HEADER`).
    pub identity_header: Option<Secret>,
    /// The search path used to find and run `az` (`PATH`); the process's `PATH` when unset.
    pub cli_search_path: Option<OsString>,
    /// The time allowed for one token request. [`DEFAULT_TIMEOUT`] by default.
    pub timeout: Duration,
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
            client_secret: env.get("AZURE_CLIENT_SECRET").map(Secret::from),
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

/// When `user` looks like a GUID and is the token's client id (`appid`) or object id (`oid`),
/// a warning: Azure Database for PostgreSQL expects the identity's display name as the role.
#[must_use]
pub fn guid_username_warning(user: &str, details: &TokenDetails) -> Option<String> {
    if !looks_like_guid(user) {
        return None;
    }
    if !details.ids.iter().any(|id| id.eq_ignore_ascii_case(user)) {
        return None;
    }
    let hint = match &details.username {
        Some(name) => format!(" (the token names {name:?})"),
        None => String::new(),
    };
    Some(format!(
        "PGUSER {user} is the client or object id of the token's identity, but azure database \
         for postgresql expects the identity's display name as the user name{hint}; set PGUSER \
         to the name the role was created with (pgaadauth_create_principal)"
    ))
}

/// The error to give when no user name was set and none could be derived from the token.
#[must_use]
pub fn username_required_error(details: &TokenDetails) -> ConfigError {
    let who = match details.ids.first() {
        Some(id) => format!(" (client id {id})"),
        None => String::new(),
    };
    ConfigError::new(
        "PGUSER",
        format!(
            "the token names no user for this identity{who}; set PGUSER to the identity's \
             display name in entra (the role name given to pgaadauth_create_principal)"
        ),
    )
}

/// Whether `s` is shaped like `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex digits).
fn looks_like_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The host of an `http(s)://host[:port]/...` URL, without parsing anything else.
fn host_of_url(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}

#[cfg(test)]
mod tests;
