//! Size limits: what comes from outside is read up to a limit, never whole.

use cloud_pg_auth::azure::{AzureOptions, AzureSource};
use cloud_pg_auth::{Env, Error, TokenErrorKind, TokenSource};

use crate::reroute::Reroute;
use crate::server::{Canned, Server, reply};
use crate::support::{
    Want, app_service_options, check_result, entra_ok, fails, mi_jwt, now_secs, scratch_dir,
    secret_options, sp_jwt,
};

const MIB: usize = 1 << 20;

#[tokio::test]
async fn oversized_answers_are_refused_at_one_mebibyte() {
    use TokenErrorKind::*;
    let later = now_secs() + 3600;
    // Valid json past the limit, so that reading it whole would parse.
    let huge_token = |size: usize| {
        serde_json::json!({
            "access_token": mi_jwt(later),
            "expires_on": later,
            "padding": "x".repeat(size),
        })
        .to_string()
    };
    let too_large = "the response body is larger than 1 MiB, the most this client reads";
    let cases: Vec<(&str, Canned, Want)> = vec![
        (
            "a declared content-length over the limit",
            reply(200, huge_token(2 * MIB)),
            fails(Transient, too_large),
        ),
        (
            "a body without content-length that runs past the limit",
            reply(200, huge_token(16 * MIB)).close_delimited(),
            fails(Transient, too_large),
        ),
        (
            "an error body past the limit",
            reply(500, "x".repeat(16 * MIB)).close_delimited(),
            fails(Transient, too_large),
        ),
        (
            "just under the limit is read",
            reply(200, huge_token(MIB - 4096)).close_delimited(),
            Want::Token {
                expires: later,
                user: Some("orders-api"),
            },
        ),
    ];
    for (label, response, want) in cases {
        let server = Server::start(vec![response.clone()]);
        let source = AzureSource::new(&app_service_options(&server)).unwrap();
        check_result(
            &format!("managed identity: {label}"),
            source.fetch().await,
            &want,
        );
        if let Want::Fails { .. } = want {
            let server = Server::start(vec![response]);
            let (transport, _) = Reroute::to(&server);
            let source =
                AzureSource::with_http_client(&secret_options("public"), transport).unwrap();
            check_result(
                &format!("client secret: {label}"),
                source.fetch().await,
                &want,
            );
        }
    }
}

#[tokio::test]
async fn an_oversized_federated_token_file_is_refused_at_64_kib() {
    let dir = scratch_dir("wi-limit");
    let token_file = dir.join("azure-identity-token");
    let options = || {
        AzureOptions::from_env(&Env::from_pairs([
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                token_file.display().to_string(),
            ),
            ("AZURE_CLIENT_ID", "wi-client".into()),
            ("AZURE_TENANT_ID", "wi-tenant".into()),
        ]))
        .unwrap()
    };
    let limit = 64 << 10;

    // At start-up.
    std::fs::write(&token_file, "a".repeat(limit + 1)).unwrap();
    match AzureSource::new(&options()) {
        Err(Error::Config(e)) => {
            assert_eq!(e.setting(), "AZURE_FEDERATED_TOKEN_FILE");
            assert!(e.message().contains("is larger than 64 KiB"), "{e}");
        }
        other => panic!("unexpected {other:?}"),
    }

    // At a fetch, after the file grew: refused before anything is sent. (Two sources: the
    // credential caches its token, so a second fetch of one source would not read the file.)
    std::fs::write(&token_file, "a".repeat(limit)).unwrap();
    let server = Server::start(vec![entra_ok(3599, &sp_jwt(now_secs() + 3599))]);
    let (transport, _) = Reroute::to(&server);
    let accepted = AzureSource::with_http_client(&options(), transport.clone()).unwrap();
    let grown = AzureSource::with_http_client(&options(), transport).unwrap();
    accepted.fetch().await.unwrap();
    assert_eq!(server.requests()[0].form()["client_assertion"].len(), limit);
    std::fs::write(&token_file, "a".repeat(limit + 1)).unwrap();
    check_result(
        "a grown file",
        grown.fetch().await,
        &fails(
            TokenErrorKind::Transient,
            "the federated token file is larger than 64 KiB, the most this client reads; check AZURE_FEDERATED_TOKEN_FILE",
        ),
    );
    assert_eq!(
        server.requests().len(),
        1,
        "nothing sent for the grown file"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
