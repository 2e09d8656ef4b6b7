//! Managed identity: the App Service protocol over 127.0.0.1, and IMDS through an injected
//! transport that reroutes the request built for 169.254.169.254 to the local server.

use std::time::Duration;

use cloud_pg_auth::azure::{
    AzureCloud, AzureCredentialKind, AzureOptions, AzureSource, UserAssigned,
};
use cloud_pg_auth::{Env, TokenErrorKind, TokenSource};

use crate::reroute::Reroute;
use crate::server::{Canned, Server, reply};
use crate::support::{
    MI_HEADER, Want, app_service_options, check_result, fails, mi_jwt, now_secs, scratch_dir,
};

async fn check_app_service(
    label: &str,
    responses: Vec<Canned>,
    timeout: Option<Duration>,
    want: Want,
) {
    let server = Server::start(responses);
    let mut options = app_service_options(&server);
    if let Some(timeout) = timeout {
        options = options.timeout(timeout);
    }
    let source = AzureSource::new(&options).unwrap();
    let got = source.fetch().await;
    check_result(label, got, &want);
    let requests = server.requests();
    assert_eq!(
        requests.len(),
        1,
        "{label}: one fetch, one request, no retries"
    );
    let r = &requests[0];
    assert_eq!(r.method, "GET", "{label}");
    assert_eq!(r.path, "/msi/token", "{label}");
    assert_eq!(
        r.headers.get("x-identity-header").map(String::as_str),
        Some(MI_HEADER)
    );
    assert_eq!(
        r.query.get("api-version").map(String::as_str),
        Some("2019-08-01")
    );
    assert_eq!(
        r.query.get("resource").map(String::as_str),
        Some("https://ossrdbms-aad.database.windows.net"),
        "{label}"
    );
}

