//! The emulated tenant and its identities.

use serde::{Deserialize, Serialize};

use crate::util::uuid;

/// The identities of the emulated tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IdentityKind {
    /// The user-assigned managed identity (`AZURE_CLIENT_ID`); maps to `azure_role()`.
    #[default]
    UserAssigned,
    /// The host's system-assigned managed identity (the default of the managed-identity
    /// endpoints); maps to `azure_system_role()`.
    SystemAssigned,
    /// The app registration used with workload identity and client secrets; maps to
    /// `azure_workload_role()`.
    Workload,
    /// A user (`alice@contoso.example`); maps to `azure_user_role()`.
    User,
    /// A service principal of the tenant that no database role maps to.
    Unmapped,
}

/// The object type of a principal, as `pgaadauth_create_principal_with_oid` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrincipalType {
    User,
    Service,
}

impl PrincipalType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PrincipalType::User => "user",
            PrincipalType::Service => "service",
        }
    }
}

/// One identity of the emulated tenant.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub kind: IdentityKind,
    /// Display name (service principals) or UPN (users): the PostgreSQL role name.
    pub name: String,
    /// `appid`: client id of the identity, or of the client app for a user.
    pub client_id: String,
    /// `oid`/`sub`: object (principal) id.
    pub object_id: String,
    /// `xms_mirid` of managed identities.
    pub resource_id: Option<String>,
    pub principal_type: PrincipalType,
}

/// The emulated tenant: ids and identities.
#[derive(Debug, Clone)]
pub(crate) struct Tenant {
    pub tenant_id: String,
    pub identities: Vec<Identity>,
}

/// Well-known app id of the Azure CLI, the `appid` of user tokens from `az`.
const AZURE_CLI_APP_ID: &str = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";

pub(crate) const UAMI_NAME: &str = "pgauth-uami";
pub(crate) const SYSTEM_NAME: &str = "pgauth-webapp";
pub(crate) const WORKLOAD_NAME: &str = "pgauth-workload";
pub(crate) const USER_UPN: &str = "alice@contoso.example";
pub(crate) const UNMAPPED_NAME: &str = "pgauth-unmapped";

impl Tenant {
    pub(crate) fn generate() -> Tenant {
        let subscription_id = uuid();
        let resource_group = "pgauth-emulator-rg".to_string();
        let uami_id = format!(
            "/subscriptions/{subscription_id}/resourcegroups/{resource_group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{UAMI_NAME}"
        );
        let site_id = format!(
            "/subscriptions/{subscription_id}/resourcegroups/{resource_group}/providers/Microsoft.Web/sites/{SYSTEM_NAME}"
        );
        let ident = |kind, name: &str, client_id: String, resource_id, principal_type| Identity {
            kind,
            name: name.to_string(),
            client_id,
            object_id: uuid(),
            resource_id,
            principal_type,
        };
        Tenant {
            tenant_id: uuid(),
            identities: vec![
                ident(
                    IdentityKind::UserAssigned,
                    UAMI_NAME,
                    uuid(),
                    Some(uami_id),
                    PrincipalType::Service,
                ),
                ident(
                    IdentityKind::SystemAssigned,
                    SYSTEM_NAME,
                    uuid(),
                    Some(site_id),
                    PrincipalType::Service,
                ),
                ident(
                    IdentityKind::Workload,
                    WORKLOAD_NAME,
                    uuid(),
                    None,
                    PrincipalType::Service,
                ),
                ident(
                    IdentityKind::User,
                    USER_UPN,
                    AZURE_CLI_APP_ID.to_string(),
                    None,
                    PrincipalType::User,
                ),
                ident(
                    IdentityKind::Unmapped,
                    UNMAPPED_NAME,
                    uuid(),
                    None,
                    PrincipalType::Service,
                ),
            ],
        }
    }

    pub(crate) fn get(&self, kind: IdentityKind) -> &Identity {
        self.identities
            .iter()
            .find(|i| i.kind == kind)
            .expect("every identity kind exists in the tenant")
    }

    /// Managed identities selectable on the managed-identity endpoints.
    pub(crate) fn managed_identities(&self) -> impl Iterator<Item = &Identity> {
        self.identities.iter().filter(|i| {
            matches!(
                i.kind,
                IdentityKind::UserAssigned | IdentityKind::SystemAssigned
            )
        })
    }
}
