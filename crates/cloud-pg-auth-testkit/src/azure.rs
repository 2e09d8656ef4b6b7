//! Microsoft Entra side of the emulator: clouds, the identities of the emulated tenant,
//! RS256 signing keys, token minting and the checks Azure Database for PostgreSQL applies.

mod check;
mod cloud;
mod federated;
mod mint;
mod signing;
mod tenant;

pub(crate) use check::{RoleMapping, check_token};
pub use cloud::Cloud;
pub(crate) use federated::{FEDERATED_AUDIENCE, FederatedClaims};
pub use mint::MintOptions;
pub(crate) use mint::{TokenSpec, mint};
pub(crate) use signing::SigningKey;
pub use tenant::IdentityKind;
pub(crate) use tenant::{Identity, SYSTEM_NAME, Tenant, UAMI_NAME, USER_UPN, WORKLOAD_NAME};

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::check::EntraRejection;
    use super::*;

    #[test]
    fn keys_sign_and_verify() {
        let tenant = Tenant::generate();
        let key = SigningKey::generate("k1".into()).unwrap();
        let other = SigningKey::generate("k1".into()).unwrap();
        assert!(!key.n.is_empty() && key.e == vec![1, 0, 1]);
        let id = tenant.get(IdentityKind::UserAssigned);
        let mapping = RoleMapping {
            object_id: id.object_id.clone(),
            object_type: "service".into(),
        };
        let now = SystemTime::now();
        let (t, _) = mint(
            &tenant,
            Cloud::Public,
            &key,
            &TokenSpec {
                identity: id,
                audience: Cloud::Public.audience(),
                issued_at: now,
                not_before: now,
                lifetime: Duration::from_secs(60),
                tenant_override: None,
                oid_override: None,
            },
        )
        .unwrap();
        check_token(&t, &[&key], &tenant.tenant_id, Cloud::Public, 0, &mapping).unwrap();
        assert_eq!(
            check_token(&t, &[&other], &tenant.tenant_id, Cloud::Public, 0, &mapping),
            Err(EntraRejection::Signature)
        );
        assert_eq!(
            check_token(&t, &[&key], &tenant.tenant_id, Cloud::UsGov, 0, &mapping),
            Err(EntraRejection::Audience)
        );
    }
}
