use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bb8::{ErrorSink, ManageConnection};
use cloud_pg_auth::PgConnector;
use tokio_postgres::Client;

use crate::Error;

/// bb8's manager for this crate: every new connection logs in through a [`PgConnector`], so
/// with a token fresh from the engine's own cache. (bb8-postgres's manager connects with a
/// fixed config, so it cannot change the password.)
///
/// The max connection lifetime is enforced here, at checkout and on return, rather than with
/// bb8's `max_lifetime`: that option starts bb8's reaper task, which ends only after the pool
/// is dropped, so a disposed engine would keep a task alive.
pub struct Manager {
    connector: PgConnector,
    max_lifetime: Option<Duration>,
    disposed: Arc<AtomicBool>,
}

impl Manager {
    /// A manager over `connector`; connections older than `max_lifetime` are replaced.
    #[must_use]
    pub fn new(connector: PgConnector, max_lifetime: Option<Duration>) -> Self {
        Self {
            connector,
            max_lifetime,
            disposed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The connector that opens the connections.
    #[must_use]
    pub fn connector(&self) -> &PgConnector {
        &self.connector
    }

    /// The max connection lifetime.
    #[must_use]
    pub fn max_lifetime(&self) -> Option<Duration> {
        self.max_lifetime
    }

    pub(crate) fn disposed_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.disposed)
    }

    fn is_disposed(&self) -> bool {
        self.disposed.load(Ordering::SeqCst)
    }

    fn expired(&self, client: &PgClient) -> bool {
        self.max_lifetime.is_some_and(|max| client.age() >= max)
    }
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("connector", &self.connector)
            .field("max_lifetime", &self.max_lifetime)
            .field("disposed", &self.is_disposed())
            .finish()
    }
}

impl ManageConnection for Manager {
    type Connection = PgClient;
    type Error = Error;

    async fn connect(&self) -> Result<PgClient, Error> {
        if self.is_disposed() {
            return Err(Error::Disposed);
        }
        // The I/O task needs no watching: it ends when the client is dropped.
        let (client, _task) = self.connector.connect().await?;
        if self.is_disposed() {
            // Opened while the engine was being disposed: it would outlive the pool.
            return Err(Error::Disposed);
        }
        Ok(PgClient {
            client,
            opened: Instant::now(),
            returned: false,
        })
    }

    async fn is_valid(&self, client: &mut PgClient) -> Result<(), Error> {
        if self.is_disposed() {
            // Dispose is taking idle connections out; has_broken() drops each on return.
            return Ok(());
        }
        // A connection fresh from connect() is not judged here (with a tiny lifetime it would
        // never be handed out); one that has been returned before is.
        if client.returned && self.expired(client) {
            return Err(Error::Expired);
        }
        client.simple_query("").await?;
        Ok(())
    }

    fn has_broken(&self, client: &mut PgClient) -> bool {
        client.returned = true;
        self.is_disposed() || client.is_closed() || self.expired(client)
    }
}

/// A pooled connection: a [`tokio_postgres::Client`] (it derefs to one) and when it was
/// opened.
pub struct PgClient {
    client: Client,
    opened: Instant,
    returned: bool,
}

impl PgClient {
    /// How long ago the connection was opened.
    #[must_use]
    pub fn age(&self) -> Duration {
        self.opened.elapsed()
    }

    /// The client, taken out of the pool's bookkeeping.
    #[must_use]
    pub fn into_inner(self) -> Client {
        self.client
    }
}

impl Deref for PgClient {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for PgClient {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl fmt::Debug for PgClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgClient")
            .field("closed", &self.client.is_closed())
            .field("age", &self.age())
            .finish()
    }
}

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
            .unwrap()
            .as_ref()
            .filter(|(at, _)| *at >= since)
            .map(|(_, e)| Arc::clone(e))
    }

    fn set(&self, error: Error) {
        *self.0.lock().unwrap() = Some((Instant::now(), Arc::new(error)));
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
            // Routine: the manager retired an old connection, or dispose is under way.
            Error::Expired | Error::Disposed => {}
            error => {
                tracing::warn!(error = %cloud_pg_auth::chain_text(&error), "could not open or check a pooled connection");
                self.0.set(error);
            }
        }
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<Error>> {
        Box::new(self.clone())
    }
}
