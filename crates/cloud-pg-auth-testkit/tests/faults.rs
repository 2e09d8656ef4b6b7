//! Faults and counters, through the Rust API and the control endpoint.

mod common;

use cloud_pg_auth_testkit::http::{self, HttpResponse};
use cloud_pg_auth_testkit::{Emulator, EmulatorOptions, FaultState, Faults, Stats};
use common::emulator;
use serde_json::{Value, json};

const AUD: &str = "https%3A%2F%2Fossrdbms-aad.database.windows.net";

async fn app_service(em: &Emulator) -> Result<HttpResponse, cloud_pg_auth_testkit::Error> {
    let url = format!(
        "{}?api-version=2019-08-01&resource={AUD}&client_id={}",
        em.identity_endpoint(),
        em.client_id()
    );
    http::get(&url, &[("X-IDENTITY-HEADER", em.identity_header())], None).await
}

async fn imds(em: &Emulator) -> Result<HttpResponse, cloud_pg_auth_testkit::Error> {
    let url = format!(
        "{}?api-version=2018-02-01&resource={AUD}",
        em.imds_token_url()
    );
    http::get(&url, &[("Metadata", "true")], None).await
}

async fn entra(em: &Emulator) -> Result<HttpResponse, cloud_pg_auth_testkit::Error> {
    http::post_form(
        &em.entra_token_url(),
        &[
            ("grant_type", "client_credentials"),
            ("client_id", em.workload_client_id()),
            ("client_secret", em.client_secret()),
            (
                "scope",
                "https://ossrdbms-aad.database.windows.net/.default",
            ),
        ],
        Some(em.ca_pem()),
    )
    .await
}

async fn control(em: &Emulator, method: &str, path: &str, body: Option<&str>) -> HttpResponse {
    http::request(
        method,
        &format!("{}{path}", em.control_url()),
        &[("content-type", "application/json")],
        body.map(|b| b.as_bytes().to_vec()),
        None,
    )
    .await
    .unwrap()
}

async fn stats_over_http(em: &Emulator) -> Stats {
    let r = control(em, "GET", "/stats", None).await;
    assert_eq!(r.status, 200);
    serde_json::from_str(&r.body).unwrap()
}

#[tokio::test]
async fn status_faults_apply_to_the_next_count_requests() {
    let em = emulator().await;
    let state = em
        .set_faults(Faults {
            status: Some(503),
            count: Some(2),
            retry_after: Some(7),
            ..Faults::default()
        })
        .await
        .unwrap();
    assert_eq!(state.status, Some(503));
    assert_eq!(state.remaining, Some(2));

    let r = app_service(&em).await.unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("7"));
    let r = entra(&em).await.unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.json().unwrap()["error"], "temporarily_unavailable");
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(app_service(&em).await.unwrap().status, 200);
    assert_eq!(em.faults().status, None);

    // Each status, once, on the IMDS protocol; Retry-After only with 429 and 503.
    async fn check(em: &Emulator, status: u16, retry_after: Option<&str>, error: &str) {
        em.set_faults(Faults {
            status: Some(status),
            count: Some(1),
            retry_after: Some(3),
            ..Faults::default()
        })
        .await
        .unwrap();
        let r = imds(em).await.unwrap();
        assert_eq!(r.status, status, "{}", r.body);
        assert_eq!(r.header("retry-after"), retry_after, "{status}");
        assert_eq!(r.json().unwrap()["error"], error, "{status}");
        assert_eq!(imds(em).await.unwrap().status, 200, "after {status}");
    }
    check(&em, 400, None, "invalid_request").await;
    check(&em, 429, Some("3"), "too_many_requests").await;
    check(&em, 500, None, "unknown_error").await;
    check(&em, 503, Some("3"), "service_unavailable").await;

    let stats = em.stats();
    assert_eq!(stats.faults_injected, 6);
    assert_eq!(stats.token_requests.app_service, 2);
    assert_eq!(stats.token_requests.entra, 1);
    assert_eq!(stats.token_requests.imds, 8);
    assert_eq!(stats.token_requests.total, 11);
    assert_eq!(stats.tokens_issued.total, 5);
    assert_eq!(stats_over_http(&em).await, stats);
}

