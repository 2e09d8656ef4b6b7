//! Query cancellation. Clients get the server's own BackendKeyData unchanged (so
//! `pg_backend_pid()` and the key agree), and the proxy remembers which (pid, key) pairs it
//! handed out. A CancelRequest is forwarded only for one of those, over a new upstream
//! connection with the same verified TLS as a login: a cancel key is a capability, and
//! anything else arriving here is dropped without a reply, as PostgreSQL does.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::ProxyState;

/// The (pid, key) pairs of the sessions open now.
#[derive(Debug, Default)]
pub(crate) struct Keys {
    // A count, not a set: a restarted server could reuse a pid with the same key while an
    // old session's entry is still being removed.
    live: Mutex<HashMap<(i32, i32), usize>>,
}

impl Keys {
    pub(crate) fn register(&self, key: (i32, i32)) {
        *self.lock().entry(key).or_default() += 1;
    }

    pub(crate) fn unregister(&self, key: (i32, i32)) {
        let mut live = self.lock();
        if let Some(count) = live.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                live.remove(&key);
            }
        }
    }

    pub(crate) fn contains(&self, key: (i32, i32)) -> bool {
        self.lock().contains_key(&key)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(i32, i32), usize>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Removes a session's key when the session ends, however it ends.
pub(crate) struct Registration<'a> {
    keys: &'a Keys,
    key: (i32, i32),
}

impl<'a> Registration<'a> {
    pub(crate) fn new(keys: &'a Keys, key: (i32, i32)) -> Self {
        keys.register(key);
        Self { keys, key }
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.keys.unregister(self.key);
    }
}

/// How long to wait for the server to close a cancel connection: it does so once it has
/// signalled the backend, and nothing waits on the answer.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// Handles a CancelRequest for `key`: forwarded if a session of this proxy holds it.
pub(crate) async fn forward(shared: &ProxyState, key: Option<(i32, i32)>) {
    let Some(key) = key.filter(|k| shared.keys.contains(*k)) else {
        shared.count(|s| s.cancels_ignored += 1);
        tracing::info!("cancel request for a key this proxy did not hand out: ignored");
        return;
    };
    let sent = async {
        let mut upstream = cloud_pg_auth::net::open_upstream(
            &shared.endpoint,
            &shared.policy,
            Some(shared.connect_timeout),
        )
        .await
        .map_err(|e| cloud_pg_auth::engine::chain_text(&e))?;
        let mut packet = BytesMut::new();
        frontend::cancel_request(key.0, key.1, &mut packet);
        upstream
            .write_all(&packet)
            .await
            .map_err(|e| e.to_string())?;
        upstream.flush().await.map_err(|e| e.to_string())?;
        let mut sink = [0u8; 64];
        let _ = tokio::time::timeout(CANCEL_WAIT, upstream.read(&mut sink)).await;
        Ok::<(), String>(())
    };
    match sent.await {
        Ok(()) => {
            shared.count(|s| s.cancels_forwarded += 1);
            tracing::info!(pid = key.0, "cancel request forwarded");
        }
        Err(error) => {
            shared.count(|s| s.cancels_failed += 1);
            tracing::warn!(pid = key.0, "cancel request not forwarded: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_live_as_long_as_their_sessions() {
        let keys = Keys::default();
        assert!(!keys.contains((1, 2)));
        {
            let _a = Registration::new(&keys, (1, 2));
            let _b = Registration::new(&keys, (1, 2));
            assert!(keys.contains((1, 2)));
            assert!(
                !keys.contains((1, 3)),
                "the key must match, not only the pid"
            );
        }
        assert!(!keys.contains((1, 2)));
    }
}
