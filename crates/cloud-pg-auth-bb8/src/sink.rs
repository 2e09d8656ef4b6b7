//! bb8's error sink for this crate: background connection failures are logged and the last
//! one kept, so a checkout that times out can say why.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use bb8::ErrorSink;

use crate::Error;

/// A failure and when it happened.
type Stamped = (Instant, Arc<Error>);

/// The last failure reported to the error sink.
#[derive(Clone, Default)]
pub(crate) struct LastError(Arc<Mutex<Option<Stamped>>>);

impl LastError {
    /// The last failure if it happened at or after `since`.
    pub(crate) fn since(&self, since: Instant) -> Option<Arc<Error>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|(at, _)| *at >= since)
            .map(|(_, e)| Arc::clone(e))
    }

    fn set(&self, error: Error) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((Instant::now(), Arc::new(error)));
    }
}

/// bb8's error sink: logs each background failure and keeps the last one for
/// [`Error::Timeout`].
#[derive(Clone)]
pub(crate) struct Sink(pub(crate) LastError);

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sink")
    }
}

impl ErrorSink<Error> for Sink {
    fn sink(&self, error: Error) {
        match error {
            // Routine: the manager retired an old connection, or the engine is gone.
            Error::Expired | Error::Disposed => {}
            error => {
                tracing::warn!(error = %cloud_pg_auth::engine::chain_text(&error), "could not open or check a pooled connection");
                self.0.set(error);
            }
        }
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<Error>> {
        Box::new(self.clone())
    }
}
