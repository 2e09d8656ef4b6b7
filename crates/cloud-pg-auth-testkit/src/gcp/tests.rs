//! Unit tests of the Google endpoints: the token endpoint's checks of an assertion and of
//! user credentials, answered without a server.

use std::time::{Duration, SystemTime};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::*;

fn identity() -> GcpIdentity {
    let gcp = GcpIdentity::new().unwrap();
    gcp.set_base_url("http://127.0.0.1:9");
    gcp
}

fn now() -> u64 {
    crate::util::now_unix() as u64
}

/// An assertion signed with `signer`'s key, carrying `kid` and `claims`.
fn assertion(signer: &ServiceAccount, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    let key = EncodingKey::from_rsa_pem(signer.private_key_pem().as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn claims(gcp: &GcpIdentity, change: impl FnOnce(&mut Value)) -> Value {
    let iat = now();
    let mut claims = json!({
        "iss": gcp.key_account().email(),
        "scope": GcpProduct::CloudSql.login_scope(),
        "aud": gcp.token_uri(),
        "iat": iat,
        "exp": iat + 3600,
    });
    change(&mut claims);
    claims
}

/// The token endpoint's answer: status and JSON body.
fn grant(gcp: &GcpIdentity, form: &[(&str, &str)]) -> (u16, Value) {
    let form: Vec<(String, String)> = form
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let response = oauth::handle(gcp, &form);
    let status = response.status().as_u16();
    let body = response.into_body();
    let bytes = futures_body(body);
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn futures_body(body: Body) -> Vec<u8> {
    use http_body_util::BodyExt as _;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(body.collect()).unwrap().to_bytes().to_vec()
}

fn jwt_grant(gcp: &GcpIdentity, assertion: &str) -> (u16, Value) {
    grant(
        gcp,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion),
        ],
    )
}

#[test]
fn valid_assertions_get_a_token_with_their_scope() {
    let gcp = identity();
    let signed = assertion(
        gcp.key_account(),
        gcp.key_account().key_id(),
        &claims(&gcp, |_| {}),
    );
    let (status, body) = jwt_grant(&gcp, &signed);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 3599);
    let token = body["access_token"].as_str().unwrap();
    assert!(token.starts_with("ya29."));
    let principal = gcp
        .check(token, &gcp.key_account().username(), GcpProduct::CloudSql)
        .unwrap();
    assert_eq!(principal.scopes, [GcpProduct::CloudSql.login_scope()]);
}

#[test]
fn bad_assertions_get_googles_errors() {
    let gcp = identity();
    let account = gcp.key_account();
    let kid = account.key_id();
    let stranger = ServiceAccount::generate("x", "y").unwrap();
    let cases: Vec<(String, &str, &str)> = vec![
        // Right kid, wrong key: the signature does not verify.
        (
            assertion(&stranger, kid, &claims(&gcp, |_| {})),
            "invalid_grant",
            "Invalid JWT Signature.",
        ),
        (
            assertion(account, "unknown-kid", &claims(&gcp, |_| {})),
            "invalid_grant",
            "Invalid JWT Signature.",
        ),
        (
            assertion(
                account,
                kid,
                &claims(&gcp, |c| {
                    c["aud"] = json!("https://oauth2.googleapis.com/token")
                }),
            ),
            "invalid_grant",
            "Invalid JWT: Failed audience check.",
        ),
        (
            assertion(
                account,
                kid,
                &claims(&gcp, |c| {
                    c["iss"] = json!("other@p.iam.gserviceaccount.com")
                }),
            ),
            "invalid_grant",
            "Invalid JWT Signature.",
        ),
        (
            assertion(
                account,
                kid,
                &claims(&gcp, |c| c["exp"] = json!(now() + 7200)),
            ),
            "invalid_grant",
            "Token must be a short-lived token",
        ),
        (
            assertion(
                account,
                kid,
                &claims(&gcp, |c| {
                    c["iat"] = json!(now() - 7200);
                    c["exp"] = json!(now() - 3600);
                }),
            ),
            "invalid_grant",
            "Token must be a short-lived token",
        ),
        (
            assertion(
                account,
                kid,
                &claims(&gcp, |c| c["iat"] = json!(now() + 600)),
            ),
            "invalid_grant",
            "Token must be a short-lived token",
        ),
        (
            assertion(account, kid, &claims(&gcp, |c| c["scope"] = json!(""))),
            "invalid_scope",
            "Invalid oauth scope",
        ),
        ("not.a.jwt".to_string(), "invalid_grant", "Invalid JWT"),
    ];
    for (signed, code, description) in cases {
        let (status, body) = jwt_grant(&gcp, &signed);
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], code, "{body}");
        let text = body["error_description"].as_str().unwrap();
        assert!(text.contains(description), "{description:?} in {body}");
    }
    assert_eq!(gcp.counts().refused, 9);
    let (status, body) = grant(&gcp, &[("grant_type", "password")]);
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
}

