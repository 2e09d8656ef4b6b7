//! The credential across token lifetimes and faults: rollover, an identity endpoint that is
//! down, throttling or slow, and a PostgreSQL restart. Token time moves on a manual clock;
//! every wait is on the emulator's counters or the engine's status.

use std::time::Duration;

use cloud_pg_auth::{Env, Settings};
use cloud_pg_auth_testkit::{Emulator, Faults};

use super::{
    PATIENCE, advance_past, emulator, endpoint_back_past_backoff, manual_clock, poll_until, text,
    token_requests, tokens_made, warm_engine_on_manual_clock,
};
use crate::{Adapter, EngineOptions, Method};

/// The emulator's counters of refused logins, which every scenario here wants empty.
fn logins_rejected(emulator: &Emulator) -> u64 {
    emulator.stats().logins_rejected.values().sum()
}

/// Token after token, new connections keep opening: one fetch per refresh, each by the
/// refresher (opens never fetch), and no login refused; for every method whose tokens come
/// from an identity endpoint or are signed locally.
pub async fn rollover_keeps_opening_connections<A: Adapter>() {
    for method in Method::ENDPOINT.into_iter().chain(Method::SIGNED) {
        rollover_for::<A>(method).await;
    }
}

async fn rollover_for<A: Adapter>(method: Method) {
    // Tokens live a day of real time, so every token the emulator issues stays valid for its
    // front whatever the manual clock says; the clock moves the credential's idea of time.
    let emulator = emulator(Duration::from_secs(24 * 3600)).await;
    // A signed token's lifetime is the settings' to choose: a day too.
    let mut env = method.env(&emulator);
    if method == Method::AwsDsql {
        env.push(("PGAUTH_DSQL_TOKEN_EXPIRES".into(), "86400".into()));
    }
    let settings = Settings::from_env_vars(&Env::from_pairs(env)).expect("valid settings");
    let role = method.expected_role(&emulator);
    let (clock, auth) = manual_clock();
    let options = EngineOptions {
        auth,
        ..EngineOptions::default()
    };
    let engine = A::pooled(settings, options).await.unwrap();
    assert_eq!(
        A::current_user_on_new_connection(&engine).await.unwrap(),
        role
    );
    assert_eq!(
        tokens_made::<A>(&emulator, &engine, method),
        1,
        "{method:?}"
    );
    for round in 1..=3_u64 {
        let refresh_at = A::status(&engine)
            .auth
            .refresh_at
            .expect("a token with an expiry has a refresh time");
        advance_past(&clock, refresh_at);
        // A token signed in the same second as the last is the same text: wait for the
        // refresher's fetch and a later refresh time, not for a different secret.
        poll_until(
            "the refresher installs the next token",
            PATIENCE,
            async || {
                let auth = A::status(&engine).auth;
                auth.fetch_count > round && auth.refresh_at.is_some_and(|at| at > refresh_at)
            },
        )
        .await;
        for _ in 0..3 {
            let user = A::current_user_on_new_connection(&engine)
                .await
                .unwrap_or_else(|e| panic!("{method:?} round {round}: {}", text(&e)));
            assert_eq!(user, role, "{method:?}");
        }
        assert_eq!(
            tokens_made::<A>(&emulator, &engine, method),
            round + 1,
            "{method:?} round {round}"
        );
    }
    assert_eq!(logins_rejected(&emulator), 0, "{:?}", emulator.stats());
    A::dispose(&engine).await;
    emulator.stop().await.unwrap();
}

/// The identity endpoint is down past the refresh time: no failed open while the token is
/// valid; after expiry a clear error naming the endpoint and the cause; recovery after; for
/// every method whose tokens come from an identity endpoint.
pub async fn outage_is_ridden_out_while_the_token_is_valid<A: Adapter>() {
    for method in Method::ENDPOINT {
        outage_for::<A>(method).await;
    }
}

async fn outage_for<A: Adapter>(method: Method) {
    let emulator = emulator(Duration::from_secs(3600)).await;
    let (clock, engine) = warm_engine_on_manual_clock::<A>(&emulator, method).await;
    let down = |on| Faults {
        down: Some(on),
        ..Faults::default()
    };
    emulator.set_faults(down(true)).await.unwrap();
    let status = A::status(&engine).auth;
    let (refresh_at, expires_at) = (status.refresh_at.unwrap(), status.expires_at.unwrap());
    // Past the refresh time: the refresher tries, and fails.
    advance_past(&clock, refresh_at);
    poll_until("the refresher tries and fails", PATIENCE, async || {
        A::status(&engine).auth.failure_count >= 1
    })
    .await;
    // The token is still valid: opens do not notice the outage.
    for open in 0..5 {
        A::current_user_on_new_connection(&engine)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{method:?}: open {open} failed with a valid token: {}",
                    text(&e)
                )
            });
    }
    // Past the expiry: a clear error.
    advance_past(&clock, expires_at);
    let error = A::current_user_on_new_connection(&engine)
        .await
        .unwrap_err();
    let message = text(&error);
    assert!(
        message.contains("127.0.0.1"),
        "{method:?} names the endpoint: {message}"
    );
    assert!(message.contains("no valid token"), "{method:?}: {message}");
    assert!(
        message.contains("refused") || message.contains("connect") || message.contains("reset"),
        "{method:?} gives the cause: {message}"
    );
    // Back up, with tokens long enough to be valid on the clock, which is now an hour ahead
    // of the emulator's; past any backoff, the next open fetches and logs in.
    endpoint_back_past_backoff(&emulator, &clock).await;
    A::current_user_on_new_connection(&engine)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{method:?}: the engine recovers once the endpoint is back: {}",
                text(&e)
            )
        });
    assert_eq!(logins_rejected(&emulator), 0, "{:?}", emulator.stats());
    A::dispose(&engine).await;
    emulator.stop().await.unwrap();
}

