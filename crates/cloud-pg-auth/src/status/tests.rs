//! RFC 3339 formatting, the verdict's rules over status fields, and the JSON shape.

use std::time::Duration;

use super::*;
use crate::testing::offline_password_settings;

fn check(secs: u64, expected: &str) {
    assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(secs)), expected);
}

#[test]
fn formats_rfc3339() {
    check(0, "1970-01-01T00:00:00Z");
    check(951_782_400, "2000-02-29T00:00:00Z");
    check(1_724_709_600, "2024-08-26T22:00:00Z");
    check(1_767_225_599, "2025-12-31T23:59:59Z");
}

const AT: u64 = 1_767_225_599;

fn auth(token_valid: bool, error: bool, fallback: bool) -> AuthStatus {
    AuthStatus {
        method: "azure".into(),
        cloud: None,
        credential_kind: None,
        identity: None,
        username: None,
        username_source: None,
        expires_at: token_valid.then(|| UNIX_EPOCH + Duration::from_secs(AT + 600)),
        refresh_at: None,
        last_refresh: None,
        fetch_count: 1,
        failure_count: u64::from(error),
        fallback_count: 0,
        last_error: error.then(|| "identity endpoint 127.0.0.1: connection refused".into()),
        last_error_at: error.then(|| UNIX_EPOCH + Duration::from_secs(AT)),
        token_valid,
        fallback_configured: fallback,
        fallback_user: fallback.then(|| "break_glass".into()),
        fallback_in_use: fallback && !token_valid && error,
        background_refresh: true,
    }
}

#[test]
fn the_verdict_follows_the_token_the_last_fetch_and_the_fallback() {
    use Health::{Degraded, Failing, Healthy};
    // (valid token, last fetch failed, fallback set) -> verdict, words the reason holds
    let cases = [
        ((true, false, false), Healthy, ""),
        ((true, false, true), Healthy, ""),
        // Nothing failed yet: the next connection fetches.
        ((false, false, false), Healthy, ""),
        (
            (true, true, false),
            Degraded,
            "stays valid until 2026-01-01T00:09:59Z",
        ),
        ((true, true, true), Degraded, "stays valid"),
        (
            (false, true, true),
            Degraded,
            "fallback password as role \"break_glass\" (PGAUTH_FALLBACK_USER)",
        ),
        (
            (false, true, false),
            Failing,
            "no valid token and no fallback",
        ),
    ];
    for ((valid, error, fallback), health, words) in cases {
        let status = auth(valid, error, fallback);
        let (verdict, reason) = status.verdict();
        let case = (valid, error, fallback);
        assert_eq!(verdict, health, "{case:?}");
        match reason {
            None => assert_eq!(health, Healthy, "{case:?}"),
            Some(reason) => {
                assert!(reason.contains(words), "{case:?}: {reason}");
                assert!(
                    reason.contains("at 2025-12-31T23:59:59Z: identity endpoint"),
                    "{case:?}: says when and what: {reason}"
                );
            }
        }
    }
}

#[test]
fn a_disposed_engine_is_failing_whatever_its_credential_says() {
    let status = EngineStatus::new(auth(true, false, false), 1, 0, None);
    assert_eq!((status.health, status.disposed), (Health::Healthy, false));
    let disposed = status.clone().with_disposed(true);
    assert_eq!(disposed.health, Health::Failing);
    assert!(disposed.reason.unwrap().contains("disposed"));
    assert_eq!(status.with_disposed(false).health, Health::Healthy);
}

#[test]
fn the_json_has_the_verdict_times_and_pool_settings() {
    let mut config = PoolConfig::new(offline_password_settings("pw"));
    config.set_connection_timeout(Duration::from_millis(2500));
    let settings = PoolSettings::from(&config).with_checkout_validation(false);
    let status = EngineStatus::new(auth(false, true, false), 3, 1, Some(PoolStatus::default()))
        .with_pool_settings(settings);
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["health"], "failing");
    assert!(json["reason"].as_str().unwrap().contains("no valid token"));
    assert_eq!(json["auth"]["last_error_at"], "2025-12-31T23:59:59Z");
    assert_eq!(json["auth"]["token_valid"], false);
    let pool = &json["pool_settings"];
    assert_eq!(pool["max_size"], 10);
    assert_eq!(pool["max_lifetime"], 3300.0);
    assert_eq!(pool["connection_timeout"], 2.5);
    assert_eq!(pool["dispose_timeout"], 10.0);
    assert_eq!(pool["checkout_validated"], false);
    config.set_max_lifetime(None);
    let json = serde_json::to_value(PoolSettings::from(&config)).unwrap();
    assert!(json["max_lifetime"].is_null());
    assert_eq!(json["checkout_validated"], true);
    let healthy = serde_json::to_value(EngineStatus::new(auth(true, false, false), 0, 0, None));
    let healthy = healthy.unwrap();
    assert_eq!(
        (&healthy["health"], &healthy["reason"]),
        (&"healthy".into(), &serde_json::Value::Null)
    );
}

#[test]
fn the_fallback_role_and_its_use_are_shown_never_the_password() {
    use Health::{Degraded, Healthy};
    // (fallback role, in use, last fetch failed) -> verdict, words the reason holds
    let cases = [
        ((Some("break_glass"), false, false), Healthy, None),
        (
            (Some("break_glass"), true, true),
            Degraded,
            Some("as role \"break_glass\" (PGAUTH_FALLBACK_USER)"),
        ),
        (
            (None, true, true),
            Degraded,
            Some("as PGUSER (PGAUTH_FALLBACK_USER is unset"),
        ),
        // In use without a failed fetch: only a status assembled by hand, still degraded.
        (
            (Some("break_glass"), true, false),
            Degraded,
            Some("log in with the fallback password as role"),
        ),
    ];
    for ((user, in_use, error), health, words) in cases {
        let mut status = auth(false, error, true);
        status.fallback_user = user.map(str::to_string);
        status.fallback_in_use = in_use;
        let case = (user, in_use, error);
        let (verdict, reason) = status.verdict();
        assert_eq!(verdict, health, "{case:?}");
        match (reason, words) {
            (None, None) => {}
            (Some(reason), Some(words)) => assert!(reason.contains(words), "{case:?}: {reason}"),
            other => panic!("{case:?}: {other:?}"),
        }
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["fallback_configured"], true, "{case:?}");
        assert_eq!(json["fallback_user"], serde_json::json!(user), "{case:?}");
        assert_eq!(json["fallback_in_use"], in_use, "{case:?}");
        // The status holds no password field at all.
        assert!(json.get("fallback_password").is_none(), "{json}");
    }
}