#[test]
fn refresh_grants_check_the_client_and_the_token() {
    let gcp = identity();
    let user = gcp.user().clone();
    let form = |id: &str, secret: &str, token: &str, scope: Option<&str>| {
        let mut form = vec![
            ("grant_type", "refresh_token".to_string()),
            ("client_id", id.to_string()),
            ("client_secret", secret.to_string()),
            ("refresh_token", token.to_string()),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope.to_string()));
        }
        form
    };
    let run = |form: Vec<(&str, String)>| {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        grant(&gcp, &form)
    };
    let (id, secret, token) = (user.client_id(), user.client_secret(), user.refresh_token());
    let (status, body) = run(form(id, secret, token, None));
    assert_eq!(status, 200, "{body}");
    let principal = gcp
        .check(
            body["access_token"].as_str().unwrap(),
            user.email(),
            GcpProduct::AlloyDb,
        )
        .unwrap();
    assert!(principal.scopes.iter().any(|s| s == CLOUD_PLATFORM_SCOPE));
    // Narrowing to a consented scope works; one outside the consent does not.
    let (status, body) = run(form(
        id,
        secret,
        token,
        Some(GcpProduct::CloudSql.login_scope()),
    ));
    assert_eq!(status, 200, "{body}");
    let (status, body) = run(form(
        id,
        secret,
        token,
        Some(GcpProduct::AlloyDb.login_scope()),
    ));
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let (status, body) = run(form(id, "wrong", token, None));
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, body) = run(form("other", secret, token, None));
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, body) = run(form(id, secret, "1//revoked", None));
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[test]
fn usernames_and_messages() {
    assert_eq!(username_for("a@p.iam.gserviceaccount.com"), "a@p.iam");
    assert_eq!(username_for("jane@example.com"), "jane@example.com");
    assert_eq!(
        username_for(&format!("{}@example.com", "x".repeat(70))).len(),
        63
    );
    let expired = GcpRejection::Expired;
    assert_eq!(
        expired.message(GcpProduct::CloudSql, "a@p.iam"),
        "Cloud SQL IAM service account authentication failed for user \"a@p.iam\""
    );
    assert_eq!(
        expired.message(GcpProduct::CloudSql, "jane@example.com"),
        "Cloud SQL IAM user authentication failed for user \"jane@example.com\""
    );
    assert_eq!(
        expired.message(GcpProduct::AlloyDb, "a@p.iam"),
        "AlloyDB IAM user authentication failed for user \"a@p.iam\""
    );
    let details: Vec<String> = [
        GcpRejection::SuffixInRole,
        GcpRejection::UnknownToken,
        GcpRejection::Expired,
        GcpRejection::Scope {
            scopes: vec!["s".into()],
        },
        GcpRejection::RoleMismatch {
            token_user: "b".into(),
        },
    ]
    .iter()
    .map(GcpRejection::detail)
    .collect();
    let distinct: std::collections::BTreeSet<&String> = details.iter().collect();
    assert_eq!(distinct.len(), details.len(), "{details:?}");
}

