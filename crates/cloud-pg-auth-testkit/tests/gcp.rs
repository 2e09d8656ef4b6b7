//! Google Cloud SQL and AlloyDB at the emulator: the metadata server, token endpoint,
//! Security Token Service and `generateAccessToken` on the identity port (counted, faulted,
//! lifetimes set by the `token_lifetime` fault), and the front accepting only tokens issued
//! here, for the role's principal, with a login scope.

mod common;

use cloud_pg_auth_testkit::gcp::{
    CLOUD_PLATFORM_SCOPE, FEDERATION_AUDIENCE, GcpProduct, SUBJECT_TOKEN_HEADER, SUBJECT_TOKEN_TYPE,
};
use cloud_pg_auth_testkit::{Emulator, Faults, http};
use common::{emulator, login};
use serde_json::{Value, json};

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

/// The STS's answer to a token exchange of `subject` with `changes` to the usual form.
async fn exchange(em: &Emulator, subject: &str, changes: &[(&str, &str)]) -> (u16, Value) {
    let mut form = vec![
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("audience", FEDERATION_AUDIENCE),
        ("scope", CLOUD_PLATFORM_SCOPE),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
        ("subject_token", subject),
        ("subject_token_type", SUBJECT_TOKEN_TYPE),
    ];
    for (name, value) in changes {
        form.retain(|(k, _)| k != name);
        if !value.is_empty() {
            form.push((name, value));
        }
    }
    let url = format!("http://{}/v1/token", em.gcp_metadata_host());
    let reply = http::post_form(&url, &form, None).await.unwrap();
    (reply.status, reply.json().unwrap_or(Value::Null))
}

/// `generateAccessToken` for `email` with `bearer` and `body`.
async fn generate(em: &Emulator, email: &str, bearer: Option<&str>, body: &Value) -> (u16, Value) {
    let url = em.gcp().impersonation_url(email);
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("authorization", auth.as_str()));
    }
    let reply = http::post(&url, &headers, body.to_string(), None)
        .await
        .unwrap();
    (reply.status, reply.json().unwrap_or(Value::Null))
}

#[tokio::test]
async fn federated_tokens_impersonate_a_service_account_that_logs_in() {
    let em = emulator().await;
    let subject = em
        .gcp()
        .mint_subject_token("system:serviceaccount:default:app");
    let (status, sts) = exchange(&em, &subject, &[]).await;
    assert_eq!(status, 200, "{sts}");
    assert_eq!(
        sts["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert!(sts["expires_in"].as_u64().unwrap() > 3000, "{sts}");
    let federated = sts["access_token"].as_str().unwrap();
    let role = em.gcp_key_role();
    let email = em.gcp().key_account().email().to_string();
    let body = json!({"scope": [GcpProduct::CloudSql.login_scope()], "lifetime": "3600s"});
    let (status, answer) = generate(&em, &email, Some(federated), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["expireTime"].as_str().unwrap().ends_with('Z'),
        "{answer}"
    );
    let token = answer["accessToken"].as_str().unwrap();
    assert_eq!(login(&em, &role, token).await.unwrap(), role);
    // The federated token itself logs in as no database user.
    assert!(login(&em, &role, federated).await.is_err());

    // The subject token URL is the platform's: neither counted nor faulted.
    let url = em.gcp().subject_token_url();
    let (name, value) = SUBJECT_TOKEN_HEADER;
    let served = http::get(&url, &[(name, value)], None).await.unwrap();
    assert_eq!(served.status, 200);
    assert_eq!(http::get(&url, &[], None).await.unwrap().status, 400);
    let stats = em.stats();
    assert_eq!(stats.token_requests.gcp, 2, "{stats:?}");
    assert_eq!(stats.tokens_issued.gcp, 2, "{stats:?}");
    let counts = em.gcp().counts();
    assert_eq!(
        (
            counts.sts_exchanges,
            counts.impersonations,
            counts.subject_tokens_served
        ),
        (1, 1, 1)
    );
    em.stop().await.unwrap();
}

#[tokio::test]
async fn the_sts_and_iam_refuse_like_google() {
    let em = emulator().await;
    let subject = em.gcp().mint_subject_token("app");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("audience", "//iam.googleapis.com/projects/1/other")],
            "invalid_target",
        ),
        (
            &[("subject_token", "eyJ.not-minted-here.x")],
            "invalid_grant",
        ),
        (&[("subject_token", "")], "invalid_request"),
        (
            &[(
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:saml2",
            )],
            "invalid_request",
        ),
        (&[("requested_token_type", "urn:x")], "invalid_request"),
        (&[("scope", "")], "invalid_scope"),
        (
            &[("grant_type", "client_credentials")],
            "unsupported_grant_type",
        ),
    ];
    for (changes, code) in cases {
        let (status, body) = exchange(&em, &subject, changes).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(*code)),
            "{changes:?}: {body}"
        );
    }
    // Every subject token presented is remembered, accepted or not.
    assert_eq!(em.gcp().subject_tokens_seen().len(), 6);

    let login_scope = GcpProduct::CloudSql.login_scope();
    let (_, sts) = exchange(&em, &subject, &[("scope", login_scope)]).await;
    let narrow = sts["access_token"].as_str().unwrap().to_string();
    let (_, sts) = exchange(&em, &subject, &[]).await;
    let federated = sts["access_token"].as_str().unwrap().to_string();
    let key = em.gcp().key_account().email().to_string();
    let body = json!({"scope": [login_scope]});
    let iam_cases: Vec<(&str, Option<&str>, Value, u16, &str)> = vec![
        (&key, None, body.clone(), 401, "UNAUTHENTICATED"),
        (
            &key,
            Some("ya29.unknown"),
            body.clone(),
            401,
            "UNAUTHENTICATED",
        ),
        (&key, Some(&narrow), body.clone(), 403, "PERMISSION_DENIED"),
        (
            "ghost@pgauth-emulator.iam.gserviceaccount.com",
            Some(&federated),
            body.clone(),
            404,
            "NOT_FOUND",
        ),
        (
            &key,
            Some(&federated),
            json!({"scope": []}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            &key,
            Some(&federated),
            json!({"scope": [login_scope], "lifetime": "1h"}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            &key,
            Some(&federated),
            json!({"scope": [login_scope], "delegates": ["projects/-/serviceAccounts/ghost@x.iam.gserviceaccount.com"]}),
            404,
            "NOT_FOUND",
        ),
    ];
    for (email, bearer, body, status, code) in iam_cases {
        let (got, answer) = generate(&em, email, bearer, &body).await;
        assert_eq!(
            (got, answer["error"]["status"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
    assert_eq!(em.gcp().counts().refused, 7 + 7);

    // Faults apply to the STS as to every Google token request.
    em.set_faults(Faults {
        status: Some(503),
        count: Some(1),
        token_lifetime: Some(120),
        ..Faults::default()
    })
    .await
    .unwrap();
    assert_eq!(exchange(&em, &subject, &[]).await.0, 503);
    let (_, sts) = exchange(&em, &subject, &[]).await;
    assert_eq!(sts["expires_in"], 120, "{sts}");
    em.stop().await.unwrap();
}