#[tokio::test]
async fn app_service_managed_identity() {
    use TokenErrorKind::*;
    let now = now_secs();
    let later = now + 86_400;
    let ok = |expires_on: serde_json::Value, token: &str| {
        reply(
            200,
            serde_json::json!({
                "access_token": token,
                "expires_on": expires_on,
                "resource": "https://ossrdbms-aad.database.windows.net",
                "token_type": "Bearer",
                "client_id": "0a1b2c3d-4e5f-6789-abcd-ef0123456789",
            })
            .to_string(),
        )
    };
    let user = Some("orders-api");
    let cases: Vec<(&str, Vec<Canned>, Option<Duration>, Want)> = vec![
        (
            "string expires_on",
            vec![ok(later.to_string().into(), &mi_jwt(later + 60))],
            None,
            Want::Token {
                expires: later,
                user,
            },
        ),
        (
            "numeric expires_on",
            vec![ok(later.into(), &mi_jwt(later + 60))],
            None,
            Want::Token {
                expires: later,
                user,
            },
        ),
        (
            "the jwt exp is earlier and wins",
            vec![ok(later.to_string().into(), &mi_jwt(now + 600))],
            None,
            Want::Token {
                expires: now + 600,
                user,
            },
        ),
        (
            "an opaque token is refused: entra access tokens are jwts",
            vec![ok(later.to_string().into(), "opaque-token")],
            None,
            fails(Config, "the token is not a jwt"),
        ),
        (
            "400 identity not found",
            vec![reply(
                400,
                r#"{"error":"invalid_request","error_description":"Identity not found"}"#,
            )],
            None,
            fails(
                Rejected,
                "(HTTP 400: Identity not found (invalid_request)); check that a system-assigned identity is assigned to this resource",
            ),
        ),
        (
            "429 with retry-after",
            vec![reply(429, r#"{"error":"too_many_requests"}"#).header("Retry-After", "7")],
            None,
            Want::Fails {
                kind: Throttled,
                fragment: "throttling token requests (HTTP 429: too_many_requests)",
                retry_after: Some(Duration::from_secs(7)),
            },
        ),
        (
            "500",
            vec![reply(500, "<html>upstream failure</html>")],
            None,
            fails(Transient, "the managed identity endpoint failed (HTTP 500)"),
        ),
        (
            "503 with retry-after",
            vec![reply(503, "").header("retry-after", "2")],
            None,
            Want::Fails {
                kind: Transient,
                fragment: "HTTP 503",
                retry_after: Some(Duration::from_secs(2)),
            },
        ),
        (
            "malformed json",
            vec![reply(200, r#"{"access_token": "#)],
            None,
            fails(Transient, "body that is not json"),
        ),
        (
            "missing access_token",
            vec![reply(200, format!(r#"{{"expires_on":"{later}"}}"#))],
            None,
            fails(Transient, "has no access_token"),
        ),
        (
            "missing expires_on",
            vec![reply(
                200,
                r#"{"access_token":"abc","token_type":"Bearer"}"#,
            )],
            None,
            fails(Transient, "no usable expires_on or expires_in"),
        ),
        (
            "an expired token",
            vec![ok((now - 60).to_string().into(), &mi_jwt(now - 60))],
            None,
            fails(Transient, "returned a token that expired at"),
        ),
        (
            "a slow endpoint",
            vec![ok(later.into(), "late").delayed(Duration::from_secs(30))],
            Some(Duration::from_millis(300)),
            fails(Transient, "no token within 300ms"),
        ),
    ];
    for (label, responses, timeout, want) in cases {
        check_app_service(label, responses, timeout, want).await;
    }
}

async fn check_user_assigned(id: UserAssigned, param: &str, value: &str) {
    let later = now_secs() + 3600;
    let server = Server::start(vec![reply(
        200,
        format!(
            r#"{{"access_token":"{}","expires_on":"{later}","token_type":"Bearer","resource":"r"}}"#,
            mi_jwt(later)
        ),
    )]);
    let options = app_service_options(&server).managed_identity(id.clone());
    let source = AzureSource::new(&options).unwrap();
    source.fetch().await.unwrap();
    let r = &server.requests()[0];
    assert_eq!(
        r.query.get(param).map(String::as_str),
        Some(value),
        "{id:?}"
    );
    assert_eq!(r.query.len(), 3, "{id:?}: {:?}", r.query);
    let info = source.info();
    assert_eq!(info.get_credential_kind(), Some("managed-identity"));
    assert!(info.get_identity().unwrap().contains(value));
}

#[tokio::test]
async fn user_assigned_identities_use_the_app_service_parameter_names() {
    check_user_assigned(UserAssigned::ClientId("cid".into()), "client_id", "cid").await;
    check_user_assigned(UserAssigned::ObjectId("oid".into()), "principal_id", "oid").await;
    check_user_assigned(
        UserAssigned::ResourceId("/subscriptions/s/r/ua".into()),
        "mi_res_id",
        "/subscriptions/s/r/ua",
    )
    .await;
}

#[tokio::test]
async fn sources_report_what_they_are() {
    let server = Server::start(vec![reply(500, "")]);
    let options = app_service_options(&server).cloud(AzureCloud::UsGov);
    let source = AzureSource::new(&options).unwrap();
    assert_eq!(source.scope(), AzureCloud::UsGov.scope());
    assert_eq!(
        source.credential_kind(),
        Some(AzureCredentialKind::ManagedIdentity)
    );
    let info = source.info();
    assert_eq!(info.get_method(), "azure");
    assert_eq!(info.get_cloud(), Some("usgov"));
    assert_eq!(info.get_identity(), Some("system-assigned (app service)"));
    assert_eq!(info.get_endpoint(), Some(server.url("/msi/token").as_str()));
    let printed = format!("{source:?} {source:#?} {options:?}");
    assert!(!printed.contains(MI_HEADER), "{printed}");
    // The scope of the cloud goes on the wire, as a v1 resource.
    let _ = source.fetch().await;
    assert_eq!(
        server.requests()[0]
            .query
            .get("resource")
            .map(String::as_str),
        Some("https://ossrdbms-aad.database.usgovcloudapi.net")
    );
}

// IMDS, through an injected transport.

#[tokio::test]
async fn imds_managed_identity_through_an_injected_transport() {
    use TokenErrorKind::*;
    let later = now_secs() + 86_000;
    let imds_ok = reply(
        200,
        // IMDS sends every field as a string.
        serde_json::json!({
            "access_token": mi_jwt(later),
            "client_id": "0a1b2c3d-4e5f-6789-abcd-ef0123456789",
            "expires_in": "86399",
            "expires_on": later.to_string(),
            "ext_expires_in": "86399",
            "not_before": (later - 86_399).to_string(),
            "resource": "https://ossrdbms-aad.database.windows.net",
            "token_type": "Bearer",
        })
        .to_string(),
    );
    let cases = vec![
        (
            "ok",
            imds_ok,
            Want::Token {
                expires: later,
                user: Some("orders-api"),
            },
        ),
        (
            "identity not found",
            reply(
                400,
                r#"{"error":"invalid_request","error_description":"Identity not found"}"#,
            ),
            fails(
                Rejected,
                "the user-assigned identity with object id oid-9 is assigned",
            ),
        ),
        (
            "410 while imds updates",
            reply(410, ""),
            fails(Transient, "not ready (HTTP 410)"),
        ),
    ];
    for (label, response, want) in cases {
        let server = Server::start(vec![response]);
        let (transport, original) = Reroute::to(&server);
        let options = AzureOptions::default()
            .credential(AzureCredentialKind::ManagedIdentity)
            .managed_identity(UserAssigned::ObjectId("oid-9".into()));
        let source = AzureSource::with_http_client(&options, transport).unwrap();
        assert_eq!(
            source.info().get_endpoint(),
            Some("http://169.254.169.254/metadata/identity/oauth2/token")
        );
        check_result(label, source.fetch().await, &want);
        assert_eq!(
            *original.lock().unwrap(),
            vec!["http://169.254.169.254/metadata/identity/oauth2/token".to_string()]
        );
        let r = &server.requests()[0];
        assert_eq!(r.headers.get("metadata").map(String::as_str), Some("true"));
        assert_eq!(
            r.query.get("api-version").map(String::as_str),
            Some("2018-02-01")
        );
        assert_eq!(r.query.get("object_id").map(String::as_str), Some("oid-9"));
        assert!(!r.headers.contains_key("x-identity-header"));
    }
}

#[tokio::test]
async fn auto_uses_imds_only_when_opted_in() {
    let later = now_secs() + 3600;
    let server = Server::start(vec![reply(
        200,
        format!(
            r#"{{"access_token":"{}","expires_on":"{later}"}}"#,
            mi_jwt(later)
        ),
    )]);
    let (transport, original) = Reroute::to(&server);
    let empty = scratch_dir("auto-imds");
    let env = |opt_in: &str| {
        Env::from_pairs([
            ("PGAUTH_AZURE_MANAGED_IDENTITY", opt_in.to_string()),
            ("PATH", empty.display().to_string()),
        ])
    };
    let refused = AzureSource::with_http_client(
        &AzureOptions::from_env(&env("0")).unwrap(),
        transport.clone(),
    )
    .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("no azure credential is configured"),
        "{refused}"
    );
    let source =
        AzureSource::with_http_client(&AzureOptions::from_env(&env("1")).unwrap(), transport)
            .unwrap();
    assert_eq!(
        source.credential_kind(),
        Some(AzureCredentialKind::ManagedIdentity)
    );
    source.fetch().await.unwrap();
    assert_eq!(original.lock().unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(&empty);
}