#[test]
fn tokens_expire_at_their_lifetime_and_files_need_a_served_identity() {
    let gcp = GcpIdentity::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    assert!(gcp.write_service_account_key(dir.path()).is_err());
    gcp.set_base_url("http://127.0.0.1:9");
    gcp.set_token_lifetime(Duration::from_secs(60));
    let signed = assertion(
        gcp.key_account(),
        gcp.key_account().key_id(),
        &claims(&gcp, |_| {}),
    );
    let (_, body) = jwt_grant(&gcp, &signed);
    assert_eq!(body["expires_in"], 60);
    let token = body["access_token"].as_str().unwrap();
    let user = gcp.key_account().username();
    let at = |secs| SystemTime::now() + Duration::from_secs(secs);
    assert!(
        gcp.check_at(token, &user, GcpProduct::CloudSql, at(30))
            .is_ok()
    );
    assert_eq!(
        gcp.check_at(token, &user, GcpProduct::CloudSql, at(61)),
        Err(GcpRejection::Expired)
    );
    let path = gcp.write_service_account_key(dir.path()).unwrap();
    let key: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(key["token_uri"], "http://127.0.0.1:9/token");
    assert_eq!(key["client_email"], gcp.key_account().email());
    assert!(!format!("{gcp:?}").contains("PRIVATE KEY"));
    assert!(!format!("{:?}", gcp.user()).contains(gcp.user().refresh_token()));
}

#[test]
fn federation_and_impersonation_files_name_the_emulators_endpoints() {
    let gcp = GcpIdentity::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    let source = FederatedSource::File(token.clone());
    assert!(
        gcp.write_external_account_file(dir.path(), &source, None)
            .is_err()
    );
    gcp.set_base_url("http://127.0.0.1:9");
    let read = |path: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };

    // The subject token file is replaced whole on each write.
    let first = gcp.write_subject_token(&token, "app").unwrap();
    let second = gcp.write_subject_token(&token, "app").unwrap();
    assert_ne!(first, second);
    assert_eq!(std::fs::read_to_string(&token).unwrap(), second);

    let email = gcp.key_account().email().to_string();
    let file = read(
        &gcp.write_external_account_file(dir.path(), &source, Some(&email))
            .unwrap(),
    );
    assert_eq!(file["type"], "external_account");
    assert_eq!(file["audience"], FEDERATION_AUDIENCE);
    assert_eq!(file["subject_token_type"], SUBJECT_TOKEN_TYPE);
    assert_eq!(file["token_url"], "http://127.0.0.1:9/v1/token");
    assert_eq!(
        file["credential_source"],
        json!({"file": token.display().to_string()})
    );
    assert_eq!(
        file["service_account_impersonation_url"],
        format!("http://127.0.0.1:9/v1/projects/-/serviceAccounts/{email}:generateAccessToken")
    );
    let file = read(
        &gcp.write_external_account_file(dir.path(), &FederatedSource::UrlJson, None)
            .unwrap(),
    );
    let source = &file["credential_source"];
    assert_eq!(
        source["url"],
        "http://127.0.0.1:9/emulator/gcp/subject-token?format=json"
    );
    assert_eq!(source["headers"]["Metadata"], "True");
    assert_eq!(source["format"]["subject_token_field_name"], "access_token");
    assert!(file.get("service_account_impersonation_url").is_none());

    let file = read(
        &gcp.write_impersonated_file(dir.path(), ImpersonatingSource::User, &email, &["d@x"])
            .unwrap(),
    );
    assert_eq!(file["type"], "impersonated_service_account");
    assert_eq!(file["source_credentials"]["type"], "authorized_user");
    assert_eq!(file["delegates"], json!(["d@x"]));
    assert!(gcp.service_account(&email).is_some());
    assert!(
        gcp.service_account("ghost@x.iam.gserviceaccount.com")
            .is_none()
    );
    assert!(GcpIdentity::is_token_request("/v1/token"));
    assert!(GcpIdentity::is_token_request(
        "/v1/projects/-/serviceAccounts/a@b:generateAccessToken"
    ));
    assert!(!GcpIdentity::is_token_request(
        "/emulator/gcp/subject-token"
    ));
    assert!(!GcpIdentity::is_token_request(
        "/computeMetadata/v1/instance/service-accounts/default/email"
    ));
}
