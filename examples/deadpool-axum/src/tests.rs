//! The `prometheus` feature end to end: the service's routes on a loopback port over a
//! pooled engine that logs in to the emulator with an Azure managed identity, then a scrape
//! of `GET /metrics` that must show the library's metrics with their labels.

use cloud_pg_auth_deadpool::PooledEngine;
use cloud_pg_auth_deadpool::cloud_pg_auth::metrics::{
    CONNECTIONS_OPENED, TOKEN_FETCH_SECONDS, TOKEN_FETCHES, TOKEN_VALIDITY_SECONDS,
};
use cloud_pg_auth_deadpool::cloud_pg_auth::{Env, Settings};
use cloud_pg_auth_testkit::{Emulator, EmulatorOptions, http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_shows_the_library_metrics() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    // As `main` does, before any engine exists. The only test here: one recorder per process.
    crate::prometheus::install().unwrap();
    let mut env = emulator.env();
    env.extend([
        ("PGAUTH_METHOD".to_string(), "azure".to_string()),
        ("PGAUTH_AZURE_CREDENTIAL".into(), "managed-identity".into()),
        // Named, so the `target` label names it (a user taken from the token is not known
        // when the label is made).
        ("PGUSER".into(), emulator.azure_role().into()),
    ]);
    let settings = Settings::from_env_vars(&Env::from_pairs(env)).unwrap();
    let engine = PooledEngine::from_settings(settings).await.unwrap();
    // One connection: one token fetch, one connection opened.
    let client = engine.get().await.unwrap();
    let role: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(role, emulator.azure_role());
    drop(client);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let server = tokio::spawn(axum::serve(listener, crate::app(engine.clone())).into_future());
    let scraped = http::get(&url, &[], None).await.unwrap();
    server.abort();
    engine.dispose().await;

    assert_eq!(scraped.status, 200, "{}", scraped.body);
    assert_eq!(
        scraped.header("content-type"),
        Some("text/plain; version=0.0.4")
    );
    let body = &scraped.body;
    let target = format!(
        "127.0.0.1:{} as {}",
        emulator.pg_port(),
        emulator.azure_role()
    );
    let expected = [
        format!("{TOKEN_FETCHES}{{source=\"azure\",outcome=\"ok\"}} 1"),
        format!("{TOKEN_FETCH_SECONDS}_count{{source=\"azure\"}} 1"),
        format!("{TOKEN_VALIDITY_SECONDS}{{source=\"azure\"}} "),
        format!("{CONNECTIONS_OPENED}{{target=\"{target}\"}} 1"),
    ];
    for line in expected {
        // A line ending in a space expects any value; the others are exact (`1`, not `10`).
        let found = if line.ends_with(' ') {
            body.lines().any(|l| l.starts_with(&line))
        } else {
            body.lines().any(|l| l == line)
        };
        assert!(found, "no line {line:?} in:\n{body}");
    }
}
