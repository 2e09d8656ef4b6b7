//! Workload identity federation (`external_account`) and service account impersonation
//! (`impersonated_service_account`) against the testkit's Google endpoints on loopback: the
//! subject token from a file or a URL, the Security Token Service, IAM's
//! `generateAccessToken`, and the database's check of the token that comes out. No request
//! leaves 127.0.0.1.
#![cfg(feature = "gcp")]

use std::path::Path;
use std::sync::Arc;

use cloud_pg_auth::gcp::{GcpOptions, GcpSource};
use cloud_pg_auth::{Env, Error, TokenCache, TokenErrorKind, TokenSource};
use cloud_pg_auth_testkit::gcp::{
    FederatedSource, GcpIdentity, GcpProduct, GcpRejection, GcpServer, ImpersonatingSource,
    PrincipalKind, federated_principal,
};
use serde_json::{Value, json};

async fn server() -> GcpServer {
    GcpServer::start(GcpIdentity::new().unwrap()).await.unwrap()
}

/// Options as an application reads them, with `GOOGLE_APPLICATION_CREDENTIALS=file` and a
/// `HOME` without gcloud's file.
fn options(home: &Path, file: &Path, product: &str) -> GcpOptions {
    let env = Env::from_pairs([
        ("HOME", home.display().to_string()),
        ("GOOGLE_APPLICATION_CREDENTIALS", file.display().to_string()),
        ("PGAUTH_GCP_PRODUCT", product.to_string()),
    ]);
    GcpOptions::from_env(&env).unwrap()
}

/// Rewrites the JSON file at `path` with `change` applied.
fn edit(path: &Path, change: impl FnOnce(&mut Value)) {
    let mut value: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    change(&mut value);
    std::fs::write(path, value.to_string()).unwrap();
}

#[tokio::test]
async fn a_federated_file_source_impersonates_the_service_account_and_names_the_user() {
    let server = server().await;
    let gcp = server.identity();
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("token");
    let subject = gcp
        .write_subject_token(&token_file, "system:serviceaccount:default:app")
        .unwrap();
    let target = gcp.key_account().email().to_string();
    let file = gcp
        .write_external_account_file(
            home.path(),
            &FederatedSource::File(token_file),
            Some(&target),
        )
        .unwrap();
    for product in [GcpProduct::CloudSql, GcpProduct::AlloyDb] {
        let options = options(home.path(), &file, product.as_str());
        let source = GcpSource::new(&options, None).unwrap();
        assert_eq!(
            source.info().get_credential_kind(),
            Some("external-account")
        );
        let token = source.fetch().await.unwrap();
        let user = gcp.key_account().username();
        assert_eq!(user, "emulator-app@pgauth-emulator.iam");
        assert_eq!(token.details().get_username(), Some(user.as_str()));
        assert_eq!(token.details().get_identity(), Some(target.as_str()));
        let principal = gcp.check(token.secret().expose(), &user, product).unwrap();
        assert_eq!(principal.kind, PrincipalKind::ServiceAccount);
        assert_eq!(principal.scopes, [product.login_scope()]);
        let left = token
            .expires_at()
            .unwrap()
            .duration_since(std::time::SystemTime::now())
            .unwrap();
        assert!(left.as_secs() > 3500 && left.as_secs() <= 3599, "{left:?}");
    }
    let counts = gcp.counts();
    assert_eq!(
        (counts.sts_exchanges, counts.impersonations, counts.refused),
        (2, 2, 0)
    );
    assert_eq!(gcp.subject_tokens_seen(), [subject.clone(), subject]);
}

