//! Entra tokens: identity endpoints and token-checked logins.

mod common;

use std::time::{Duration, SystemTime};

use cloud_pg_auth_testkit::http;
use cloud_pg_auth_testkit::{Cloud, Emulator, EmulatorOptions, IdentityKind, MintOptions};
use common::{AUD, claims, emulator, login, run_psql, urlencode};

async fn app_service_token(em: &Emulator, query: &str) -> http::HttpResponse {
    let url = format!("{}?api-version=2019-08-01&{query}", em.identity_endpoint());
    http::get(&url, &[("X-IDENTITY-HEADER", em.identity_header())], None)
        .await
        .unwrap()
}

async fn imds_token(em: &Emulator, query: &str) -> http::HttpResponse {
    let url = format!("{}?api-version=2018-02-01&{query}", em.imds_token_url());
    http::get(&url, &[("Metadata", "true")], None)
        .await
        .unwrap()
}

#[tokio::test]
async fn managed_identity_tokens_log_in_as_the_mapped_role() {
    let em = emulator().await;
    let resource = format!("resource={}", urlencode(AUD));

    // App Service protocol, user-assigned identity by client id: every field a string.
    let r = app_service_token(&em, &format!("{resource}&client_id={}", em.client_id())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json().unwrap();
    for field in [
        "access_token",
        "client_id",
        "expires_in",
        "expires_on",
        "ext_expires_in",
        "not_before",
        "resource",
        "token_type",
    ] {
        assert!(body[field].is_string(), "{field} must be a string: {body}");
    }
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["resource"], AUD);
    assert_eq!(body["client_id"], em.client_id());
    let token = body["access_token"].as_str().unwrap();
    let c = claims(token);
    assert_eq!(c["aud"], AUD);
    assert_eq!(c["oid"], em.object_id());
    assert_eq!(c["sub"], em.object_id());
    assert_eq!(c["appid"], em.client_id());
    assert_eq!(c["tid"], em.tenant_id());
    assert_eq!(c["idtyp"], "app");
    assert_eq!(c["ver"], "1.0");
    assert_eq!(
        c["iss"],
        format!("https://sts.windows.net/{}/", em.tenant_id())
    );
    let mirid = c["xms_mirid"].as_str().unwrap();
    assert!(mirid.contains("/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"));
    assert_eq!(mirid.rsplit('/').next(), Some(em.azure_role()));
    assert_eq!(
        body["expires_on"].as_str().unwrap(),
        c["exp"].to_string(),
        "expires_on is the token's exp"
    );
    assert_eq!(
        login(&em, em.azure_role(), token).await.unwrap(),
        em.azure_role()
    );

    // Same identity selected by object id and by resource id, on both protocols.
    for query in [
        format!("{resource}&principal_id={}", em.object_id()),
        format!("{resource}&object_id={}", em.object_id()),
        format!("{resource}&mi_res_id={}", urlencode(em.resource_id())),
    ] {
        let r = app_service_token(&em, &query).await;
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        assert_eq!(
            claims(r.json().unwrap()["access_token"].as_str().unwrap())["oid"],
            em.object_id()
        );
    }
    for query in [
        format!("{resource}&client_id={}", em.client_id()),
        format!("{resource}&object_id={}", em.object_id()),
        format!("{resource}&msi_res_id={}", urlencode(em.resource_id())),
    ] {
        let r = imds_token(&em, &query).await;
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        let token = r.json().unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            login(&em, em.azure_role(), &token).await.unwrap(),
            em.azure_role()
        );
    }

    // No selector: the system-assigned identity, mapped to its own role.
    let r = imds_token(&em, &resource).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.json().unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        claims(&token)["oid"],
        em.object_id_of(IdentityKind::SystemAssigned)
    );
    assert_eq!(
        login(&em, em.azure_system_role(), &token).await.unwrap(),
        em.azure_system_role()
    );

    // psql with the token as PGPASSWORD (verify-full against the emulator's CA).
    let (ok, out, err) = run_psql(
        &em,
        &[("PGUSER", em.azure_system_role()), ("PGPASSWORD", &token)],
        "SELECT current_user",
    )
    .await;
    assert!(ok, "psql failed: {err}");
    assert_eq!(out, em.azure_system_role());

    // Minted user token: UPN-style role and user claims.
    let user_token = em.mint_entra_token(MintOptions {
        identity: IdentityKind::User,
        ..MintOptions::default()
    });
    let c = claims(&user_token);
    for claim in ["upn", "unique_name", "preferred_username"] {
        assert_eq!(c[claim], em.azure_user_role());
    }
    assert_eq!(c["scp"], "user_impersonation");
    assert_eq!(c["idtyp"], "user");
    assert!(c["name"].is_string());
    assert_eq!(
        login(&em, em.azure_user_role(), &user_token).await.unwrap(),
        em.azure_user_role()
    );
}

