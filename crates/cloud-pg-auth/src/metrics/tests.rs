//! The metrics as a recorder sees them: names, labels and values, recorded through a small
//! recorder installed for this thread only.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};

use super::*;
use crate::cache::{CacheOptions, TokenCache};
use crate::error::TokenErrorKind;
use crate::login::{AttemptError, LoginTarget};
use crate::testing::{FakeSource, offline_password_settings};

/// One value recorded: the metric's name, its labels (sorted) and the value.
type Sample = (String, Vec<(String, String)>, f64);

#[derive(Debug, Clone, Default)]
struct Log(Arc<Mutex<Vec<Sample>>>);

impl Log {
    /// The values recorded for `name` with exactly `labels`.
    fn values(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        let mut labels: Vec<_> = labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        labels.sort();
        let log = self.0.lock().unwrap();
        log.iter()
            .filter(|(n, l, _)| n == name && *l == labels)
            .map(|(_, _, v)| *v)
            .collect()
    }
}

/// The handle of one registered metric: each use appends a sample.
struct Handle {
    name: String,
    labels: Vec<(String, String)>,
    log: Log,
}

impl Handle {
    fn push(&self, value: f64) {
        let sample = (self.name.clone(), self.labels.clone(), value);
        self.log.0.lock().unwrap().push(sample);
    }
}

impl CounterFn for Handle {
    #[allow(clippy::cast_precision_loss)] // Test counts are small.
    fn increment(&self, value: u64) {
        self.push(value as f64);
    }
    #[allow(clippy::cast_precision_loss)]
    fn absolute(&self, value: u64) {
        self.push(value as f64);
    }
}

impl GaugeFn for Handle {
    fn increment(&self, value: f64) {
        self.push(value);
    }
    fn decrement(&self, value: f64) {
        self.push(-value);
    }
    fn set(&self, value: f64) {
        self.push(value);
    }
}

impl HistogramFn for Handle {
    fn record(&self, value: f64) {
        self.push(value);
    }
}

#[derive(Debug, Default)]
struct Recording(Log);

impl Recording {
    fn handle(&self, key: &Key) -> Arc<Handle> {
        let mut labels: Vec<_> = key
            .labels()
            .map(|l| (l.key().to_string(), l.value().to_string()))
            .collect();
        labels.sort();
        Arc::new(Handle {
            name: key.name().to_string(),
            labels,
            log: self.0.clone(),
        })
    }
}

impl Recorder for Recording {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.handle(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.handle(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.handle(key))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
struct Refused;

/// Runs `future` on a current-thread runtime with `recorder` installed for this thread: the
/// fetch task is spawned on the same thread, so its metrics are recorded too.
fn recorded<T>(future: impl Future<Output = T>) -> Log {
    let recorder = Recording::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    ::metrics::with_local_recorder(&recorder, || runtime.block_on(future));
    recorder.0
}

#[test]
fn the_recorder_sees_every_metric_with_its_labels() {
    const HOUR: Duration = Duration::from_secs(3600);
    let log = recorded(async {
        let (clock, source) = FakeSource::with_manual_clock(Some(HOUR));
        let options = CacheOptions::default().fallback_password("fallback-pw");
        let cache = TokenCache::with_options(source.clone(), options, Arc::new(clock.clone()));
        cache.token().await.unwrap();
        // The endpoint goes down and the token expires: the fallback password is used.
        source.fail(TokenErrorKind::Transient, None);
        clock.advance(HOUR * 2);
        assert!(cache.token().await.unwrap().is_fallback());

        let target = LoginTarget::from_settings(&offline_password_settings("pw")).unwrap();
        let calls = AtomicUsize::new(0);
        target
            .retry_once(|_| {
                let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
                async move {
                    if first {
                        Err(AttemptError::Server {
                            error: Refused,
                            sqlstate: Some("28P01".into()),
                        })
                    } else {
                        Ok(())
                    }
                }
            })
            .await
            .unwrap();
        target.count_opened();
    });
    let source = [("source", "callback")];
    let ok = [("source", "callback"), ("outcome", "ok")];
    let failed = [("source", "callback"), ("outcome", "transient")];
    assert_eq!(log.values(TOKEN_FETCHES, &ok), [1.0]);
    assert_eq!(log.values(TOKEN_FETCHES, &failed), [1.0]);
    assert_eq!(log.values(TOKEN_FETCH_SECONDS, &source).len(), 2);
    // A fresh hour-long token, then none valid.
    assert_eq!(log.values(TOKEN_VALIDITY_SECONDS, &source), [3600.0, 0.0]);
    assert_eq!(log.values(FALLBACK_USES, &source), [1.0]);
    let target = [("target", "127.0.0.1:1 as app")];
    assert_eq!(log.values(LOGINS_REFUSED, &target), [1.0]);
    assert_eq!(log.values(LOGIN_RETRIES, &target), [1.0]);
    assert_eq!(log.values(CONNECTIONS_OPENED, &target), [1.0]);
}