#[tokio::test]
async fn a_url_source_is_read_in_text_or_json_with_its_headers() {
    let server = server().await;
    let gcp = server.identity();
    let home = tempfile::tempdir().unwrap();
    let target = gcp.metadata_account().email().to_string();
    for source in [FederatedSource::UrlJson, FederatedSource::UrlText] {
        let file = gcp
            .write_external_account_file(home.path(), &source, Some(&target))
            .unwrap();
        let source = GcpSource::new(&options(home.path(), &file, "cloudsql"), None).unwrap();
        let token = source.fetch().await.unwrap();
        let user = gcp.metadata_account().username();
        assert_eq!(token.details().get_username(), Some(user.as_str()));
        gcp.check(token.secret().expose(), &user, GcpProduct::CloudSql)
            .unwrap();
    }
    let counts = gcp.counts();
    assert_eq!((counts.subject_tokens_served, counts.sts_exchanges), (2, 2));

    // Without the header the URL refuses, and the error names the file's fields.
    let file = gcp
        .write_external_account_file(home.path(), &FederatedSource::UrlText, Some(&target))
        .unwrap();
    edit(&file, |v| {
        v["credential_source"]
            .as_object_mut()
            .unwrap()
            .remove("headers");
    });
    let source = GcpSource::new(&options(home.path(), &file, "cloudsql"), None).unwrap();
    let e = source.fetch().await.unwrap_err();
    assert_eq!(e.kind(), TokenErrorKind::Rejected);
    assert!(e.message().contains("the subject token url"), "{e}");
    assert!(
        e.message()
            .contains("check credential_source.url and headers in"),
        "{e}"
    );
}

