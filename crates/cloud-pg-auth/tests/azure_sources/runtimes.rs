//! Runtimes: a source first used on one runtime keeps working from another, with the first
//! idle or gone, and a new source on a new runtime is unaffected by dropped ones. The server
//! keeps connections alive, so a pooled connection would be reused (and hang); the source
//! opens one connection per request instead.

use std::time::Duration;

use cloud_pg_auth::TokenSource;
use cloud_pg_auth::azure::AzureSource;

use crate::server::{Server, reply};
use crate::support::{app_service_options, mi_jwt, now_secs};

#[test]
fn sources_survive_runtimes() {
    let later = now_secs() + 3600;
    let body = format!(
        r#"{{"access_token":"{}","expires_on":"{later}"}}"#,
        mi_jwt(later)
    );
    let server = Server::start(vec![reply(200, body)]);
    let options = app_service_options(&server);
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let guarded = |rt: &tokio::runtime::Runtime, source: &AzureSource, label: &str| {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), source.fetch())
                .await
                .unwrap_or_else(|_| panic!("{label}: the fetch hung"))
                .unwrap_or_else(|e| panic!("{label}: {}", e.chain_text()))
        })
    };

    let first_runtime = runtime();
    let first = first_runtime.block_on(async { AzureSource::new(&options).unwrap() });
    guarded(&first_runtime, &first, "first runtime");
    let second_runtime = runtime();
    guarded(&second_runtime, &first, "second runtime, first idle");
    drop(first_runtime);
    guarded(&second_runtime, &first, "second runtime, first gone");
    drop(first);
    drop(second_runtime);

    let third_runtime = runtime();
    let fresh = AzureSource::new(&options).unwrap();
    guarded(&third_runtime, &fresh, "a new source on a third runtime");
    assert_eq!(server.requests().len(), 4);
    assert_eq!(
        server.connections(),
        4,
        "no connection is kept between fetches"
    );
}
