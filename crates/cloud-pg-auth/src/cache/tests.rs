//! The cache's behaviour with a fake source and a manual clock: single flight, refresh ahead
//! of expiry, backoff, invalidation, background refresh, fallback.

use std::sync::atomic::Ordering;

use super::*;
use crate::clock::ManualClock;
use crate::error::chain_text;
use crate::testing::FakeSource;
use cloud_pg_auth_testkit::{PATIENCE, poll_until};

pub(super) const HOUR: Duration = Duration::from_secs(3600);

pub(super) fn setup(lifetime: Option<Duration>) -> (ManualClock, Arc<FakeSource>, TokenCache) {
    setup_with(lifetime, CacheOptions::default())
}

pub(super) fn setup_with(
    lifetime: Option<Duration>,
    options: CacheOptions,
) -> (ManualClock, Arc<FakeSource>, TokenCache) {
    let (clock, source) = FakeSource::with_manual_clock(lifetime);
    let cache = TokenCache::with_options(source.clone(), options, Arc::new(clock.clone()));
    (clock, source, cache)
}

pub(super) async fn secret(cache: &TokenCache) -> String {
    cache.token().await.unwrap().secret().expose().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_herd_of_500_causes_one_fetch() {
    let (_clock, source, cache) = setup(Some(HOUR));
    source.set_delay(Duration::from_millis(50));
    let tasks: Vec<_> = (0..500)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { secret(&cache).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), "fake-token-1");
    }
    assert_eq!(source.calls(), 1);
    assert_eq!(cache.status().fetch_count, 1);
}

#[tokio::test]
async fn refreshes_ahead_of_expiry_inline() {
    let (clock, source, cache) = setup(Some(HOUR));
    assert_eq!(secret(&cache).await, "fake-token-1");
    clock.advance(Duration::from_secs(3000));
    assert_eq!(secret(&cache).await, "fake-token-1");
    assert_eq!(source.calls(), 1);
    clock.advance(Duration::from_secs(300)); // past 3240 s, still valid
    assert_eq!(secret(&cache).await, "fake-token-2");
    assert_eq!(source.calls(), 2);
}

#[tokio::test]
async fn callers_during_a_refresh_get_the_valid_token_at_once() {
    let (clock, source, cache) = setup(Some(HOUR));
    secret(&cache).await;
    clock.advance(Duration::from_secs(3300));
    source.set_delay(Duration::from_millis(200));
    let refreshing = tokio::spawn({
        let cache = cache.clone();
        async move { secret(&cache).await }
    });
    poll_until("source.calls() == 2", PATIENCE, async || {
        source.calls() == 2
    })
    .await;
    // The refresh is in flight; this caller does not wait for it.
    assert_eq!(secret(&cache).await, "fake-token-1");
    assert_eq!(refreshing.await.unwrap(), "fake-token-2");
}

#[tokio::test]
async fn background_refresher_keeps_the_token_fresh() {
    let (clock, source, cache) = setup(Some(HOUR));
    let task = cache.spawn_refresher();
    poll_until("source.calls() == 1", PATIENCE, async || {
        source.calls() == 1
    })
    .await; // warms up on start
    assert_eq!(secret(&cache).await, "fake-token-1");
    clock.advance(Duration::from_secs(3250));
    poll_until("source.calls() == 2", PATIENCE, async || {
        source.calls() == 2
    })
    .await;
    poll_until(
        "cache.status().last_refresh == Some(clock.now())",
        PATIENCE,
        async || cache.status().last_refresh == Some(clock.now()),
    )
    .await;
    assert_eq!(secret(&cache).await, "fake-token-2");
    assert!(cache.status().background_refresh);
    task.stop().await;
    assert!(!cache.status().background_refresh);
}

