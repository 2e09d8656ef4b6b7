//! Opening one `AsyncPgConnection` with a fresh token, for the pool and the migration engine.

use std::collections::VecDeque;
use std::sync::{Mutex, Weak};

use cloud_pg_auth::{PgConnector, RawConnection, chain_text};
use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::SetupCallback;

use crate::Error;

/// Opens a connection through the core's connector (token, TLS policy, retry once after an
/// auth failure) and hands its I/O half to diesel-async, which drives it itself so that
/// LISTEN/NOTIFY and connection errors reach the `AsyncPgConnection`.
pub(crate) async fn open(connector: &PgConnector) -> Result<AsyncPgConnection, Error> {
    let (client, connection) = connector.connect_raw().await?;
    let connection = match connection {
        RawConnection::Tls(io) => {
            AsyncPgConnection::try_from_client_and_connection(client, io).await
        }
        RawConnection::Plain(io) => {
            AsyncPgConnection::try_from_client_and_connection(client, io).await
        }
        other => {
            // A transport this crate does not know yet: drive it on our own task.
            drop(other.spawn());
            AsyncPgConnection::try_from(client).await
        }
    };
    connection.map_err(Error::Connection)
}

/// The pool's half of an engine: the connector and the causes of recent failed connects.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) connector: PgConnector,
    /// diesel-async's pool carries a failed connect only as `BadConnection(String)`; the real
    /// error waits here, keyed by that text, until `get()` picks it up.
    failures: Mutex<VecDeque<(String, cloud_pg_auth::Error)>>,
}

/// Enough for every concurrent checkout of a large pool; older causes are dropped.
const KEPT_FAILURES: usize = 64;

impl Shared {
    pub(crate) fn new(connector: PgConnector) -> Self {
        Self {
            connector,
            failures: Mutex::new(VecDeque::new()),
        }
    }

    fn remember(&self, text: String, error: cloud_pg_auth::Error) {
        let mut failures = self.failures.lock().unwrap();
        if failures.len() == KEPT_FAILURES {
            failures.pop_front();
        }
        failures.push_back((text, error));
    }

    /// The kept cause of the failure whose text diesel-async reported.
    pub(crate) fn take_failure(&self, text: &str) -> Option<cloud_pg_auth::Error> {
        let mut failures = self.failures.lock().unwrap();
        let index = failures.iter().position(|(t, _)| t == text)?;
        failures.remove(index).map(|(_, e)| e)
    }
}

/// The `custom_setup` of the pool's manager. It holds the engine's state weakly, so the
/// pool (which a user may have cloned) never keeps the credential and its refresher alive.
pub(crate) fn setup_callback(shared: Weak<Shared>) -> SetupCallback<AsyncPgConnection> {
    Box::new(move |_url| {
        let shared = shared.clone();
        Box::pin(async move {
            let Some(shared) = shared.upgrade() else {
                return Err(ConnectionError::BadConnection(Error::Disposed.to_string()));
            };
            match open(&shared.connector).await {
                Ok(connection) => Ok(connection),
                Err(Error::Connection(e)) => Err(e),
                Err(Error::Auth(e)) => {
                    let text = chain_text(&e);
                    shared.remember(text.clone(), e);
                    Err(ConnectionError::BadConnection(text))
                }
                Err(other) => Err(ConnectionError::BadConnection(chain_text(&other))),
            }
        })
    })
}