/// 429 with `Retry-After`: no failed open while the token is valid, no retry before the hint,
/// one after it.
pub async fn throttling_is_honoured<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(3600)).await;
    let (clock, engine) =
        warm_engine_on_manual_clock::<A>(&emulator, Method::AzureManagedIdentity).await;
    emulator
        .set_faults(Faults {
            status: Some(429),
            count: Some(1),
            retry_after: Some(30),
            ..Faults::default()
        })
        .await
        .unwrap();
    advance_past(&clock, A::status(&engine).auth.refresh_at.unwrap());
    poll_until("the refresh is answered 429", PATIENCE, async || {
        A::status(&engine).auth.failure_count == 1
    })
    .await;
    let status = A::status(&engine).auth;
    assert!(
        status.last_error.as_deref().unwrap_or("").contains("429"),
        "{status:?}"
    );
    assert_eq!(token_requests(&emulator), 2);
    // Well inside the 30 s hint (and its jitter): opens go on with the valid token, and they
    // are the settle step in which a retry storm would show in the counter.
    clock.advance(Duration::from_secs(10));
    for _ in 0..5 {
        A::current_user_on_new_connection(&engine)
            .await
            .unwrap_or_else(|e| panic!("open failed with a valid token: {}", text(&e)));
    }
    assert_eq!(token_requests(&emulator), 2, "{:?}", emulator.stats());
    // Past the hint: one retry, which succeeds.
    clock.advance(Duration::from_secs(40));
    poll_until(
        "the refresher retries after the hint",
        PATIENCE,
        async || A::status(&engine).auth.last_refresh > status.last_refresh,
    )
    .await;
    assert_eq!(token_requests(&emulator), 3, "{:?}", emulator.stats());
    assert_eq!(A::status(&engine).auth.failure_count, 1);
    A::dispose(&engine).await;
    emulator.stop().await.unwrap();
}

/// A slow identity endpoint: once warm, opens do not wait for the refresh in flight.
pub async fn slow_endpoint_does_not_delay_opens<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(3600)).await;
    let (clock, engine) =
        warm_engine_on_manual_clock::<A>(&emulator, Method::AzureManagedIdentity).await;
    assert_eq!(emulator.stats().tokens_issued.total, 1);
    // The refresh reaches the endpoint and is held there far longer than the opens take:
    // longer than the fetch timeout (30 s), so it can neither be answered nor time out
    // while the opens run.
    emulator
        .set_faults(Faults {
            latency_ms: Some(120_000),
            ..Faults::default()
        })
        .await
        .unwrap();
    advance_past(&clock, A::status(&engine).auth.refresh_at.unwrap());
    poll_until("a refresh in flight", PATIENCE, async || {
        token_requests(&emulator) == 2
    })
    .await;
    for _ in 0..10 {
        A::current_user_on_new_connection(&engine).await.unwrap();
    }
    // Ten new connections opened while that refresh was unanswered, and had not failed: had
    // an open waited for it, it would still be waiting (or have seen it time out).
    let status = A::status(&engine).auth;
    assert_eq!(
        (emulator.stats().tokens_issued.total, status.failure_count),
        (1, 0),
        "opens waited for the endpoint: {status:?}"
    );
    A::dispose(&engine).await;
}

/// PostgreSQL restarted under a live pool: a connection that died with the server is not
/// handed out again, and the next checkout logs in afresh.
pub async fn postgres_restart_is_survived<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(3600)).await;
    let settings = Method::AzureManagedIdentity.settings(&emulator);
    let role = Method::AzureManagedIdentity.expected_role(&emulator);
    let engine = A::pooled(settings, EngineOptions::default()).await.unwrap();
    // The pool's one connection, held across the restart.
    let mut held = A::hold(&engine).await.unwrap();
    A::select_one(&mut held).await.unwrap();
    let before = A::status(&engine).connections_opened;
    emulator.restart_postgres().await.unwrap();
    // The settle step: the held connection has seen its server go (its query fails), so the
    // pool knows it is broken when it comes back.
    assert!(
        A::select_one(&mut held).await.is_err(),
        "the connection died with the server"
    );
    drop(held);
    let user = A::current_user(&engine).await.map_err(|e| text(&e));
    assert_eq!(user.unwrap(), role, "the first checkout after the restart");
    assert!(
        A::status(&engine).connections_opened > before,
        "new connections were opened"
    );
    A::dispose(&engine).await;
    emulator.stop().await.unwrap();
}
