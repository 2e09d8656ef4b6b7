//! The verdict the cache's status gives, state by state, on a manual clock with a fake
//! source: healthy, degraded (refresh failing with a valid token, or fallback in use),
//! failing (no valid token, no fallback), and healthy again once a fetch succeeds.

use super::tests::{HOUR, setup_with};
use super::{CacheOptions, Clock, Duration, TokenErrorKind};
use crate::status::Health;

/// What a case does to the cache, in order.
#[derive(Debug, Clone, Copy)]
enum Act {
    /// A caller asks for a token (the result is the case's concern, not the step's).
    Ask,
    /// The identity endpoint goes down.
    Down,
    /// It comes back.
    Up,
    /// The clock moves on this many seconds.
    Wait(u64),
}

use Act::{Ask, Down, Up, Wait};

struct Case {
    name: &'static str,
    fallback: bool,
    steps: &'static [Act],
    health: Health,
    /// Whether the status shows an error (and when it happened).
    error: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "nothing fetched yet",
        fallback: false,
        steps: &[],
        health: Health::Healthy,
        error: false,
    },
    Case {
        name: "a token cached",
        fallback: false,
        steps: &[Ask],
        health: Health::Healthy,
        error: false,
    },
    Case {
        name: "the refresh failed while the token is valid",
        fallback: false,
        steps: &[Ask, Down, Wait(3300), Ask],
        health: Health::Degraded,
        error: true,
    },
    Case {
        name: "no valid token and no fallback",
        fallback: false,
        steps: &[Ask, Down, Wait(3700), Ask],
        health: Health::Failing,
        error: true,
    },
    Case {
        name: "the first fetch failed, no fallback",
        fallback: false,
        steps: &[Down, Ask],
        health: Health::Failing,
        error: true,
    },
    Case {
        name: "no valid token, the fallback in use",
        fallback: true,
        steps: &[Ask, Down, Wait(3700), Ask],
        health: Health::Degraded,
        error: true,
    },
    Case {
        name: "the endpoint back after expiry",
        fallback: false,
        steps: &[Ask, Down, Wait(3700), Ask, Up, Wait(60), Ask],
        health: Health::Healthy,
        error: false,
    },
    Case {
        name: "the endpoint back before expiry",
        fallback: false,
        steps: &[Ask, Down, Wait(3300), Ask, Up, Wait(60), Ask],
        health: Health::Healthy,
        error: false,
    },
];

#[tokio::test]
async fn the_verdict_follows_the_cache_state() {
    for case in CASES {
        let options = if case.fallback {
            CacheOptions::default().fallback_password("fallback-pw")
        } else {
            CacheOptions::default()
        };
        let (clock, source, cache) = setup_with(Some(HOUR), options);
        let mut failed_at = None;
        for step in case.steps {
            match step {
                Ask => {
                    let failures = cache.status().failure_count;
                    let _ = cache.token().await;
                    if cache.status().failure_count > failures {
                        failed_at = Some(clock.now());
                    }
                }
                Down => source.fail(TokenErrorKind::Transient, None),
                Up => source.recover(),
                Wait(secs) => clock.advance(Duration::from_secs(*secs)),
            }
        }
        let status = cache.status();
        let (health, reason) = status.verdict();
        let name = case.name;
        assert_eq!(health, case.health, "{name}: {status:?}");
        assert_eq!(reason.is_some(), health != Health::Healthy, "{name}");
        assert_eq!(status.fallback_configured, case.fallback, "{name}");
        if case.error {
            assert!(failed_at.is_some(), "{name}: a fetch failed");
            assert_eq!(status.last_error_at, failed_at, "{name}");
            let error = status.last_error.as_deref().unwrap();
            assert!(reason.unwrap().contains(error), "{name}: names the error");
        } else {
            assert_eq!(
                (status.last_error, status.last_error_at),
                (None, None),
                "{name}: a success clears the error"
            );
        }
    }
}

#[tokio::test]
async fn the_fallback_verdict_matches_what_a_caller_gets() {
    let options = CacheOptions::default().fallback_password("fallback-pw");
    let (clock, source, cache) = setup_with(Some(HOUR), options);
    cache.token().await.unwrap();
    source.fail(TokenErrorKind::Transient, None);
    clock.advance(Duration::from_secs(3700));
    let token = cache.token().await.unwrap();
    assert_eq!(token.secret().expose(), "fallback-pw");
    let status = cache.status();
    assert!(!status.token_valid);
    assert_eq!(status.fallback_count, 1);
    assert_eq!(status.verdict().0, Health::Degraded);
}
