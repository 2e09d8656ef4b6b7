//! Entra identity endpoints: the managed-identity and token endpoints serve what they should
//! and refuse bad requests with the real services' texts.

mod common;

use std::time::{Duration, SystemTime};

use cloud_pg_auth_testkit::http;
use cloud_pg_auth_testkit::{Emulator, MintOptions};
use common::{AUD, claims, emulator, login, urlencode};

#[tokio::test]
async fn managed_identity_endpoint_refuses_bad_requests() {
    let em = emulator().await;
    let resource = format!("resource={}", urlencode(AUD));

    async fn check(url: String, headers: &[(&str, &str)], status: u16, description: &str) {
        let r = http::get(&url, headers, None).await.unwrap();
        assert_eq!(r.status, status, "{url}: {}", r.body);
        let body = r.json().unwrap();
        assert_eq!(body["error_description"], description, "{url}");
    }

    let imds = em.imds_token_url();
    let app = em.identity_endpoint();
    let header = em.identity_header().to_string();
    let md: &[(&str, &str)] = &[("Metadata", "true")];
    let ih: &[(&str, &str)] = &[("X-IDENTITY-HEADER", &header)];
    check(
        format!("{imds}?api-version=2018-02-01&{resource}"),
        &[],
        400,
        "Required metadata header not specified",
    )
    .await;
    check(
        format!("{imds}?api-version=2018-02-01&{resource}"),
        &[("Metadata", "false")],
        400,
        "Required metadata header not specified",
    )
    .await;
    check(
        format!("{imds}?api-version=2018-02-01"),
        md,
        400,
        "Required query variable 'resource' is missing",
    )
    .await;
    check(
        format!("{imds}?{resource}"),
        md,
        400,
        "Bad request. api-version was not specified in the request",
    )
    .await;
    for selector in [
        "client_id=00000000-0000-0000-0000-000000000000",
        "object_id=00000000-0000-0000-0000-000000000000",
        "msi_res_id=%2Fsubscriptions%2Fx%2FuserAssignedIdentities%2Fnope",
        // The workload app is not a managed identity of this host.
        &format!("client_id={}", em.workload_client_id()),
    ] {
        check(
            format!("{imds}?api-version=2018-02-01&{resource}&{selector}"),
            md,
            400,
            "Identity not found",
        )
        .await;
        check(
            format!("{app}?api-version=2019-08-01&{resource}&{selector}"),
            ih,
            400,
            "Identity not found",
        )
        .await;
    }
    check(
        format!("{app}?api-version=2019-08-01&{resource}"),
        &[],
        401,
        "The X-IDENTITY-HEADER header is missing or does not match IDENTITY_HEADER",
    )
    .await;
    check(
        format!("{app}?api-version=2019-08-01&{resource}"),
        &[("X-IDENTITY-HEADER", "wrong")],
        401,
        "The X-IDENTITY-HEADER header is missing or does not match IDENTITY_HEADER",
    )
    .await;
    check(
        format!(
            "{app}?api-version=2019-08-01&{resource}&client_id={}&object_id={}",
            em.client_id(),
            em.object_id()
        ),
        ih,
        400,
        "Only one of client_id, object_id and msi_res_id can be specified",
    )
    .await;
}

#[tokio::test]
async fn entra_token_endpoint_serves_workload_identity_and_client_secrets() {
    let em = emulator().await;
    let scope = format!("{AUD}/.default");
    let token_url = em.entra_token_url();
    assert_eq!(
        em.authority_host(),
        format!(
            "https://127.0.0.1:{}/",
            token_url
                .split(':')
                .nth(2)
                .unwrap()
                .split('/')
                .next()
                .unwrap()
        )
    );
    let assertion = std::fs::read_to_string(em.federated_token_file()).unwrap();
    let jwt_bearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

    async fn token(em: &Emulator, form: &[(&str, &str)]) -> http::HttpResponse {
        http::post_form(&em.entra_token_url(), form, Some(em.ca_pem()))
            .await
            .unwrap()
    }

    // Workload identity with the user-assigned identity (AZURE_CLIENT_ID) and with the app.
    for (client_id, role) in [
        (em.client_id(), em.azure_role()),
        (em.workload_client_id(), em.azure_workload_role()),
    ] {
        let r = token(
            &em,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", client_id),
                ("client_assertion", assertion.trim()),
                ("client_assertion_type", jwt_bearer),
                ("scope", &scope),
            ],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let body = r.json().unwrap();
        assert!(body["expires_in"].is_i64(), "integers: {body}");
        assert!(body["ext_expires_in"].is_i64(), "integers: {body}");
        assert_eq!(body["token_type"], "Bearer");
        let t = body["access_token"].as_str().unwrap();
        assert_eq!(claims(t)["appid"], client_id);
        assert_eq!(login(&em, role, t).await.unwrap(), role);
    }

    // Client secret of the app.
    let r = token(
        &em,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", em.workload_client_id()),
            ("client_secret", em.client_secret()),
            ("scope", &scope),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let t = r.json().unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        login(&em, em.azure_workload_role(), &t).await.unwrap(),
        em.azure_workload_role()
    );

    // Discovery documents used by MSAL-based clients.
    let conf = http::get(
        &format!(
            "{}{}/v2.0/.well-known/openid-configuration",
            em.authority_host(),
            em.tenant_id()
        ),
        &[],
        Some(em.ca_pem()),
    )
    .await
    .unwrap();
    assert_eq!(conf.status, 200);
    assert_eq!(conf.json().unwrap()["token_endpoint"], token_url);
    let keys = http::get(
        &format!(
            "{}{}/discovery/v2.0/keys",
            em.authority_host(),
            em.tenant_id()
        ),
        &[],
        Some(em.ca_pem()),
    )
    .await
    .unwrap();
    let header = jsonwebtoken::decode_header(&t).unwrap();
    assert_eq!(keys.json().unwrap()["keys"][0]["kid"], header.kid.unwrap());
}

