//! One client connection from accept to close: the client's startup, the connection
//! limit (53300 past it), the upstream login, the one status line, and the relay with the
//! session's cancel key registered while it lasts.

use std::sync::Arc;

use super::listener::{ClientStream, Peer};
use super::{ProxyState, cancel, client, relay, upstream, wire};

/// One client connection, start to end.
pub(crate) async fn serve(shared: Arc<ProxyState>, stream: ClientStream, peer: Peer) {
    let start = tokio::time::timeout(
        shared.startup_timeout,
        client::startup(&shared, stream, &peer),
    )
    .await;
    let login = match start {
        Ok(client::Start::Login(login)) => login,
        Ok(client::Start::Cancel(key)) => return cancel::forward(&shared, key).await,
        Ok(client::Start::Done) => return,
        Err(_) => {
            shared.count(|s| s.refused_protocol += 1);
            tracing::info!(client = %peer, "startup not finished in time: closed");
            return;
        }
    };
    let client::Login {
        mut stream,
        database,
        params,
    } = login;
    let Ok(_permit) = Arc::clone(&shared.sessions).try_acquire_owned() else {
        shared.count(|s| s.refused_limit += 1);
        tracing::info!(client = %peer, "refused: the proxy's connection limit is reached");
        wire::fatal(
            &mut stream,
            "53300",
            "sorry, too many clients already (pgauth proxy's connection limit)",
            Some("close idle sessions, or start the proxy with a higher --max-connections"),
        )
        .await;
        return;
    };
    let opened = match upstream::login(&shared, &database, &params).await {
        Ok(opened) => opened,
        Err(failed) => {
            shared.count(|s| s.upstream_failures += 1);
            tracing::warn!(
                client = %peer,
                user = %shared.user,
                database = %database,
                method = shared.method,
                "upstream login failed: {}",
                failed.reason
            );
            wire::send_and_close(&mut stream, &failed.client_error).await;
            return;
        }
    };
    let upstream::Opened {
        stream: mut upstream_stream,
        greeting,
        key,
        elapsed,
    } = opened;
    // The one status line per connection: who, as whom, how, how long the upstream took.
    tracing::info!(
        client = %peer,
        user = %shared.user,
        database = %database,
        method = shared.method,
        tls = stream.is_tls(),
        upstream_ms = elapsed.as_millis() as u64,
        "session opened"
    );
    let _registration = key.map(|k| cancel::Registration::new(&shared.keys, k));
    shared.count(|s| {
        s.sessions_opened += 1;
        s.active_sessions += 1;
    });
    let moved = relay::relay(&mut stream, &mut upstream_stream, &greeting).await;
    shared.count(|s| s.active_sessions -= 1);
    match moved {
        Ok(m) => tracing::debug!(
            client = %peer,
            to_server = m.to_server,
            to_client = m.to_client,
            "session closed"
        ),
        Err(e) => tracing::debug!(client = %peer, "session ended: {e}"),
    }
}
