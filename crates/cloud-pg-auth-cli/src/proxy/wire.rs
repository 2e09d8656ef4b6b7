//! The few PostgreSQL messages the proxy reads from clients or writes itself: startup
//! packets, ErrorResponse, NegotiateProtocolVersion and the password message. postgres-protocol
//! encodes and decodes the frontend side (what the proxy sends upstream); it has no encoder
//! for these server-side messages, so they are written here, each a few lines.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// SSLRequest code.
pub(crate) const SSL_REQUEST: i32 = 80_877_103;
/// GSSENCRequest code.
pub(crate) const GSSENC_REQUEST: i32 = 80_877_104;
/// CancelRequest code.
pub(crate) const CANCEL_REQUEST: i32 = 80_877_102;
/// Protocol 3.0, the one the proxy speaks on both sides.
pub(crate) const PROTOCOL_3_0: i32 = 196_608;
/// PostgreSQL's own limit on a startup packet.
const MAX_STARTUP_PACKET: usize = 10_000;
/// A password message carries at most a password; Entra tokens are a few kilobytes.
pub(crate) const MAX_PASSWORD_MESSAGE: usize = 65_536;

/// A startup-phase packet: its code and what follows it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Packet {
    pub code: i32,
    pub body: Vec<u8>,
}

/// What a client sent where a startup packet belongs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum StartupRead {
    /// The client hung up before a whole packet.
    Gone,
    /// The length word is out of range.
    BadLength,
    /// A packet.
    Packet(Packet),
}

/// Reads one startup-phase packet, exactly its bytes and no more: after an SSLRequest the
/// next bytes belong to the TLS handshake.
pub(crate) async fn read_startup<S: AsyncRead + Unpin>(stream: &mut S) -> StartupRead {
    let mut len = [0u8; 4];
    if stream.read_exact(&mut len).await.is_err() {
        return StartupRead::Gone;
    }
    let len = u32::from_be_bytes(len) as usize;
    if !(8..=MAX_STARTUP_PACKET).contains(&len) {
        return StartupRead::BadLength;
    }
    let mut rest = vec![0u8; len - 4];
    if stream.read_exact(&mut rest).await.is_err() {
        return StartupRead::Gone;
    }
    let code = i32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
    rest.drain(..4);
    StartupRead::Packet(Packet { code, body: rest })
}

/// The `name\0value\0...\0` list of a StartupMessage; `None` when malformed.
pub(crate) fn parse_params(body: &[u8]) -> Option<Vec<(String, String)>> {
    let (&last, fields) = body.split_last()?;
    if last != 0 {
        return None;
    }
    let mut parts = fields.split(|b| *b == 0);
    let mut out = Vec::new();
    while let Some(name) = parts.next() {
        if name.is_empty() {
            // The list's terminator: nothing may follow it.
            return parts.next().is_none().then_some(out);
        }
        let value = parts.next()?;
        out.push((
            String::from_utf8(name.to_vec()).ok()?,
            String::from_utf8(value.to_vec()).ok()?,
        ));
    }
    None
}

/// The (pid, key) of a CancelRequest body with a protocol 3.0 key (4 bytes).
pub(crate) fn cancel_key(body: &[u8]) -> Option<(i32, i32)> {
    let pid: [u8; 4] = body.get(..4)?.try_into().ok()?;
    let key: [u8; 4] = body.get(4..)?.try_into().ok()?;
    Some((i32::from_be_bytes(pid), i32::from_be_bytes(key)))
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(tag);
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A FATAL ErrorResponse with a SQLSTATE, a message and an optional hint (psql shows each).
pub(crate) fn error_response(code: &str, message: &str, hint: Option<&str>) -> Vec<u8> {
    let mut body = Vec::new();
    let mut field = |tag: u8, value: &str| {
        body.push(tag);
        // A NUL would end the field early; none of our texts has one, but a user name might.
        body.extend(value.bytes().map(|b| if b == 0 { b'?' } else { b }));
        body.push(0);
    };
    field(b'S', "FATAL");
    field(b'V', "FATAL");
    field(b'C', code);
    field(b'M', message);
    if let Some(hint) = hint {
        field(b'H', hint);
    }
    body.push(0);
    frame(b'E', &body)
}

/// NegotiateProtocolVersion: the newest minor version the proxy speaks (0) and the
/// protocol options (`_pq_.*`) it does not know.
pub(crate) fn negotiate_protocol_version(unknown_options: &[String]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0i32.to_be_bytes());
    body.extend_from_slice(&(unknown_options.len() as i32).to_be_bytes());
    for name in unknown_options {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
    }
    frame(b'v', &body)
}

