//! The Google token source against the testkit's Google endpoints on loopback: the metadata
//! server (`GCE_METADATA_HOST`), a service account key whose `token_uri` is the emulator's,
//! and gcloud's user credentials; each token is then checked the way Cloud SQL and AlloyDB
//! check a password. No request leaves 127.0.0.1.
#![cfg(feature = "gcp")]

use std::path::Path;
use std::time::{Duration, SystemTime};

use cloud_pg_auth::gcp::{GcpOptions, GcpSource};
use cloud_pg_auth::{Env, TokenErrorKind, TokenSource};
use cloud_pg_auth_testkit::gcp::{
    GcpIdentity, GcpProduct, GcpRejection, GcpServer, PrincipalKind, ServiceAccount,
};
use cloud_pg_auth_testkit::http::HttpResponse;
use serde_json::json;

async fn server() -> GcpServer {
    GcpServer::start(GcpIdentity::new().unwrap()).await.unwrap()
}

/// Options read from an environment whose `HOME` holds no gcloud file (unless a test puts
/// one there), as an application would read them.
fn options(home: &Path, pairs: &[(&str, &str)]) -> GcpOptions {
    let mut env: Vec<(String, String)> = vec![("HOME".into(), home.display().to_string())];
    env.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    GcpOptions::from_env(&Env::from_pairs(env)).unwrap()
}

#[tokio::test]
async fn metadata_server_tokens_log_in_as_the_attached_service_account() {
    let server = server().await;
    let gcp = server.identity();
    let home = tempfile::tempdir().unwrap();
    let host = server.metadata_host();
    let source =
        GcpSource::new(&options(home.path(), &[("GCE_METADATA_HOST", &host)]), None).unwrap();
    assert_eq!(source.info().get_credential_kind(), Some("metadata-server"));

    let token = source.fetch().await.unwrap();
    let user = gcp.metadata_account().username();
    assert_eq!(user, "emulator-vm@pgauth-emulator.iam");
    assert_eq!(token.details().get_username(), Some(user.as_str()));
    assert_eq!(
        token.details().get_identity(),
        Some("emulator-vm@pgauth-emulator.iam.gserviceaccount.com")
    );
    let left = token
        .expires_at()
        .unwrap()
        .duration_since(SystemTime::now())
        .unwrap();
    assert!(left > Duration::from_secs(3500) && left <= Duration::from_secs(3599));

    let principal = gcp
        .check(token.secret().expose(), &user, GcpProduct::CloudSql)
        .unwrap();
    assert_eq!(principal.kind, PrincipalKind::ServiceAccount);
    assert_eq!(
        principal.scopes,
        vec!["https://www.googleapis.com/auth/sqlservice.login"]
    );
    // A Cloud SQL token is not an AlloyDB one.
    let refused = gcp
        .check(token.secret().expose(), &user, GcpProduct::AlloyDb)
        .unwrap_err();
    assert_eq!(refused.reason(), "gcp_scope");
    assert_eq!(
        refused.message(GcpProduct::AlloyDb, &user),
        format!("AlloyDB IAM user authentication failed for user \"{user}\"")
    );

    // The email is asked once; the token every time.
    source.fetch().await.unwrap();
    let counts = gcp.counts();
    assert_eq!((counts.metadata_tokens, counts.metadata_emails), (2, 1));
}

#[tokio::test]
async fn alloydb_tokens_carry_the_alloydb_scope_and_pguser_skips_the_email() {
    let server = server().await;
    let gcp = server.identity();
    let home = tempfile::tempdir().unwrap();
    let host = server.metadata_host();
    let options = options(
        home.path(),
        &[
            ("GCE_METADATA_HOST", &host),
            ("PGAUTH_GCP_PRODUCT", "alloydb"),
        ],
    );
    let user = gcp.metadata_account().username();
    let source = GcpSource::new(&options, Some(&user)).unwrap();
    let token = source.fetch().await.unwrap();
    gcp.check(token.secret().expose(), &user, GcpProduct::AlloyDb)
        .unwrap();
    let refused = gcp
        .check(token.secret().expose(), &user, GcpProduct::CloudSql)
        .unwrap_err();
    assert_eq!(
        refused.message(GcpProduct::CloudSql, &user),
        format!("Cloud SQL IAM service account authentication failed for user \"{user}\"")
    );
    assert_eq!(gcp.counts().metadata_emails, 0);
}