#[tokio::test]
async fn failed_refresh_keeps_serving_and_backs_off() {
    let (clock, source, cache) = setup(Some(HOUR));
    secret(&cache).await;
    source.fail(TokenErrorKind::Transient, None);
    clock.advance(Duration::from_secs(3300));
    assert_eq!(secret(&cache).await, "fake-token-1");
    assert_eq!(source.calls(), 2);
    // Within the backoff window nobody asks the endpoint again.
    for _ in 0..50 {
        assert_eq!(secret(&cache).await, "fake-token-1");
    }
    assert_eq!(source.calls(), 2);
    clock.advance(Duration::from_millis(700)); // first wait: 500 ms ± 20 %
    assert_eq!(secret(&cache).await, "fake-token-1");
    assert_eq!(source.calls(), 3);
    clock.advance(Duration::from_millis(700)); // second wait: 1 s ± 20 %, not over yet
    assert_eq!(secret(&cache).await, "fake-token-1");
    assert_eq!(source.calls(), 3);
    let status = cache.status();
    assert_eq!(status.failure_count, 2);
    assert!(status.last_error.unwrap().contains("connection refused"));
    source.recover();
    clock.advance(Duration::from_secs(2));
    assert_eq!(secret(&cache).await, "fake-token-4");
}

#[tokio::test]
async fn expired_token_and_failing_source_give_the_cause() {
    let (clock, source, cache) = setup(Some(HOUR));
    secret(&cache).await;
    source.fail(TokenErrorKind::Transient, None);
    clock.advance(HOUR);
    let error = cache.token().await.unwrap_err();
    let text = chain_text(&error);
    assert!(
        text.starts_with("fake source: no valid token: the endpoint is down"),
        "{text}"
    );
    assert!(text.contains("connection refused"), "{text}");
    assert!(matches!(error, Error::Token(ref e) if e.kind() == TokenErrorKind::Transient));
    // While backing off, errors come without asking the endpoint.
    assert!(cache.token().await.is_err());
    assert_eq!(source.calls(), 2);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (clock, source, cache) = setup(Some(HOUR));
    source.fail(TokenErrorKind::Throttled, Some(Duration::from_secs(30)));
    assert!(cache.token().await.is_err());
    clock.advance(Duration::from_secs(20));
    assert!(cache.token().await.is_err());
    assert_eq!(source.calls(), 1);
    source.recover();
    clock.advance(Duration::from_secs(11));
    assert_eq!(secret(&cache).await, "fake-token-2");
}

#[tokio::test]
async fn subscribers_see_each_new_token_until_the_cache_is_gone() {
    let (_clock, _source, cache) = setup(Some(HOUR));
    let mut changes = cache.subscribe();
    secret(&cache).await;
    secret(&cache).await;
    assert_eq!(*changes.borrow_and_update(), 1);
    cache.refresh_now().await.unwrap();
    assert!(changes.has_changed().unwrap());
    assert_eq!(*changes.borrow_and_update(), 2);
    drop(cache);
    assert!(
        changes.changed().await.is_err(),
        "a receiver must not keep the cache alive"
    );
}

#[tokio::test]
async fn invalidate_drops_only_the_rejected_token() {
    let (_clock, source, cache) = setup(Some(HOUR));
    let first = cache.token().await.unwrap();
    cache.invalidate(first.secret());
    let second = cache.token().await.unwrap();
    assert_eq!(second.secret().expose(), "fake-token-2");
    cache.invalidate(first.secret());
    assert_eq!(secret(&cache).await, "fake-token-2");
    assert_eq!(source.calls(), 2);
}

#[tokio::test]
async fn dropping_the_cache_drops_the_source_and_the_task_ends_with_its_handle() {
    let (_clock, source, cache) = setup(Some(HOUR));
    let dropped = source.drop_flag();
    let task = cache.spawn_refresher();
    poll_until("source.calls() == 1", PATIENCE, async || {
        source.calls() == 1
    })
    .await;
    drop(source);
    assert!(!dropped.load(Ordering::SeqCst));
    drop(cache);
    assert!(
        dropped.load(Ordering::SeqCst),
        "the refresher must not keep the source alive"
    );
    task.stop().await;
}

#[test]
fn options_debug_hides_the_fallback_password() {
    let options = CacheOptions::default().fallback_password("fallback-secret");
    let printed = format!("{options:?} {options:#?}");
    assert!(!printed.contains("fallback-secret"), "{printed}");
    assert!(printed.contains("redacted"), "{printed}");
}

