//! The session itself: the server's greeting to the client, then bytes both ways until
//! either side closes. After the login the proxy reads nothing: queries, COPY, notices and
//! errors pass as they are, and the session outlives the token it was opened with, as a
//! pooled connection does.

use std::io;

use cloud_pg_auth::net::Upstream;
use tokio::io::AsyncWriteExt as _;

use super::listener::ClientStream;

/// Buffer per direction: a `pg_dump` or a COPY moves large rows; 64 KiB keeps the number
/// of reads and TLS records low without holding much memory per session.
const BUFFER: usize = 64 * 1024;

/// Bytes moved, for the debug log.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Moved {
    pub to_server: u64,
    pub to_client: u64,
}

/// Sends `greeting` to the client, then relays until one side closes.
pub(crate) async fn relay(
    client: &mut ClientStream,
    upstream: &mut Upstream,
    greeting: &[u8],
) -> io::Result<Moved> {
    client.write_all(greeting).await?;
    client.flush().await?;
    let (to_server, to_client) =
        tokio::io::copy_bidirectional_with_sizes(client, upstream, BUFFER, BUFFER).await?;
    Ok(Moved {
        to_server,
        to_client,
    })
}