#[tokio::test]
async fn entra_token_endpoint_refuses_bad_requests() {
    let em = emulator().await;
    let scope = format!("{AUD}/.default");
    let assertion = std::fs::read_to_string(em.federated_token_file()).unwrap();
    let expired = em.mint_federated_token(
        SystemTime::now() - Duration::from_secs(7200),
        Duration::from_secs(3600),
    );
    let jwt_bearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    let wid = em.workload_client_id().to_string();
    let secret = em.client_secret().to_string();

    async fn check(
        em: &Emulator,
        url: &str,
        form: &[(&str, &str)],
        status: u16,
        error: &str,
        code: u64,
    ) {
        let r = http::post_form(url, form, Some(em.ca_pem())).await.unwrap();
        assert_eq!(r.status, status, "{form:?}: {}", r.body);
        let body = r.json().unwrap();
        assert_eq!(body["error"], error, "{form:?}: {body}");
        assert_eq!(body["error_codes"][0], code, "{form:?}: {body}");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .starts_with(&format!("AADSTS{code}: ")),
            "{body}"
        );
    }

    let url = em.entra_token_url();
    let base = |extra: &[(&'static str, String)]| -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = vec![
            ("grant_type".into(), "client_credentials".into()),
            ("client_id".into(), wid.clone()),
            ("scope".into(), scope.clone()),
        ];
        for (k, val) in extra {
            v.retain(|(kk, _)| kk != k);
            v.push((k.to_string(), val.clone()));
        }
        v
    };
    type Form = Vec<(String, String)>;
    let cases: Vec<(Form, u16, &str, u64)> = vec![
        (
            base(&[("client_secret", "wrong".into())]),
            401,
            "invalid_client",
            7000215,
        ),
        (base(&[]), 401, "invalid_client", 7000218),
        (
            base(&[
                ("client_secret", secret.clone()),
                ("client_id", "00000000-0000-0000-0000-000000000001".into()),
            ]),
            400,
            "unauthorized_client",
            700016,
        ),
        (
            base(&[("client_secret", secret.clone()), ("scope", AUD.into())]),
            400,
            "invalid_scope",
            1002012,
        ),
        (
            base(&[
                ("client_secret", secret.clone()),
                ("grant_type", "password".into()),
            ]),
            400,
            "unsupported_grant_type",
            70003,
        ),
        (
            base(&[("client_secret", secret.clone()), ("scope", String::new())]),
            400,
            "invalid_request",
            900144,
        ),
        (
            base(&[
                ("client_assertion", expired),
                ("client_assertion_type", jwt_bearer.into()),
            ]),
            400,
            "invalid_client",
            700024,
        ),
        (
            base(&[
                ("client_assertion", "garbage".into()),
                ("client_assertion_type", jwt_bearer.into()),
            ]),
            400,
            "invalid_client",
            50027,
        ),
        (
            base(&[
                // An Entra access token is not a federated credential of this app.
                (
                    "client_assertion",
                    em.mint_entra_token(MintOptions::default()),
                ),
                ("client_assertion_type", jwt_bearer.into()),
            ]),
            400,
            "invalid_client",
            700211,
        ),
        (
            base(&[("client_assertion", assertion.trim().into())]),
            400,
            "invalid_request",
            90058,
        ),
    ];
    for (form, status, error, code) in &cases {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        check(&em, &url, &form, *status, error, *code).await;
    }
    // Unknown tenant.
    let other = url.replace(em.tenant_id(), "11111111-2222-3333-4444-555555555555");
    check(
        &em,
        &other,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &wid),
            ("client_secret", &secret),
            ("scope", &scope),
        ],
        400,
        "invalid_request",
        90002,
    )
    .await;
}