#[tokio::test]
async fn fallback_password_is_used_and_counted() {
    let options = CacheOptions::default().fallback_password("fallback-pw");
    let (_clock, source, cache) = setup_with(Some(HOUR), options);
    source.fail(TokenErrorKind::Rejected, None);
    assert_eq!(secret(&cache).await, "fallback-pw");
    assert_eq!(secret(&cache).await, "fallback-pw");
    assert_eq!(cache.status().fallback_count, 2);
}

#[tokio::test]
async fn the_fallback_is_marked_and_names_its_role_until_tokens_are_back() {
    let options = CacheOptions::default()
        .fallback_password("fallback-pw")
        .fallback_user("break_glass");
    let (clock, source, cache) = setup_with(Some(HOUR), options);
    // The status names the fallback role as soon as one is configured.
    let in_use = |cache: &TokenCache| {
        let status = cache.status();
        assert_eq!(status.fallback_user.as_deref(), Some("break_glass"));
        (status.fallback_in_use, status.fallback_count)
    };
    assert_eq!(in_use(&cache), (false, 0));
    let token = cache.token().await.unwrap();
    assert!(!token.is_fallback());
    source.fail(TokenErrorKind::Transient, None);
    clock.advance(2 * HOUR);
    let fallback = cache.token().await.unwrap();
    assert!(fallback.is_fallback());
    assert_eq!(fallback.details().get_username(), Some("break_glass"));
    assert_eq!(fallback.expires_at(), None);
    assert_eq!(in_use(&cache), (true, 1));
    // The endpoint is back: past the backoff, the next call fetches a token again.
    source.recover();
    clock.advance(HOUR);
    let token = cache.token().await.unwrap();
    assert!(!token.is_fallback(), "{token:?}");
    assert_eq!(in_use(&cache), (false, 1));
}

#[test]
fn the_status_shows_a_fallback_role_only_with_a_fallback_password() {
    // (fallback password, fallback role) -> status (configured, role)
    let cases = [
        ((false, false), (false, None)),
        // A role without a password is no fallback (validation refuses it in settings).
        ((false, true), (false, None)),
        ((true, false), (true, None)),
        ((true, true), (true, Some("break_glass"))),
    ];
    for ((password, user), expected) in cases {
        let mut options = CacheOptions::default();
        if password {
            options = options.fallback_password("fallback-pw");
        }
        if user {
            options = options.fallback_user("break_glass");
        }
        let (_clock, _source, cache) = setup_with(Some(HOUR), options);
        let status = cache.status();
        let case = (password, user);
        assert_eq!(
            (status.fallback_configured, status.fallback_user.as_deref()),
            expected,
            "{case:?}"
        );
        assert!(!status.fallback_in_use, "{case:?}");
        assert!(!format!("{status:?}").contains("fallback-pw"), "{case:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_slow_source_times_out_with_a_clear_error() {
    let policy = RefreshPolicy {
        fetch_timeout: Duration::from_secs(2),
        ..RefreshPolicy::default()
    };
    let (_clock, source, cache) = setup_with(Some(HOUR), CacheOptions::default().policy(policy));
    source.set_delay(Duration::from_secs(60));
    let text = chain_text(&cache.token().await.unwrap_err());
    assert!(text.contains("no answer within 2 s"), "{text}");
}

#[tokio::test]
async fn an_already_expired_token_is_an_error() {
    let (_clock, source, cache) = setup(Some(Duration::ZERO));
    let text = chain_text(&cache.token().await.unwrap_err());
    assert!(text.contains("already expired"), "{text}");
    assert_eq!(source.calls(), 1);
}

#[tokio::test]
async fn nothing_prints_the_token() {
    use std::io::Write;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let (clock, source, cache) = setup(Some(HOUR));
    let token = cache.token().await.unwrap();
    cache.invalidate(token.secret());
    source.fail(TokenErrorKind::Transient, None);
    clock.advance(HOUR * 2);
    let error = cache.token().await.unwrap_err();
    let printed = format!(
        "{token:?} {cache:?} {error} {error:?} {} {}",
        serde_json::to_string(&cache.status()).unwrap(),
        String::from_utf8_lossy(&buffer.0.lock().unwrap())
    );
    assert!(
        printed.contains("token fetch failed"),
        "logs were captured: {printed}"
    );
    assert!(!printed.contains("fake-token"), "{printed}");
}