#[tokio::test]
async fn service_account_keys_are_exchanged_at_their_token_uri() {
    let server = server().await;
    let gcp = server.identity();
    let home = tempfile::tempdir().unwrap();
    let key = server.write_service_account_key(home.path()).unwrap();
    for product in ["cloudsql", "alloydb"] {
        let options = options(
            home.path(),
            &[
                ("GOOGLE_APPLICATION_CREDENTIALS", key.to_str().unwrap()),
                ("PGAUTH_GCP_PRODUCT", product),
            ],
        );
        let source = GcpSource::new(&options, None).unwrap();
        assert_eq!(
            source.info().get_endpoint(),
            Some(server.token_uri().as_str())
        );
        let token = source.fetch().await.unwrap();
        let user = gcp.key_account().username();
        assert_eq!(user, "emulator-app@pgauth-emulator.iam");
        assert_eq!(token.details().get_username(), Some(user.as_str()));
        let product = match product {
            "cloudsql" => GcpProduct::CloudSql,
            _ => GcpProduct::AlloyDb,
        };
        gcp.check(token.secret().expose(), &user, product).unwrap();
        // The token is the key account's, not the metadata server's.
        let other = gcp.metadata_account().username();
        assert_eq!(
            gcp.check(token.secret().expose(), &other, product),
            Err(GcpRejection::RoleMismatch { token_user: user })
        );
    }
    let counts = gcp.counts();
    assert_eq!(
        (counts.jwt_grants, counts.metadata_tokens, counts.refused),
        (2, 0, 0)
    );
}

#[tokio::test]
async fn gcloud_user_credentials_need_pguser_and_serve_both_products() {
    let server = server().await;
    let gcp = server.identity();
    let home = tempfile::tempdir().unwrap();
    let gcloud = home.path().join(".config/gcloud");
    std::fs::create_dir_all(&gcloud).unwrap();
    let written = server.write_authorized_user_file(&gcloud).unwrap();
    std::fs::rename(
        &written,
        gcloud.join("application_default_credentials.json"),
    )
    .unwrap();

    let options = options(home.path(), &[]);
    let e = GcpSource::new(&options, None).unwrap_err();
    assert!(e.to_string().starts_with("PGUSER: "), "{e}");

    let email = gcp.user().email().to_string();
    let source = GcpSource::new(&options, Some(&email)).unwrap();
    assert_eq!(
        source.info().get_credential_kind(),
        Some("user-credentials")
    );
    let token = source.fetch().await.unwrap();
    // No scope is asked: the consented ones include cloud-platform, which both accept.
    for product in [GcpProduct::CloudSql, GcpProduct::AlloyDb] {
        let principal = gcp.check(token.secret().expose(), &email, product).unwrap();
        assert_eq!(principal.kind, PrincipalKind::User);
    }
    assert_eq!(
        GcpRejection::UnknownToken.message(GcpProduct::CloudSql, &email),
        format!("Cloud SQL IAM user authentication failed for user \"{email}\"")
    );
    assert_eq!(gcp.counts().refresh_grants, 1);
}

#[tokio::test]
async fn tokens_are_refused_when_expired_unknown_or_for_a_suffixed_role() {
    let server = server().await;
    let gcp = server.identity();
    let home = tempfile::tempdir().unwrap();
    let host = server.metadata_host();
    let source =
        GcpSource::new(&options(home.path(), &[("GCE_METADATA_HOST", &host)]), None).unwrap();
    let token = source.fetch().await.unwrap();
    let token = token.secret().expose();
    let user = gcp.metadata_account().username();
    let later = SystemTime::now() + Duration::from_secs(3600);
    let expired = gcp
        .check_at(token, &user, GcpProduct::CloudSql, later)
        .unwrap_err();
    assert_eq!(expired, GcpRejection::Expired);
    let unknown = gcp
        .check("ya29.not-issued-here", &user, GcpProduct::CloudSql)
        .unwrap_err();
    assert_eq!(unknown, GcpRejection::UnknownToken);
    let email = gcp.metadata_account().email();
    let suffixed = gcp.check(token, email, GcpProduct::CloudSql).unwrap_err();
    assert_eq!(suffixed.code(), "28P01");
    assert_eq!(
        suffixed.message(GcpProduct::CloudSql, email),
        format!("password authentication failed for user \"{email}\"")
    );
    let reasons: Vec<&str> = [expired, unknown, suffixed]
        .iter()
        .map(GcpRejection::reason)
        .collect();
    assert_eq!(reasons, ["gcp_expired", "gcp_unknown_token", "gcp_suffix"]);
}