#[tokio::test]
async fn bad_entra_tokens_are_refused_with_the_server_texts() {
    let em = emulator().await;
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    let mint = |o: MintOptions| em.mint_entra_token(o);
    let audience_text = format!(
        "The access token does not have a valid audience claim. Please acquire a new token for the resource \"{AUD}\"."
    );

    async fn check(em: &Emulator, case: &str, user: &str, token: &str, code: &str, message: &str) {
        match login(em, user, token).await {
            Ok(u) => panic!("{case}: logged in as {u}"),
            Err((c, m)) => {
                assert_eq!(c, code, "{case}: {m}");
                assert_eq!(m, message, "{case}");
            }
        }
    }

    let uami = em.azure_role().to_string();
    let user = em.azure_user_role().to_string();
    let cases: Vec<(&str, String, String, &str, String)> = vec![
        (
            "expired",
            uami.clone(),
            mint(MintOptions {
                issued_at: Some(now - 2 * hour),
                lifetime: Some(hour),
                ..MintOptions::default()
            }),
            "28000",
            "The access token has expired. Please acquire a new token and retry.".into(),
        ),
        (
            "not yet valid",
            uami.clone(),
            mint(MintOptions {
                not_before: Some(now + hour),
                ..MintOptions::default()
            }),
            "28000",
            "The access token is not yet valid. Please acquire a new token and retry.".into(),
        ),
        (
            "other audience",
            uami.clone(),
            mint(MintOptions {
                audience: Some("https://management.azure.com".into()),
                ..MintOptions::default()
            }),
            "28000",
            audience_text.clone(),
        ),
        (
            "audience with a trailing slash",
            uami.clone(),
            mint(MintOptions {
                audience: Some(format!("{AUD}/")),
                ..MintOptions::default()
            }),
            "28000",
            audience_text.clone(),
        ),
        (
            "us government audience",
            uami.clone(),
            mint(MintOptions {
                audience: Some(Cloud::UsGov.audience().into()),
                ..MintOptions::default()
            }),
            "28000",
            audience_text.clone(),
        ),
        (
            "signed by another key",
            uami.clone(),
            mint(MintOptions {
                wrong_key: true,
                ..MintOptions::default()
            }),
            "28000",
            "An error occurred while validating the access token. Please acquire a new token and retry.".into(),
        ),
        (
            "another tenant",
            uami.clone(),
            mint(MintOptions {
                tenant_id: Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into()),
                ..MintOptions::default()
            }),
            "28000",
            "The access token was issued by a tenant that is not associated with this server. Please acquire a new token from the right tenant and retry.".into(),
        ),
        (
            "unmapped identity for a mapped role",
            uami.clone(),
            mint(MintOptions {
                identity: IdentityKind::Unmapped,
                ..MintOptions::default()
            }),
            "28000",
            format!("Service principal oid mismatch for role[{uami}]"),
        ),
        (
            "unmapped identity under its own name",
            "pgauth-unmapped".into(),
            mint(MintOptions {
                identity: IdentityKind::Unmapped,
                ..MintOptions::default()
            }),
            "28P01",
            "password authentication failed for user \"pgauth-unmapped\"".into(),
        ),
        (
            "the system identity for the user-assigned role",
            uami.clone(),
            mint(MintOptions {
                identity: IdentityKind::SystemAssigned,
                ..MintOptions::default()
            }),
            "28000",
            format!("Service principal oid mismatch for role[{uami}]"),
        ),
        (
            "an app token for a user role",
            user.clone(),
            mint(MintOptions::default()),
            "28000",
            format!("Service Principals cannot generate AAD_AUTH_TOKENTYPE_APP_USER tokens for role[{user}]"),
        ),
        (
            "a user token for a service role",
            uami.clone(),
            mint(MintOptions {
                identity: IdentityKind::User,
                ..MintOptions::default()
            }),
            "28000",
            format!("User oid mismatch for role[{uami}]"),
        ),
        (
            "not a jwt",
            uami.clone(),
            "not-a-token".into(),
            "28000",
            "The access token has invalid format. Please ensure the token is passed exactly as returned by the authentication endpoint and retry.".into(),
        ),
        (
            "the client id instead of a token",
            uami.clone(),
            em.client_id().into(),
            "28000",
            "The access token has invalid format. Please ensure the token is passed exactly as returned by the authentication endpoint and retry.".into(),
        ),
        (
            "a valid token for a role that does not exist",
            "nobody".into(),
            mint(MintOptions::default()),
            "28P01",
            "password authentication failed for user \"nobody\"".into(),
        ),
        (
            "a token for the password role",
            em.password_role().into(),
            mint(MintOptions::default()),
            "28P01",
            format!("password authentication failed for user \"{}\"", em.password_role()),
        ),
    ];
    for (case, user, token, code, message) in &cases {
        check(&em, case, user, token, code, message).await;
    }
    // A token whose payload was altered no longer verifies.
    let good = mint(MintOptions::default());
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    let forged = {
        use base64::Engine as _;
        let mut c = claims(&good);
        c["oid"] = serde_json::Value::String(em.object_id_of(IdentityKind::Workload).into());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.to_string())
    };
    parts[1] = forged;
    check(
        &em,
        "forged payload",
        em.azure_workload_role(),
        &parts.join("."),
        "28000",
        "An error occurred while validating the access token. Please acquire a new token and retry.",
    )
    .await;

    let stats = em.stats();
    for reason in [
        "entra_expired",
        "entra_not_yet_valid",
        "entra_audience",
        "entra_signature",
        "entra_tenant",
        "entra_oid_mismatch",
        "entra_token_type",
        "entra_format",
        "unknown_role",
        "password",
    ] {
        assert!(
            stats.logins_rejected.get(reason).copied().unwrap_or(0) > 0,
            "{reason} not counted: {:?}",
            stats.logins_rejected
        );
    }
    assert_eq!(stats.logins_accepted, 0);
}

#[tokio::test]
async fn the_us_government_cloud_uses_its_own_audience() {
    let em = Emulator::start(EmulatorOptions {
        cloud: Cloud::UsGov,
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let gov = Cloud::UsGov.audience();
    let r = app_service_token(
        &em,
        &format!("resource={}&client_id={}", urlencode(gov), em.client_id()),
    )
    .await;
    let token = r.json().unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        claims(&token)["iss"],
        format!("https://sts.usgovcloudapi.net/{}/", em.tenant_id())
    );
    assert_eq!(
        login(&em, em.azure_role(), &token).await.unwrap(),
        em.azure_role()
    );
    let public = em.mint_entra_token(MintOptions {
        audience: Some(AUD.into()),
        ..MintOptions::default()
    });
    assert_eq!(
        login(&em, em.azure_role(), &public).await.unwrap_err(),
        (
            "28000".to_string(),
            format!(
                "The access token does not have a valid audience claim. Please acquire a new token for the resource \"{gov}\"."
            )
        )
    );
    em.stop().await.unwrap();
}
