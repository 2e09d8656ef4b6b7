//! A caller-supplied credential.

use std::sync::{Arc, Mutex};

use cloud_pg_auth::azure::{AzureCloud, AzureSource};
use cloud_pg_auth::{SourceInfo, TokenErrorKind, TokenSource};

use crate::support::{Fixed, at, check_result, fails, mi_jwt, now_secs};

#[tokio::test]
async fn caller_supplied_credentials() {
    let later = now_secs() + 3600;
    let good = Arc::new(Fixed {
        token: Some(mi_jwt(later)),
        expires_on: later + 100,
        scopes: Mutex::default(),
    });
    let source = AzureSource::from_credential(
        good.clone(),
        AzureCloud::Public.scope(),
        SourceInfo::new("azure").credential_kind("custom"),
    );
    let token = source.fetch().await.unwrap();
    assert_eq!(token.expires_at(), Some(at(later)));
    assert_eq!(token.details().get_username(), Some("orders-api"));
    assert_eq!(
        *good.scopes.lock().unwrap(),
        vec![AzureCloud::Public.scope()]
    );
    assert_eq!(source.credential_kind(), None);
    assert_eq!(source.info().get_credential_kind(), Some("custom"));

    let bad = AzureSource::from_credential(
        Arc::new(Fixed {
            token: None,
            expires_on: 0,
            scopes: Mutex::default(),
        }),
        AzureCloud::Public.scope(),
        SourceInfo::new("azure").credential_kind("custom"),
    );
    check_result(
        "a failing credential",
        bad.fetch().await,
        &fails(
            TokenErrorKind::Transient,
            "azure custom: the credential failed: vault sealed",
        ),
    );
}
