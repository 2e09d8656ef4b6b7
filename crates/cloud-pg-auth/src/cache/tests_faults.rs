//! The cache under hostile conditions: absurd `Retry-After` hints, a panicking source, a token
//! the server refuses again and again, and callers that give up before the fetch ends.

use super::tests::{HOUR, secret, setup, setup_with};
use super::*;
use crate::error::chain_text;

#[tokio::test]
async fn an_unbounded_retry_after_waits_the_backoff_maximum_and_the_cache_keeps_working() {
    for hint in [
        Duration::from_secs(u64::MAX),
        Duration::from_secs(365 * 86_400),
    ] {
        let (clock, source, cache) = setup(Some(HOUR));
        source.fail(TokenErrorKind::Throttled, Some(hint));
        let text = chain_text(&cache.token().await.unwrap_err());
        assert!(text.contains("the endpoint is down"), "{hint:?}: {text}");
        // The default backoff maximum, 60 s, is the longest a hint can hold fetches back.
        clock.advance(Duration::from_secs(59));
        assert!(cache.token().await.is_err());
        assert_eq!(source.calls(), 1, "{hint:?}: asked again before the cap");
        source.recover();
        clock.advance(Duration::from_secs(1));
        assert_eq!(secret(&cache).await, "fake-token-2", "{hint:?}");
        assert_eq!(cache.status().failure_count, 1);
    }
}

#[tokio::test]
async fn a_panicking_source_is_a_failed_fetch_and_the_next_call_works() {
    let (clock, source, cache) = setup(Some(HOUR));
    source.set_panic(true);
    let error = cache.token().await.unwrap_err();
    let text = chain_text(&error);
    assert!(
        text.starts_with("callback fake: no valid token: the token source panicked"),
        "{text}"
    );
    assert!(
        !text.contains("fake-token"),
        "the payload is not passed on: {text}"
    );
    assert!(matches!(error, Error::Token(ref e) if e.kind() == TokenErrorKind::Transient));
    assert_eq!(cache.status().failure_count, 1);
    source.set_panic(false);
    clock.advance(Duration::from_secs(1)); // past the first backoff, 500 ms ± 20 %
    assert_eq!(secret(&cache).await, "fake-token-2");
    assert_eq!(cache.status().fetch_count, 2);
}

#[tokio::test]
async fn a_token_refused_again_and_again_is_refetched_at_most_once_per_interval() {
    let (clock, source, cache) = setup(Some(HOUR));
    for round in 0..200 {
        let token = cache.token().await.unwrap();
        cache.invalidate(token.secret());
        clock.advance(Duration::from_millis(100));
        assert!(
            source.calls() <= 3,
            "round {round}: {} fetches",
            source.calls()
        );
    }
    // 20 s of refusals, 10 s interval: the first fetch, then one forced fetch at 0 s and
    // one at 10 s.
    assert_eq!(source.calls(), 3);
}

#[tokio::test]
async fn invalidate_keeps_the_backoff_of_a_failed_refresh() {
    let (clock, source, cache) = setup(Some(HOUR));
    let token = cache.token().await.unwrap();
    source.fail(TokenErrorKind::Throttled, Some(Duration::from_secs(30)));
    clock.advance(Duration::from_secs(3300)); // due for refresh, still valid
    assert_eq!(secret(&cache).await, "fake-token-1");
    assert_eq!(source.calls(), 2);
    cache.invalidate(token.secret());
    // The server refused the token, but the endpoint asked for 30 s of quiet.
    let text = chain_text(&cache.token().await.unwrap_err());
    assert!(
        text.contains("no valid token: the endpoint is down"),
        "{text}"
    );
    assert_eq!(source.calls(), 2);
    source.recover();
    clock.advance(Duration::from_secs(30));
    assert_eq!(secret(&cache).await, "fake-token-3");
}

#[tokio::test(start_paused = true)]
async fn a_fetch_outlives_the_callers_that_gave_up_and_is_cached() {
    let (_clock, source, cache) = setup(Some(HOUR));
    source.set_delay(Duration::from_millis(500));
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_millis(100), cache.token())
                    .await
                    .is_err()
            })
        })
        .collect();
    for caller in callers {
        assert!(caller.await.unwrap(), "the caller should have given up");
    }
    assert_eq!(source.calls(), 1);
    assert_eq!(
        cache.status().fetch_count,
        0,
        "the fetch is still in flight"
    );
    // Paused clock: this jumps past the source's latency.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(cache.status().fetch_count, 1);
    assert_eq!(
        *cache.subscribe().borrow(),
        1,
        "the new token was announced"
    );
    assert_eq!(secret(&cache).await, "fake-token-1");
    assert_eq!(source.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_fetch_abandoned_by_every_caller_still_times_out() {
    let policy = RefreshPolicy {
        fetch_timeout: Duration::from_secs(2),
        ..RefreshPolicy::default()
    };
    let (_clock, source, cache) = setup_with(Some(HOUR), CacheOptions::default().policy(policy));
    source.set_delay(Duration::from_secs(60));
    let gave_up = tokio::time::timeout(Duration::from_millis(100), cache.token()).await;
    assert!(gave_up.is_err());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = cache.status();
    assert_eq!((status.fetch_count, status.failure_count), (1, 1));
    assert!(
        status.last_error.unwrap().contains("no answer within 2 s"),
        "the task's own timeout ended it"
    );
}
