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

mod audience;
mod choice;
mod cloud;
mod credential;
mod jwt;
mod options;
mod username;

#[cfg(any(feature = "azure", test))]
pub(crate) use choice::{Choice, ManagedIdentityEndpoint};
pub use cloud::{AzureCloud, cloud_for_host};
pub use credential::{AzureCredentialKind, UserAssigned};
pub use jwt::JwtClaims;
pub use options::{AzureOptions, DEFAULT_TIMEOUT, ENV_VARS};
pub use username::{guid_username_warning, is_guid, username_required_error};

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
/// The azure_core this crate is built with: a caller's `TokenCredential` given to
/// [`AzureSource::for_credential`] implements this version's trait.
#[cfg(feature = "azure")]
#[cfg_attr(docsrs, doc(cfg(feature = "azure")))]
pub use azure_core;
#[cfg(feature = "azure")]
#[cfg_attr(docsrs, doc(cfg(feature = "azure")))]
pub use source::AzureSource;

#[cfg(test)]
mod tests;