/// AuthenticationCleartextPassword.
pub(crate) fn cleartext_password_request() -> Vec<u8> {
    frame(b'R', &3i32.to_be_bytes())
}

/// Writes `bytes`, flushes and closes the stream, ignoring errors: the client may be gone.
pub(crate) async fn send_and_close<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) {
    let _ = stream.write_all(bytes).await;
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
}

/// Sends a FATAL ErrorResponse and closes.
pub(crate) async fn fatal<S: AsyncWrite + Unpin>(
    stream: &mut S,
    code: &str,
    message: &str,
    hint: Option<&str>,
) {
    send_and_close(stream, &error_response(code, message, hint)).await;
}

/// Reads one regular message (type byte, length, body) of at most `max` body bytes.
pub(crate) async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    max: usize,
) -> io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if !(4..=max + 4).contains(&len) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "invalid message length",
        ));
    }
    let mut body = vec![0u8; len - 4];
    stream.read_exact(&mut body).await?;
    Ok((head[0], body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_params(body: &[u8], expected: Option<&[(&str, &str)]>) {
        let expected = expected.map(|pairs| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        });
        assert_eq!(parse_params(body), expected, "{body:?}");
    }

    #[test]
    fn startup_parameters() {
        check_params(
            b"user\0app\0database\0db\0\0",
            Some(&[("user", "app"), ("database", "db")]),
        );
        check_params(b"\0", Some(&[]));
        check_params(b"user\0app\0", None);
        check_params(b"user\0app\0\0trailing", None);
        check_params(b"user\0\xff\0\0", None);
        check_params(b"", None);
    }

    #[tokio::test]
    async fn startup_packets_are_read_exactly() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&8u32.to_be_bytes());
        bytes.extend_from_slice(&SSL_REQUEST.to_be_bytes());
        bytes.extend_from_slice(b"\x16tls");
        let mut reader = &bytes[..];
        assert_eq!(
            read_startup(&mut reader).await,
            StartupRead::Packet(Packet {
                code: SSL_REQUEST,
                body: Vec::new()
            })
        );
        assert_eq!(reader, b"\x16tls", "the TLS bytes stay unread");
        let mut short = &[0u8, 0, 0, 4][..];
        assert_eq!(read_startup(&mut short).await, StartupRead::BadLength);
        let mut huge = &[0u8, 1, 0, 0][..];
        assert_eq!(read_startup(&mut huge).await, StartupRead::BadLength);
        let mut cut = &[0u8, 0, 0, 16, 0][..];
        assert_eq!(read_startup(&mut cut).await, StartupRead::Gone);
    }

    #[test]
    fn server_messages_are_framed() {
        let e = error_response("53300", "too many", Some("wait"));
        assert_eq!(e[0], b'E');
        assert_eq!(
            u32::from_be_bytes([e[1], e[2], e[3], e[4]]) as usize,
            e.len() - 1
        );
        assert!(e.ends_with(b"C53300\0Mtoo many\0Hwait\0\0"), "{e:?}");
        let v = negotiate_protocol_version(&["_pq_.x".to_string()]);
        assert_eq!(&v[..9], b"v\0\0\0\x13\0\0\0\0");
        assert!(v.ends_with(b"\0\0\0\x01_pq_.x\0"));
        assert_eq!(cancel_key(&[0, 0, 0, 7, 0, 0, 0, 9]), Some((7, 9)));
        assert_eq!(cancel_key(&[0; 36]), None);
    }
}