#[tokio::test]
async fn without_impersonation_the_federated_token_needs_pguser() {
    let server = server().await;
    let gcp = server.identity();
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("token");
    gcp.write_subject_token(&token_file, "wl").unwrap();
    let file = gcp
        .write_external_account_file(home.path(), &FederatedSource::File(token_file), None)
        .unwrap();
    let options = options(home.path(), &file, "cloudsql");
    match GcpSource::new(&options, None) {
        Err(Error::Config(e)) => {
            assert_eq!(e.setting(), "PGUSER");
            assert!(e.message().contains("external-account.json"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    let source = GcpSource::new(&options, Some("wl-user")).unwrap();
    let token = source.fetch().await.unwrap();
    // The STS token itself, with the login scope, for the federated principal.
    assert_eq!(token.details().get_username(), None);
    let refused = gcp
        .check(token.secret().expose(), "wl-user", GcpProduct::CloudSql)
        .unwrap_err();
    // Its principal names no database user (here cut to 63 bytes, as a user name would be).
    match refused {
        GcpRejection::RoleMismatch { token_user } => {
            assert!(
                federated_principal("wl").starts_with(&token_user),
                "{token_user}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(gcp.counts().impersonations, 0);
}

#[tokio::test]
async fn the_subject_token_file_is_read_again_after_rotation() {
    let server = server().await;
    let gcp = server.identity();
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("token");
    let first = gcp.write_subject_token(&token_file, "app").unwrap();
    let target = gcp.key_account().email().to_string();
    let file = gcp
        .write_external_account_file(
            home.path(),
            &FederatedSource::File(token_file.clone()),
            Some(&target),
        )
        .unwrap();
    let source = GcpSource::new(&options(home.path(), &file, "cloudsql"), None).unwrap();
    let cache = TokenCache::new(Arc::new(source));
    let token = cache.token().await.unwrap();
    // The platform rotates the token; the server refuses the cached login token.
    let second = gcp.write_subject_token(&token_file, "app").unwrap();
    cache.invalidate(token.secret());
    let again = cache.token().await.unwrap();
    assert_ne!(again.secret(), token.secret());
    assert_eq!(gcp.subject_tokens_seen(), [first, second]);
}

#[tokio::test]
async fn impersonated_service_account_files_impersonate_from_a_user_or_a_key() {
    let server = server().await;
    let gcp = server.identity();
    let home = tempfile::tempdir().unwrap();
    let key_target = gcp.key_account().email().to_string();
    let vm_target = gcp.metadata_account().email().to_string();
    for (source, target) in [
        (ImpersonatingSource::User, &key_target),
        (ImpersonatingSource::KeyAccount, &vm_target),
    ] {
        let file = gcp
            .write_impersonated_file(home.path(), source, target, &[])
            .unwrap();
        let options = options(home.path(), &file, "alloydb");
        let source = GcpSource::new(&options, None).unwrap();
        assert_eq!(
            source.info().get_credential_kind(),
            Some("impersonated-service-account")
        );
        let token = source.fetch().await.unwrap();
        let user = gcp.service_account(target).unwrap().username();
        assert_eq!(token.details().get_username(), Some(user.as_str()));
        let principal = gcp
            .check(token.secret().expose(), &user, GcpProduct::AlloyDb)
            .unwrap();
        assert_eq!(principal.scopes, [GcpProduct::AlloyDb.login_scope()]);
    }
    let counts = gcp.counts();
    assert_eq!(
        (
            counts.refresh_grants,
            counts.jwt_grants,
            counts.impersonations
        ),
        (1, 1, 2)
    );
}

#[tokio::test]
async fn refusals_say_what_to_fix_without_secrets() {
    let server = server().await;
    let gcp = server.identity();
    let home = tempfile::tempdir().unwrap();
    let key = gcp.key_account().email().to_string();
    let fetch_error = |file: std::path::PathBuf| {
        let options = options(home.path(), &file, "cloudsql");
        async move {
            GcpSource::new(&options, None)
                .unwrap()
                .fetch()
                .await
                .unwrap_err()
        }
    };

    // The key account may not impersonate itself; an unknown account is not found.
    let file = gcp
        .write_impersonated_file(home.path(), ImpersonatingSource::KeyAccount, &key, &[])
        .unwrap();
    let e = fetch_error(file.clone()).await;
    assert_eq!(e.kind(), TokenErrorKind::Rejected);
    assert!(
        e.message().contains(&format!(
            "{key} may not impersonate {key} (HTTP 403: Permission"
        )),
        "{e}"
    );
    assert!(
        e.message().contains("roles/iam.serviceAccountTokenCreator"),
        "{e}"
    );
    let ghost = "ghost@pgauth-emulator.iam.gserviceaccount.com";
    edit(&file, |v| {
        v["service_account_impersonation_url"] = json!(gcp.impersonation_url(ghost));
    });
    let e = fetch_error(file).await;
    assert_eq!(e.kind(), TokenErrorKind::Rejected);
    assert!(
        e.message()
            .contains(&format!("the service account {ghost} was not found")),
        "{e}"
    );

    // A subject token the STS never issued, and a wrong audience.
    let token_file = home.path().join("token");
    std::fs::write(&token_file, "eyJ.forged-subject-token.x").unwrap();
    let file = gcp
        .write_external_account_file(
            home.path(),
            &FederatedSource::File(token_file.clone()),
            Some(&key),
        )
        .unwrap();
    let e = fetch_error(file.clone()).await;
    assert_eq!(e.kind(), TokenErrorKind::Rejected);
    assert!(e.message().contains("(invalid_grant)"), "{e}");
    assert!(
        e.message().contains("workload identity pool provider"),
        "{e}"
    );
    assert!(!e.chain_text().contains("forged-subject-token"), "{e}");
    gcp.write_subject_token(&token_file, "app").unwrap();
    edit(&file, |v| {
        v["audience"] = json!("//iam.googleapis.com/projects/1/x")
    });
    let e = fetch_error(file.clone()).await;
    assert!(e.message().contains("(invalid_target)"), "{e}");
    assert!(
        e.message()
            .contains("check audience and subject_token_type in"),
        "{e}"
    );

    // The STS unreachable: transient, named.
    server.set_down(true);
    let e = fetch_error(file).await;
    assert_eq!(e.kind(), TokenErrorKind::Transient);
    assert!(
        e.message()
            .contains("cannot reach the security token service"),
        "{e}"
    );
    assert_eq!(gcp.counts().refused, 4);
}
