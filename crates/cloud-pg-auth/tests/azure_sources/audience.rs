//! The audience: a token for another service never leaves the source.

use std::sync::{Arc, Mutex};

use cloud_pg_auth::azure::{AzureCloud, AzureSource};
use cloud_pg_auth::{Error, SourceInfo, TokenErrorKind, TokenSource};

use crate::reroute::Reroute;
use crate::server::{Server, reply};
use crate::support::{
    Fixed, Want, app_service_options, check_result, entra_ok, fails, jwt, now_secs, secret_options,
};

const ARM: &str = "https://management.azure.com";
const GRAPH: &str = "https://graph.microsoft.com";

fn jwt_for(aud: Option<&str>, exp: u64) -> String {
    let mut claims = serde_json::json!({
        "appid": "0a1b2c3d-4e5f-6789-abcd-ef0123456789",
        "idtyp": "app",
        "exp": exp,
    });
    if let Some(aud) = aud {
        claims["aud"] = aud.into();
    }
    jwt(claims)
}

#[tokio::test]
async fn tokens_for_other_audiences_are_refused_at_fetch_time() {
    use TokenErrorKind::*;
    let later = now_secs() + 3600;
    let cases: Vec<(&str, String, Want)> = vec![
        (
            "an arm token",
            jwt_for(Some(ARM), later),
            fails(
                Config,
                "the token's audience (aud) is https://management.azure.com, not https://ossrdbms-aad.database.windows.net",
            ),
        ),
        (
            "a graph token",
            jwt_for(Some(GRAPH), later),
            fails(Config, "unset PGAUTH_AZURE_SCOPE"),
        ),
        (
            "another cloud's database token",
            jwt_for(
                Some("https://ossrdbms-aad.database.chinacloudapi.cn"),
                later,
            ),
            fails(Config, "PGAUTH_AZURE_SCOPE"),
        ),
        (
            "a token without aud",
            jwt_for(None, later),
            fails(Config, "no audience (aud) claim"),
        ),
        (
            "a token that is not a jwt",
            "definitely-not-a-jwt".into(),
            fails(Config, "the token is not a jwt"),
        ),
        (
            "the database's own token",
            jwt_for(Some(AzureCloud::Public.audience()), later),
            Want::Token {
                expires: later,
                user: None,
            },
        ),
    ];
    for (label, token, want) in cases {
        let answer = serde_json::json!({ "access_token": token, "expires_on": later });
        let server = Server::start(vec![reply(200, answer.to_string())]);
        let source = AzureSource::new(&app_service_options(&server)).unwrap();
        check_result(
            &format!("managed identity: {label}"),
            source.fetch().await,
            &want,
        );

        // The same token from the entra token endpoint (client secret).
        let server = Server::start(vec![entra_ok(3600, &token)]);
        let (transport, _) = Reroute::to(&server);
        let source = AzureSource::with_http_client(&secret_options("public"), transport).unwrap();
        check_result(
            &format!("client secret: {label}"),
            source.fetch().await,
            &want,
        );
    }
}

/// The source is asked for the database scope and a caller-supplied credential answers with an
/// ARM token: the connector fails with an error naming the setting, and the emulator's
/// PostgreSQL front sees no login attempt at all; the database's own token then logs in
/// through the same path, so the front was reachable.
#[tokio::test]
async fn a_token_for_another_audience_never_reaches_postgres() {
    use cloud_pg_auth::engine::CredentialConfig;
    use cloud_pg_auth::{AuthMethod, AuthOptions, RootCerts, Settings, SslMode};
    use cloud_pg_auth_testkit::{Emulator, EmulatorOptions, MintOptions};

    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let settings = Settings::default()
        .host(emulator.pg_host())
        .port(emulator.pg_port())
        .user(emulator.azure_role())
        .dbname(emulator.database())
        .method(AuthMethod::Custom)
        .ssl_mode(SslMode::VerifyFull)
        .root_certs(RootCerts::File(emulator.ca_path().to_path_buf()));
    let connector = |audience: &str| {
        let token = emulator.mint_entra_token(MintOptions {
            audience: Some(audience.to_string()),
            ..MintOptions::default()
        });
        let credential = Arc::new(Fixed {
            token: Some(token.clone()),
            expires_on: now_secs() + 3600,
            scopes: Mutex::default(),
        });
        let source = AzureSource::from_credential(
            credential.clone(),
            AzureCloud::Public.scope(),
            SourceInfo::new("azure").credential_kind("custom"),
        );
        let settings = settings.clone();
        async move {
            let mut config = CredentialConfig::new(settings);
            config.set_token_source(Arc::new(source));
            config.set_auth_options(AuthOptions::default().background_refresh(false));
            let connector = {
                config.disable_background_refresh();
                config.build_connector()
            }
            .await
            .unwrap();
            (connector, credential, token)
        }
    };

    let (arm, credential, token) = connector(ARM).await;
    let error = match arm.connect().await {
        Ok(_) => panic!("an arm token logged in"),
        Err(e) => e,
    };
    let text = format!(
        "{error} {error:?} {}",
        cloud_pg_auth::engine::chain_text(&error)
    );
    match &error {
        Error::Token(e) => assert_eq!(e.kind(), TokenErrorKind::Config, "{text}"),
        other => panic!("expected a token error, got {other:?}"),
    }
    assert!(text.contains("PGAUTH_AZURE_SCOPE"), "{text}");
    assert!(text.contains("https://management.azure.com"), "{text}");
    let signature = token.rsplit('.').next().unwrap();
    assert!(!text.contains(signature), "the token was printed: {text}");
    assert_eq!(
        *credential.scopes.lock().unwrap(),
        vec![AzureCloud::Public.scope()]
    );
    let stats = emulator.stats();
    assert_eq!(stats.logins_rejected, Default::default(), "{stats:?}");
    assert_eq!(stats.logins_accepted, 0, "{stats:?}");
    arm.dispose().await;

    let (database, _, _) = connector(AzureCloud::Public.audience()).await;
    let (client, _) = database.connect().await.unwrap();
    let row = client
        .query_one("select current_user::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), emulator.azure_role());
    assert_eq!(emulator.stats().logins_accepted, 1);
    database.dispose().await;
    emulator.stop().await.unwrap();
}
