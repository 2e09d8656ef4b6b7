//! Opening one `AsyncPgConnection` with a fresh token, for the pool and the migration engine.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use cloud_pg_auth::engine::chain_text;
use cloud_pg_auth::{PgConnector, RawConnection};
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

/// The causes of recent failed connects. diesel-async's pool carries a failed connect only
/// as `BadConnection(String)`; the real error waits here, keyed by that text, until `get()`
/// picks it up.
#[derive(Debug, Default)]
pub(crate) struct ConnectFailures {
    kept: Mutex<VecDeque<(String, Error)>>,
}

/// Enough for every concurrent checkout of a large pool; older causes are dropped.
const KEPT_FAILURES: usize = 64;

impl ConnectFailures {
    fn remember(&self, text: String, error: Error) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() == KEPT_FAILURES {
            kept.pop_front();
        }
        kept.push_back((text, error));
    }

    /// The kept cause of the failure whose text diesel-async reported.
    pub(crate) fn take(&self, text: &str) -> Option<Error> {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let index = kept.iter().position(|(t, _)| t == text)?;
        kept.remove(index).map(|(_, e)| e)
    }
}

/// The `custom_setup` of the pool's manager. The connector it holds keeps no credential
/// alive: once the engine's last handle is gone (or the engine was disposed), the
/// credential is closed and every connect through it fails with [`Error::Disposed`].
pub(crate) fn setup_callback(
    connector: PgConnector,
    failures: Arc<ConnectFailures>,
) -> SetupCallback<AsyncPgConnection> {
    Box::new(move |_url| {
        let connector = connector.clone();
        let failures = Arc::clone(&failures);
        Box::pin(async move {
            match open(&connector).await {
                Ok(connection) => Ok(connection),
                Err(Error::Connection(e)) => Err(e),
                Err(other) => {
                    let text = chain_text(&other);
                    failures.remember(text.clone(), other);
                    Err(ConnectionError::BadConnection(text))
                }
            }
        })
    })
}
