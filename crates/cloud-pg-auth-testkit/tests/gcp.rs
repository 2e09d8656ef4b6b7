//! Google Cloud SQL and AlloyDB at the emulator: the metadata server and token endpoint on
//! the identity port (counted, faulted, lifetimes set by the `token_lifetime` fault), and the
//! front accepting only tokens issued here, for the role's principal, with a login scope.

mod common;

use cloud_pg_auth_testkit::gcp::GcpProduct;
use cloud_pg_auth_testkit::{Emulator, Faults, http};
use common::{emulator, login};

const TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

/// A token from the emulator's metadata server, asked with `scopes`.
async fn metadata_token(em: &Emulator, scopes: &str) -> Result<String, u16> {
    let url = format!(
        "http://{}{TOKEN_PATH}?scopes={scopes}",
        em.gcp_metadata_host()
    );
    let reply = http::get(&url, &[("Metadata-Flavor", "Google")], None)
        .await
        .unwrap();
    if reply.status != 200 {
        return Err(reply.status);
    }
    let json = reply.json().unwrap();
    Ok(json["access_token"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn exports_name_the_metadata_server_files_and_roles() {
    let em = emulator().await;
    let get = |name: &str| em.env_var(name).unwrap_or_default().to_string();
    assert_eq!(get("GCE_METADATA_HOST"), em.gcp_metadata_host());
    assert_eq!(
        get("PGAUTH_EMULATOR_GCP_ROLE"),
        "emulator-vm@pgauth-emulator.iam"
    );
    assert_eq!(get("PGAUTH_EMULATOR_GCP_KEY_ROLE"), em.gcp_key_role());
    assert_eq!(get("PGAUTH_EMULATOR_GCP_USER"), "emulator-user@example.com");
    for file in [
        "PGAUTH_EMULATOR_GCP_KEY_FILE",
        "PGAUTH_EMULATOR_GCP_USER_FILE",
    ] {
        let text = std::fs::read_to_string(get(file)).unwrap();
        assert!(
            text.contains(&format!("http://{}/token", em.gcp_metadata_host())),
            "{file}: {text}"
        );
    }
    // It would win over the metadata server for every test that reads the exports.
    assert_eq!(em.env_var("GOOGLE_APPLICATION_CREDENTIALS"), None);
    em.stop().await.unwrap();
}

#[tokio::test]
async fn metadata_tokens_log_in_for_either_product() {
    let em = emulator().await;
    let role = em.gcp_role();
    for product in [GcpProduct::CloudSql, GcpProduct::AlloyDb] {
        let token = metadata_token(&em, product.login_scope()).await.unwrap();
        assert_eq!(login(&em, &role, &token).await.unwrap(), role);
        let label = format!("gcp_{}", product.as_str());
        assert_eq!(
            em.stats().logins_accepted_by_method.get(&label),
            Some(&1),
            "{:?}",
            em.stats()
        );
    }
    let stats = em.stats();
    assert_eq!(stats.token_requests.gcp, 2, "{stats:?}");
    assert_eq!(stats.tokens_issued.gcp, 2, "{stats:?}");
    assert_eq!(stats.token_requests.total, 2, "{stats:?}");
    em.stop().await.unwrap();
}

#[tokio::test]
async fn the_front_refuses_like_cloud_sql_and_alloydb() {
    let em = emulator().await;
    let role = em.gcp_role();
    let cloudsql = metadata_token(&em, GcpProduct::CloudSql.login_scope())
        .await
        .unwrap();
    let alloydb = metadata_token(&em, GcpProduct::AlloyDb.login_scope())
        .await
        .unwrap();
    let email_only = metadata_token(&em, "https://www.googleapis.com/auth/userinfo.email")
        .await
        .unwrap();
    let suffixed = format!("{role}.gserviceaccount.com");
    let key_role = em.gcp_key_role();
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            &role,
            "ya29.not-issued-here",
            "28000",
            "Cloud SQL IAM service account authentication failed for user",
        ),
        (
            &role,
            &email_only,
            "28000",
            "Cloud SQL IAM service account authentication failed",
        ),
        // Another principal's role: worded as the product the token was asked for.
        (
            &key_role,
            &alloydb,
            "28000",
            "AlloyDB IAM user authentication failed for user",
        ),
        (
            &key_role,
            &cloudsql,
            "28000",
            "Cloud SQL IAM service account authentication failed",
        ),
        // The suffix kept: no such IAM user, so a password check fails.
        (
            &suffixed,
            &cloudsql,
            "28P01",
            "password authentication failed for user",
        ),
    ];
    for (user, password, code, text) in cases {
        let (got_code, message) = login(&em, user, password).await.unwrap_err();
        assert_eq!(&got_code, code, "{user}: {message}");
        assert!(message.contains(text), "{user}: {message}");
    }
    let rejected = em.stats().logins_rejected;
    for reason in ["gcp_unknown_token", "gcp_scope", "gcp_role"] {
        assert!(rejected.contains_key(reason), "{reason}: {rejected:?}");
    }
    em.stop().await.unwrap();
}

#[tokio::test]
async fn faults_and_lifetimes_apply_to_google_endpoints() {
    let em = emulator().await;
    em.set_faults(Faults {
        status: Some(503),
        count: Some(1),
        token_lifetime: Some(90),
        ..Faults::default()
    })
    .await
    .unwrap();
    let scope = GcpProduct::CloudSql.login_scope();
    assert_eq!(metadata_token(&em, scope).await, Err(503));
    let url = format!(
        "http://{}{TOKEN_PATH}?scopes={scope}",
        em.gcp_metadata_host()
    );
    let reply = http::get(&url, &[("Metadata-Flavor", "Google")], None)
        .await
        .unwrap();
    assert_eq!(reply.json().unwrap()["expires_in"], 90, "{}", reply.body);
    // Email look-ups are not token requests.
    let email = format!(
        "http://{}/computeMetadata/v1/instance/service-accounts/default/email",
        em.gcp_metadata_host()
    );
    let reply = http::get(&email, &[("Metadata-Flavor", "Google")], None)
        .await
        .unwrap();
    assert_eq!(reply.body, em.gcp().metadata_account().email());
    let stats = em.stats();
    assert_eq!(stats.token_requests.gcp, 2, "{stats:?}");
    assert_eq!(stats.faults_injected, 1, "{stats:?}");
    em.set_faults(Faults {
        down: Some(true),
        ..Faults::default()
    })
    .await
    .unwrap();
    assert!(
        http::get(&url, &[("Metadata-Flavor", "Google")], None)
            .await
            .is_err()
    );
    em.stop().await.unwrap();
}
