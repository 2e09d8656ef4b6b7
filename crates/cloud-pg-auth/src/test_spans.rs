//! A tracing layer for tests that records every span's name and fields, so tests can check
//! what the spans say (and that no field holds a secret).

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Subscriber, subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

/// One span as recorded: its name and every field given a value, in order.
#[derive(Debug, Clone)]
pub(crate) struct SpanRecord {
    pub(crate) id: u64,
    pub(crate) name: &'static str,
    pub(crate) fields: Vec<(String, String)>,
}

impl SpanRecord {
    /// The last value recorded for `field`.
    pub(crate) fn get(&self, field: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(name, _)| name == field)
            .map(|(_, value)| value.as_str())
    }
}

/// The spans recorded so far, shared with the layer.
#[derive(Debug, Clone, Default)]
pub(crate) struct SpanLog(Arc<Mutex<Vec<SpanRecord>>>);

impl SpanLog {
    /// The spans named `name`.
    pub(crate) fn named(&self, name: &str) -> Vec<SpanRecord> {
        self.all().into_iter().filter(|s| s.name == name).collect()
    }

    /// Every span recorded.
    pub(crate) fn all(&self) -> Vec<SpanRecord> {
        self.0.lock().unwrap().clone()
    }

    /// Panics when any field of any span contains `secret`.
    pub(crate) fn assert_never_shows(&self, secret: &str) {
        for span in self.all() {
            for (field, value) in &span.fields {
                assert!(
                    !value.contains(secret),
                    "span {} field {field} shows a secret",
                    span.name
                );
            }
        }
    }
}

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .push((field.name().to_string(), format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_string(), value.to_string()));
    }
}

impl<S> Layer<S> for SpanLog
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: Context<'_, S>) {
        let mut fields = Vec::new();
        attrs.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().push(SpanRecord {
            id: id.into_u64(),
            name: attrs.metadata().name(),
            fields,
        });
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut log = self.0.lock().unwrap();
        // Ids are reused once a span closes: the latest span with this id is the live one.
        if let Some(span) = log.iter_mut().rev().find(|s| s.id == id.into_u64()) {
            values.record(&mut Fields(&mut span.fields));
        }
    }
}

/// Runs the future `make` returns (given the log, to wait on) on a current-thread runtime
/// with a [`SpanLog`] as this thread's subscriber: spawned tasks run on the same thread, so
/// their spans are recorded too.
pub(crate) fn with_span_log<T, Fut>(make: impl FnOnce(SpanLog) -> Fut) -> (T, SpanLog)
where
    Fut: Future<Output = T>,
{
    let log = SpanLog::default();
    let future = make(log.clone());
    let subscriber = tracing_subscriber::registry().with(log.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let output = subscriber::with_default(subscriber, || runtime.block_on(future));
    (output, log)
}
