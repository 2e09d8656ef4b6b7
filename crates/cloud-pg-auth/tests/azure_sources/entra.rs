//! Entra token endpoint (client secret, workload identity), through an injected transport.

use std::path::Path;
use std::time::Duration;

use cloud_pg_auth::azure::{AzureCloud, AzureCredentialKind, AzureOptions, AzureSource};
use cloud_pg_auth::{Env, Error, TokenErrorKind, TokenSource};

use crate::reroute::Reroute;
use crate::server::{Canned, Server, reply};
use crate::support::{
    CLIENT_SECRET, Want, at, check_result, entra_ok, fails, jwt, now_secs, scratch_dir,
    secret_options, sp_jwt,
};

#[tokio::test]
async fn client_secret_credential() {
    use TokenErrorKind::*;
    let now = now_secs();
    let aadsts = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}"#;
    let cases: Vec<(&str, Canned, Want)> = vec![
        (
            "ok: integer expires_in, the jwt exp is earlier",
            entra_ok(3599, &sp_jwt(now + 1800)),
            Want::Token {
                expires: now + 1800,
                user: None,
            },
        ),
        (
            "401 invalid client secret",
            reply(401, aadsts),
            fails(
                Rejected,
                "entra refused the credential (HTTP 401); check AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET",
            ),
        ),
        (
            "the cause keeps entra's description",
            reply(400, aadsts),
            fails(Rejected, "AADSTS7000215: Invalid client secret provided."),
        ),
        (
            "429 with retry-after",
            reply(
                429,
                r#"{"error":"temporarily_unavailable","error_description":"AADSTS50196"}"#,
            )
            .header("Retry-After", "3"),
            Want::Fails {
                kind: Throttled,
                fragment: "throttling token requests (HTTP 429)",
                retry_after: Some(Duration::from_secs(3)),
            },
        ),
        (
            "500 with a json body",
            reply(
                500,
                r#"{"error":"server_error","error_description":"AADSTS50000"}"#,
            ),
            fails(Transient, "the token endpoint failed (HTTP 500)"),
        ),
        (
            "502 with an html body",
            reply(502, "<html>bad gateway</html>"),
            fails(Transient, "the token endpoint failed (HTTP 502)"),
        ),
        (
            "malformed json",
            reply(200, "{\"token_type\":"),
            fails(Transient, "not a token response"),
        ),
        (
            "missing fields",
            reply(200, r#"{"token_type":"Bearer"}"#),
            fails(Transient, "empty token"),
        ),
        (
            "an expired token",
            entra_ok(3599, &sp_jwt(now - 10)),
            fails(Transient, "expired at"),
        ),
    ];
    for (label, response, want) in cases {
        let server = Server::start(vec![response]);
        let (transport, original) = Reroute::to(&server);
        let source = AzureSource::with_http_client(&secret_options("public"), transport).unwrap();
        check_result(label, source.fetch().await, &want);
        assert_eq!(
            *original.lock().unwrap(),
            vec![
                "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
                    .to_string()
            ],
            "{label}"
        );
        let requests = server.requests();
        assert_eq!(requests.len(), 1, "{label}: no sdk retries");
        let form = requests[0].form();
        assert_eq!(requests[0].method, "POST");
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["client_id"], "11111111-2222-3333-4444-555555555555");
        assert_eq!(form["client_secret"], CLIENT_SECRET);
        assert_eq!(
            form["scope"],
            "https://ossrdbms-aad.database.windows.net/.default"
        );
    }
}

/// Every fetch asks the token endpoint: azure_identity's own cache would answer a refresh ahead
/// of expiry with the token it already holds, until 5 minutes before that token expires.
#[tokio::test]
async fn every_fetch_asks_the_endpoint() {
    let now = now_secs();
    let server = Server::start(vec![
        entra_ok(3599, &sp_jwt(now + 3000)),
        entra_ok(3599, &sp_jwt(now + 3300)),
    ]);
    let (transport, _) = Reroute::to(&server);
    let source = AzureSource::with_http_client(&secret_options("public"), transport).unwrap();
    let first = source.fetch().await.unwrap();
    let second = source.fetch().await.unwrap();
    assert_eq!(
        server.requests().len(),
        2,
        "the second fetch reached the endpoint"
    );
    assert!(
        second.expires_at() > first.expires_at(),
        "the second fetch returned the new token"
    );
}

#[tokio::test]
async fn sovereign_clouds_use_their_authority_and_scope() {
    for (cloud, authority, scope) in [
        (
            "usgov",
            "https://login.microsoftonline.us",
            "https://ossrdbms-aad.database.usgovcloudapi.net/.default",
        ),
        (
            "china",
            "https://login.chinacloudapi.cn",
            "https://ossrdbms-aad.database.chinacloudapi.cn/.default",
        ),
    ] {
        let token = jwt(serde_json::json!({
            "aud": scope.trim_end_matches("/.default"),
            "exp": now_secs() + 3599,
        }));
        let server = Server::start(vec![entra_ok(3599, &token)]);
        let (transport, original) = Reroute::to(&server);
        let source = AzureSource::with_http_client(&secret_options(cloud), transport).unwrap();
        source.fetch().await.unwrap();
        assert_eq!(
            original.lock().unwrap()[0],
            format!("{authority}/contoso.onmicrosoft.com/oauth2/v2.0/token")
        );
        assert_eq!(server.requests()[0].form()["scope"], scope);
    }
}

#[tokio::test]
async fn workload_identity() {
    let dir = scratch_dir("wi");
    let token_file = dir.join("azure-identity-token");
    std::fs::write(&token_file, "federated.assertion.jwt").unwrap();
    let env = |file: &Path| {
        Env::from_pairs([
            ("AZURE_FEDERATED_TOKEN_FILE", file.display().to_string()),
            ("AZURE_CLIENT_ID", "wi-client".into()),
            ("AZURE_TENANT_ID", "wi-tenant".into()),
            (
                "AZURE_AUTHORITY_HOST",
                "https://login.emulator.test/".into(),
            ),
        ])
    };
    let now = now_secs();
    let server = Server::start(vec![entra_ok(3599, &sp_jwt(now + 3599))]);
    let (transport, original) = Reroute::to(&server);
    let options = AzureOptions::from_env(&env(&token_file)).unwrap();
    let source = AzureSource::with_http_client(&options, transport).unwrap();
    assert_eq!(
        source.credential_kind(),
        Some(AzureCredentialKind::WorkloadIdentity)
    );
    let token = source.fetch().await.unwrap();
    assert_eq!(token.expires_at(), Some(at(now + 3599)));
    assert_eq!(
        token.details().get_ids(),
        vec![
            "11111111-2222-3333-4444-555555555555".to_string(),
            "66666666-7777-8888-9999-000000000000".to_string()
        ]
    );
    assert_eq!(
        original.lock().unwrap()[0],
        "https://login.emulator.test/wi-tenant/oauth2/v2.0/token"
    );
    let form = server.requests()[0].form();
    assert_eq!(form["client_assertion"], "federated.assertion.jwt");
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert_eq!(form["client_id"], "wi-client");
    assert_eq!(form["scope"], AzureCloud::Public.scope());

    // A missing token file is a start-up error that names the variable.
    let missing = AzureOptions::from_env(&env(&dir.join("absent"))).unwrap();
    match AzureSource::new(&missing) {
        Err(Error::Config(e)) => {
            assert_eq!(e.setting(), "AZURE_FEDERATED_TOKEN_FILE");
            assert!(e.message().contains("absent"), "{e}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
