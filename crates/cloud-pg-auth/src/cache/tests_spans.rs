//! The cache's tracing spans: one per token fetch and one per background refresh, with
//! their structured fields and never the token.

use super::TokenErrorKind;
use super::tests::{HOUR, setup};
use crate::test_spans::with_span_log;
use cloud_pg_auth_testkit::{PATIENCE, poll_until};

const FETCH: &str = "cloud_pg_auth.token_fetch";
const REFRESH: &str = "cloud_pg_auth.token_refresh";

#[test]
fn each_fetch_has_a_span_with_its_source_attempt_and_outcome() {
    let ((), log) = with_span_log(|_| async {
        let (clock, source, cache) = setup(Some(HOUR));
        cache.token().await.unwrap();
        source.fail(TokenErrorKind::Rejected, None);
        clock.advance(HOUR * 2);
        cache.token().await.unwrap_err();
        // Past the backoff: the second try since the last success.
        clock.advance(HOUR);
        cache.token().await.unwrap_err();
    });
    let spans = log.named(FETCH);
    let seen: Vec<_> = spans
        .iter()
        .map(|s| (s.get("attempt"), s.get("outcome")))
        .collect();
    assert_eq!(
        seen,
        [
            (Some("1"), Some("ok")),
            (Some("1"), Some("rejected")),
            (Some("2"), Some("rejected")),
        ]
    );
    for span in &spans {
        assert_eq!(span.get("source"), Some("callback fake"), "{span:?}");
        assert_eq!(span.get("identity"), Some("fake-identity"), "{span:?}");
        assert!(span.get("duration_ms").is_some(), "{span:?}");
    }
    log.assert_never_shows("fake-token");
}

#[test]
fn a_background_refresh_has_a_span_with_its_outcome() {
    let ((), log) = with_span_log(|log| async move {
        let (_clock, _source, cache) = setup(Some(HOUR));
        let task = cache.spawn_refresher();
        poll_until("the refresh span ended", PATIENCE, async || {
            log.named(REFRESH)
                .iter()
                .any(|s| s.get("outcome").is_some())
        })
        .await;
        task.stop().await;
    });
    let refresh = &log.named(REFRESH)[0];
    assert_eq!(refresh.get("outcome"), Some("ok"), "{refresh:?}");
    assert_eq!(refresh.get("source"), Some("callback fake"), "{refresh:?}");
    assert_eq!(log.named(FETCH)[0].get("outcome"), Some("ok"));
    log.assert_never_shows("fake-token");
}
