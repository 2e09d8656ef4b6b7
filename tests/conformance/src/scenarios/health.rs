//! The verdict every engine's `status()` gives (issue 13, items 4 and 8): healthy, degraded
//! while the identity endpoint is down and the token still valid, failing once it expired
//! with no fallback, healthy again after the endpoint is back; and the pool's configured
//! options shown alongside. Token time moves on a manual clock; every wait is on the status.

use std::time::Duration;

use cloud_pg_auth::clock::Clock as _;
use cloud_pg_auth::{EngineStatus, Health};
use cloud_pg_auth_testkit::Faults;

use super::{
    PATIENCE, advance_past, emulator, endpoint_back_past_backoff, poll_until, text,
    warm_engine_on_manual_clock,
};
use crate::{Adapter, EngineOptions, Method};

fn down(on: bool) -> Faults {
    Faults {
        down: Some(on),
        ..Faults::default()
    }
}

fn check(status: &EngineStatus, health: Health, words: &str, adapter: &str) {
    assert_eq!(status.health, health, "{adapter}: {status:?}");
    match &status.reason {
        None => assert_eq!(health, Health::Healthy, "{adapter}: a verdict says why"),
        Some(reason) => assert!(reason.contains(words), "{adapter}: {reason}"),
    }
}

/// Healthy after a first open; the endpoint down past the refresh time: degraded, saying when
/// and why, while opens still work; past expiry with no fallback: failing, and opens fail;
/// the endpoint back and the clock past the backoff: healthy, the error cleared; disposed:
/// failing.
pub async fn health_follows_the_credential<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(3600)).await;
    let (clock, engine) =
        warm_engine_on_manual_clock::<A>(&emulator, Method::AzureManagedIdentity).await;
    let status = A::status(&engine);
    check(&status, Health::Healthy, "", A::NAME);
    assert_eq!(status.auth.last_error_at, None);
    let (refresh_at, expires_at) = (
        status.auth.refresh_at.unwrap(),
        status.auth.expires_at.unwrap(),
    );

    emulator.set_faults(down(true)).await.unwrap();
    advance_past(&clock, refresh_at);
    poll_until("the refresher tries and fails", PATIENCE, async || {
        A::status(&engine).auth.failure_count >= 1
    })
    .await;
    let status = A::status(&engine);
    check(&status, Health::Degraded, "stays valid", A::NAME);
    assert!(status.auth.last_error.is_some(), "{status:?}");
    // The manual clock has not moved since the failure: it happened now.
    assert_eq!(status.auth.last_error_at, Some(clock.now()), "{status:?}");
    for open in 0..2 {
        A::current_user_on_new_connection(&engine)
            .await
            .unwrap_or_else(|e| panic!("open {open} failed while degraded: {}", text(&e)));
    }

    advance_past(&clock, expires_at);
    check(
        &A::status(&engine),
        Health::Failing,
        "no valid token",
        A::NAME,
    );
    assert!(
        A::current_user_on_new_connection(&engine).await.is_err(),
        "{}: failing means opens fail",
        A::NAME
    );

    // Back up, with tokens valid on the clock (now an hour ahead of the emulator's), and past
    // any backoff: the next open fetches.
    endpoint_back_past_backoff(&emulator, &clock).await;
    A::current_user_on_new_connection(&engine)
        .await
        .unwrap_or_else(|e| panic!("the engine recovers: {}", text(&e)));
    let status = A::status(&engine);
    check(&status, Health::Healthy, "", A::NAME);
    assert_eq!(
        (&status.auth.last_error, status.auth.last_error_at),
        (&None, None),
        "{}: a success clears the error",
        A::NAME
    );

    A::dispose(&engine).await;
    let status = A::status(&engine);
    check(&status, Health::Failing, "disposed", A::NAME);
    assert!(status.disposed);
    emulator.stop().await.unwrap();
}

/// The pool's configured options are in the status, defaults and a user's own values alike,
/// with checkout validation on.
pub async fn health_shows_the_pool_settings<A: Adapter>() {
    let custom = EngineOptions {
        max_size: 3,
        max_lifetime: None,
        connection_timeout: Duration::from_secs(7),
        dispose_timeout: Duration::from_secs(2),
        ..EngineOptions::default()
    };
    for options in [EngineOptions::default(), custom] {
        let settings = cloud_pg_auth::testing::offline_password_settings("hunter2");
        let engine = A::pooled(settings, options.clone()).await.unwrap();
        let shown = A::status(&engine)
            .pool_settings
            .unwrap_or_else(|| panic!("{}: a pooled engine shows its settings", A::NAME));
        assert_eq!(
            (
                shown.max_size,
                shown.max_lifetime,
                shown.connection_timeout,
                shown.dispose_timeout,
                shown.checkout_validated,
            ),
            (
                options.max_size,
                options.max_lifetime,
                options.connection_timeout,
                options.dispose_timeout,
                true,
            ),
            "{}",
            A::NAME
        );
        A::dispose(&engine).await;
    }
}