#[tokio::test]
async fn down_really_refuses_connections_and_up_restores_them() {
    let em = emulator().await;
    assert_eq!(app_service(&em).await.unwrap().status, 200);
    let mi_port = em.identity_endpoint();
    em.set_faults(Faults {
        down: Some(true),
        ..Faults::default()
    })
    .await
    .unwrap();
    let refused = |r: Result<HttpResponse, cloud_pg_auth_testkit::Error>| match r {
        Err(cloud_pg_auth_testkit::Error::Http(e)) => {
            assert!(
                e.contains("Connection refused") || e.contains("reset"),
                "{e}"
            )
        }
        other => panic!("expected a refused connection, got {other:?}"),
    };
    refused(app_service(&em).await);
    refused(imds(&em).await);
    refused(entra(&em).await);
    // The control endpoint and PostgreSQL logins are unaffected.
    assert!(stats_over_http(&em).await.faults.down);
    assert!(
        common::login(&em, em.password_role(), em.password())
            .await
            .is_ok()
    );

    // Back up, on the same ports, through the control endpoint.
    let r = control(&em, "POST", "/faults", Some(r#"{"down": false}"#)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(em.identity_endpoint(), mi_port);
    assert_eq!(app_service(&em).await.unwrap().status, 200);
    assert_eq!(entra(&em).await.unwrap().status, 200);

    // Down from the start.
    let em2 = Emulator::start(EmulatorOptions {
        faults: Faults {
            down: Some(true),
            ..Faults::default()
        },
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    refused(imds(&em2).await);
    em2.reset().await;
    assert_eq!(imds(&em2).await.unwrap().status, 200);
}

#[tokio::test]
async fn control_endpoint_sets_lifetime_latency_and_resets() {
    let em = Emulator::start(EmulatorOptions {
        token_lifetime: std::time::Duration::from_secs(600),
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let lifetime = |r: HttpResponse| -> i64 {
        let b = r.json().unwrap();
        b["expires_in"].as_str().unwrap().parse().unwrap()
    };
    let first = lifetime(app_service(&em).await.unwrap());
    assert!((595..=600).contains(&first), "{first}");

    let r = control(
        &em,
        "POST",
        "/faults",
        Some(r#"{"token_lifetime": 120, "latency_ms": 5}"#),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let state: FaultState = serde_json::from_str(&r.body).unwrap();
    assert_eq!((state.token_lifetime, state.latency_ms), (120, 5));
    let second = lifetime(app_service(&em).await.unwrap());
    assert!((115..=120).contains(&second), "{second}");
    let b = entra(&em).await.unwrap().json().unwrap();
    assert!(
        (115..=120).contains(&b["expires_in"].as_i64().unwrap()),
        "{b}"
    );

    // Bad fault objects are refused and change nothing.
    async fn check(em: &Emulator, body: &str, error: &str) {
        let before = em.faults();
        let r = control(em, "POST", "/faults", Some(body)).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let msg = r.json().unwrap()["error"].as_str().unwrap().to_string();
        assert!(msg.contains(error), "{body}: {msg}");
        assert_eq!(em.faults(), before, "{body}");
    }
    check(&em, r#"{"status": 418}"#, "status must be one of").await;
    check(
        &em,
        r#"{"status": 503, "latency_ms": "slow"}"#,
        "latency_ms must be",
    )
    .await;
    check(&em, r#"{"down": 1}"#, "down must be a boolean").await;
    check(
        &em,
        r#"{"token_lifetime": 0}"#,
        "token_lifetime must be positive",
    )
    .await;
    check(&em, r#"{"outage": true}"#, "unknown key").await;
    check(&em, r#"[]"#, "expected a json object").await;
    check(&em, r#"{"status": "#, "invalid json").await;

    // Null clears one setting.
    let r = control(&em, "POST", "/faults", Some(r#"{"latency_ms": null}"#)).await;
    assert_eq!(r.json().unwrap()["latency_ms"], 0);

    // Unknown paths and methods.
    assert_eq!(control(&em, "GET", "/nope", None).await.status, 404);
    assert_eq!(control(&em, "DELETE", "/stats", None).await.status, 405);
    let env = control(&em, "GET", "/env", None).await.json().unwrap();
    assert_eq!(env["PGPORT"], Value::String(em.pg_port().to_string()));

    // Counters include logins; reset clears counters and faults.
    let _ = common::login(&em, em.password_role(), "wrong").await;
    assert!(em.stats().logins_rejected.contains_key("password"));
    let r = control(&em, "POST", "/reset", None).await;
    assert_eq!(r.status, 200);
    let stats = em.stats();
    assert_eq!(stats.token_requests.total, 0);
    assert!(stats.logins_rejected.is_empty());
    assert_eq!(
        serde_json::to_value(&stats.faults).unwrap(),
        json!({"latency_ms": 0, "status": null, "remaining": null, "retry_after": null, "down": false, "token_lifetime": 600})
    );
    let third = lifetime(app_service(&em).await.unwrap());
    assert!((595..=600).contains(&third), "{third}");
}