async fn get(base: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    cloud_pg_auth_testkit::http::get(&format!("{base}/{path}"), headers, None)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_metadata_server_wants_its_header() {
    let server = server().await;
    let base = format!(
        "http://{}/computeMetadata/v1/instance/service-accounts/default",
        server.metadata_host()
    );
    let flavor = ("Metadata-Flavor", "Google");
    let refused = get(&base, "token", &[]).await;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("Metadata-Flavor"), "{}", refused.body);
    assert_eq!(
        get(&base, "token", &[("Metadata-Flavor", "google")])
            .await
            .status,
        403
    );
    assert_eq!(
        get(&base, "token", &[flavor, ("X-Forwarded-For", "10.0.0.1")])
            .await
            .status,
        403
    );
    let email = get(&base, "email", &[flavor]).await;
    assert_eq!(email.status, 200);
    assert_eq!(email.body, server.identity().metadata_account().email());
    assert_eq!(email.header("metadata-flavor"), Some("Google"));
    let token = get(&base, "token", &[flavor]).await.json().unwrap();
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 3599);
    assert_eq!(get(&base, "identity", &[flavor]).await.status, 404);
    assert_eq!(server.identity().counts().refused, 3);
}

#[tokio::test]
async fn refused_credentials_say_what_to_fix() {
    let server = server().await;
    let home = tempfile::tempdir().unwrap();

    // A key the emulator never issued: its signature cannot verify.
    let stranger = ServiceAccount::generate("emulator-app", "pgauth-emulator").unwrap();
    let key = home.path().join("stranger.json");
    std::fs::write(&key, stranger.key_json(&server.token_uri()).to_string()).unwrap();
    let opts = options(
        home.path(),
        &[("GOOGLE_APPLICATION_CREDENTIALS", key.to_str().unwrap())],
    );
    let e = GcpSource::new(&opts, None)
        .unwrap()
        .fetch()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), TokenErrorKind::Rejected);
    assert!(
        e.message()
            .contains("Invalid JWT Signature. (invalid_grant)"),
        "{e}"
    );
    assert!(e.message().contains("keys list"), "{e}");

    // A revoked refresh token.
    let mut user = server
        .identity()
        .user()
        .credentials_json(&server.token_uri());
    user["refresh_token"] = json!("1//revoked");
    let file = home.path().join("user.json");
    std::fs::write(&file, user.to_string()).unwrap();
    let opts = options(
        home.path(),
        &[("GOOGLE_APPLICATION_CREDENTIALS", file.to_str().unwrap())],
    );
    let e = GcpSource::new(&opts, Some("someone@example.com"))
        .unwrap()
        .fetch()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), TokenErrorKind::Rejected);
    assert!(
        e.message()
            .contains("run gcloud auth application-default login again"),
        "{e}"
    );
    assert!(!e.chain_text().contains("1//revoked"), "{e}");
    assert_eq!(server.identity().counts().refused, 2);
}

#[tokio::test]
async fn an_unreachable_metadata_server_is_transient_and_named() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let home = tempfile::tempdir().unwrap();
    let host = format!("127.0.0.1:{port}");
    let source =
        GcpSource::new(&options(home.path(), &[("GCE_METADATA_HOST", &host)]), None).unwrap();
    let e = source.fetch().await.unwrap_err();
    assert_eq!(e.kind(), TokenErrorKind::Transient);
    assert!(
        e.message().contains("cannot reach the metadata server"),
        "{e}"
    );
    assert!(
        e.message().contains("GOOGLE_APPLICATION_CREDENTIALS"),
        "{e}"
    );
}
