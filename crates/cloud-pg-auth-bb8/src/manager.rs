//! bb8's manager for this crate, its connection type, and the idle-connection drain that
//! stands in for the `close()` bb8 does not have.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bb8::ManageConnection;
use cloud_pg_auth::PgConnector;
use cloud_pg_auth::engine::LifecycleWatch;
use cloud_pg_auth::migrate::Driver;
use futures_util::FutureExt;
use tokio_postgres::Client;

use crate::{Error, Pool};

/// bb8's manager for this crate: every new connection logs in through a [`PgConnector`], so
/// with a token fresh from the engine's own cache. (bb8-postgres's manager connects with a
/// fixed config, so it cannot change the password.)
///
/// The max connection lifetime is enforced here, at checkout and on return, rather than with
/// bb8's `max_lifetime`: that option starts bb8's reaper task, which ends only after the pool
/// is dropped, so a disposed engine would keep a task alive.
///
/// The manager watches the engine without owning its credential. Once the engine is
/// disposed or dropped, every connection counts as broken when returned, idle ones fail the
/// checkout test, and new ones are refused with `Error::Disposed`, also for a clone of the
/// pool.
pub struct Manager {
    connector: PgConnector,
    max_lifetime: Option<Duration>,
    engine: LifecycleWatch,
    drain: Drain,
}

impl Manager {
    pub(crate) fn new(
        connector: PgConnector,
        max_lifetime: Option<Duration>,
        engine: LifecycleWatch,
        drain: Drain,
    ) -> Self {
        Self {
            connector,
            max_lifetime,
            engine,
            drain,
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

    fn expired(&self, client: &PgClient) -> bool {
        self.max_lifetime.is_some_and(|max| client.age() >= max)
    }
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("connector", &self.connector)
            .field("max_lifetime", &self.max_lifetime)
            .field("engine", &self.engine)
            .finish()
    }
}

impl ManageConnection for Manager {
    type Connection = PgClient;
    type Error = Error;

    async fn connect(&self) -> Result<PgClient, Error> {
        if self.engine.is_closed() {
            return Err(Error::Disposed);
        }
        let client = Self::open(&self.connector).await?;
        if self.engine.is_closed() {
            // Opened while the engine went away: nothing would ever close it.
            return Err(Error::Disposed);
        }
        Ok(PgClient {
            client,
            opened: Instant::now(),
            returned: false,
        })
    }

    async fn is_valid(&self, client: &mut PgClient) -> Result<(), Error> {
        if self.engine.is_closed() {
            // The engine's drain takes idle connections out to drop them (has_broken); anyone
            // else, such as a pool clone, gets none.
            return if self.drain.running() {
                Ok(())
            } else {
                Err(Error::Disposed)
            };
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
        self.engine.is_closed() || client.is_closed() || self.expired(client)
    }
}

/// Empties bb8's idle list, as far as it can without awaiting: bb8 has no `close()`. While it
/// runs, the manager passes idle connections at checkout; each is dropped on return
/// (`has_broken`). Run only after the engine's watch is closed.
#[derive(Clone, Default)]
pub(crate) struct Drain(Arc<AtomicBool>);

impl Drain {
    fn running(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Checks the idle connections out and drops them. A checkout that would wait (none
    /// idle any more) is abandoned, so this never blocks. Needs a tokio runtime (bb8's
    /// checkout timeout).
    pub(crate) fn idle_connections(&self, pool: &Pool) {
        self.0.store(true, Ordering::SeqCst);
        while pool.state().idle_connections > 0 {
            match pool.get().now_or_never() {
                Some(Ok(connection)) => drop(connection),
                _ => break,
            }
        }
        self.0.store(false, Ordering::SeqCst);
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
