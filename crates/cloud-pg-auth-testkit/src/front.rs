//! The token-checking PostgreSQL front: negotiates TLS like a server that only has
//! `hostssl` entries, asks for a cleartext password, checks it (Entra token, RDS IAM token
//! or real password), then splices the session onto the real server's Unix socket.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf as _, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::emulator::EmulatorState;

pub(crate) const SSL_REQUEST: u32 = 80_877_103;
pub(crate) const GSSENC_REQUEST: u32 = 80_877_104;
pub(crate) const CANCEL_REQUEST: u32 = 80_877_102;
const MAX_STARTUP_PACKET: usize = 10_000;
const MAX_AUTH_TOKEN: usize = 65_535;
const AUTH_TIMEOUT: Duration = Duration::from_secs(60);

/// A stream that first yields bytes already read from it.
pub(crate) struct Prefixed<S> {
    prefix: Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

type ClientTls = TlsStream<Prefixed<TcpStream>>;

/// An `ErrorResponse` with severity FATAL.
pub(crate) fn error_response(code: &str, message: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (t, v) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        body.push(t);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = vec![b'E'];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

async fn fatal<S: AsyncWrite + Unpin>(s: &mut S, code: &str, message: &str) {
    let _ = s.write_all(&error_response(code, message)).await;
    let _ = s.flush().await;
    let _ = s.shutdown().await;
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads until `buf` holds at least `n` bytes; `false` on EOF.
async fn fill<S: AsyncRead + Unpin>(s: &mut S, buf: &mut BytesMut, n: usize) -> io::Result<bool> {
    while buf.len() < n {
        buf.reserve((n - buf.len()).max(4096));
        if s.read_buf(buf).await? == 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

enum Packet {
    Eof,
    Invalid(&'static str),
    /// The whole packet, length word included.
    Ok(BytesMut),
}

async fn read_startup<S: AsyncRead + Unpin>(s: &mut S, buf: &mut BytesMut) -> Packet {
    match fill(s, buf, 4).await {
        Ok(true) => {}
        _ => return Packet::Eof,
    }
    let len = be32(&buf[..4]) as usize;
    if !(8..=MAX_STARTUP_PACKET).contains(&len) {
        return Packet::Invalid("invalid length of startup packet");
    }
    match fill(s, buf, len).await {
        Ok(true) => Packet::Ok(buf.split_to(len)),
        _ => Packet::Eof,
    }
}

fn parse_params(body: &[u8]) -> Option<Vec<(String, String)>> {
    if body.last() != Some(&0) {
        return None;
    }
    let mut fields = body[..body.len() - 1].split(|b| *b == 0);
    let mut out = Vec::new();
    while let Some(k) = fields.next() {
        if k.is_empty() {
            break;
        }
        let v = fields.next()?;
        out.push((
            String::from_utf8_lossy(k).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ));
    }
    Some(out)
}

fn build_startup(code: u32, params: &[(String, String)]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

fn unsupported_protocol(code: u32) -> String {
    format!(
        "unsupported frontend protocol {}.{}: server supports 3.0 to 3.2",
        code >> 16,
        code & 0xffff
    )
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Accepts front connections until `shutdown`; dropping the task ends every session.
pub(crate) async fn serve(
    listener: TcpListener,
    core: Arc<EmulatorState>,
    acceptor: TlsAcceptor,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            r = shutdown.changed() => {
                if r.is_err() || *shutdown.borrow() {
                    break;
                }
            }
            acc = listener.accept() => {
                if acc.is_err() {
                    // E.g. out of file descriptors: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                if let Ok((stream, peer)) = acc {
                    let core = core.clone();
                    let acceptor = acceptor.clone();
                    conns.spawn(async move {
                        let _ = stream.set_nodelay(true);
                        handle(core, acceptor, stream, peer).await;
                    });
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

struct Session {
    stream: ClientTls,
    leftover: BytesMut,
    code: u32,
    params: Vec<(String, String)>,
    method: &'static str,
}

async fn handle(core: Arc<EmulatorState>, acceptor: TlsAcceptor, tcp: TcpStream, peer: SocketAddr) {
    let session = tokio::time::timeout(AUTH_TIMEOUT, async {
        let tls = negotiate(&core, &acceptor, tcp, peer).await?;
        authenticate(&core, tls).await
    })
    .await;
    if let Ok(Some(session)) = session {
        splice(&core, session).await;
    }
}

/// Plaintext phase: SSLRequest / GSSENCRequest / CancelRequest / direct TLS.
async fn negotiate(
    core: &EmulatorState,
    acceptor: &TlsAcceptor,
    mut tcp: TcpStream,
    peer: SocketAddr,
) -> Option<ClientTls> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if buf.is_empty() {
            match tcp.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
        if buf[0] == 0x16 {
            // Direct TLS (PostgreSQL 17+ `sslnegotiation=direct`): ALPN is mandatory.
            let prefix = buf.split().freeze();
            let tls = acceptor
                .accept(Prefixed { prefix, inner: tcp })
                .await
                .ok()?;
            if tls.get_ref().1.alpn_protocol() != Some(b"postgresql".as_slice()) {
                core.shared.login_rejected("protocol");
                return None;
            }
            return Some(tls);
        }
        let pkt = match read_startup(&mut tcp, &mut buf).await {
            Packet::Eof => return None,
            Packet::Invalid(msg) => {
                fatal(&mut tcp, "08P01", msg).await;
                core.shared.login_rejected("protocol");
                return None;
            }
            Packet::Ok(p) => p,
        };
        let code = be32(&pkt[4..8]);
        match code {
            SSL_REQUEST => {
                if !buf.is_empty() {
                    fatal(
                        &mut tcp,
                        "08P01",
                        "received unencrypted data after SSL request",
                    )
                    .await;
                    core.shared.login_rejected("protocol");
                    return None;
                }
                tcp.write_all(b"S").await.ok()?;
                return acceptor
                    .accept(Prefixed {
                        prefix: Bytes::new(),
                        inner: tcp,
                    })
                    .await
                    .ok();
            }
            GSSENC_REQUEST => {
                if !buf.is_empty() {
                    fatal(
                        &mut tcp,
                        "08P01",
                        "received unencrypted data after GSSAPI encryption request",
                    )
                    .await;
                    core.shared.login_rejected("protocol");
                    return None;
                }
                tcp.write_all(b"N").await.ok()?;
            }
            CANCEL_REQUEST => {
                forward_cancel(core, &pkt).await;
                return None;
            }
            c if c >> 16 == 3 => {
                let Some(params) = parse_params(&pkt[8..]) else {
                    fatal(
                        &mut tcp,
                        "08P01",
                        "invalid startup packet layout: expected terminator as last byte",
                    )
                    .await;
                    core.shared.login_rejected("protocol");
                    return None;
                };
                let Some(user) = param(&params, "user").filter(|u| !u.is_empty()) else {
                    fatal(
                        &mut tcp,
                        "28000",
                        "no PostgreSQL user name specified in startup packet",
                    )
                    .await;
                    core.shared.login_rejected("protocol");
                    return None;
                };
                let db = param(&params, "database")
                    .filter(|d| !d.is_empty())
                    .unwrap_or(user);
                let msg = format!(
                    "no pg_hba.conf entry for host \"{}\", user \"{user}\", database \"{db}\", no encryption",
                    peer.ip()
                );
                fatal(&mut tcp, "28000", &msg).await;
                core.shared.login_rejected("no_tls");
                return None;
            }
            c => {
                fatal(&mut tcp, "0A000", &unsupported_protocol(c)).await;
                core.shared.login_rejected("protocol");
                return None;
            }
        }
    }
}

/// Encrypted phase: startup packet, cleartext password, token/password check.
async fn authenticate(core: &EmulatorState, mut tls: ClientTls) -> Option<Session> {
    let mut buf = BytesMut::with_capacity(1024);
    let pkt = match read_startup(&mut tls, &mut buf).await {
        Packet::Eof => return None,
        Packet::Invalid(msg) => {
            fatal(&mut tls, "08P01", msg).await;
            core.shared.login_rejected("protocol");
            return None;
        }
        Packet::Ok(p) => p,
    };
    let code = be32(&pkt[4..8]);
    if code == CANCEL_REQUEST {
        forward_cancel(core, &pkt).await;
        return None;
    }
    if code >> 16 != 3 {
        fatal(&mut tls, "0A000", &unsupported_protocol(code)).await;
        core.shared.login_rejected("protocol");
        return None;
    }
    let Some(params) = parse_params(&pkt[8..]) else {
        fatal(
            &mut tls,
            "08P01",
            "invalid startup packet layout: expected terminator as last byte",
        )
        .await;
        core.shared.login_rejected("protocol");
        return None;
    };
    let Some(user) = param(&params, "user")
        .filter(|u| !u.is_empty())
        .map(str::to_string)
    else {
        fatal(
            &mut tls,
            "28000",
            "no PostgreSQL user name specified in startup packet",
        )
        .await;
        core.shared.login_rejected("protocol");
        return None;
    };

    // AuthenticationCleartextPassword
    tls.write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3]).await.ok()?;
    tls.flush().await.ok()?;
    if !fill(&mut tls, &mut buf, 5).await.ok()? {
        // The client hung up (libpq does so to prompt for a password).
        return None;
    }
    let msg_type = buf[0];
    let len = be32(&buf[1..5]) as usize;
    if msg_type != b'p' {
        fatal(
            &mut tls,
            "08P01",
            &format!("expected password response, got message type {msg_type}"),
        )
        .await;
        core.shared.login_rejected("protocol");
        return None;
    }
    if !(4..=MAX_AUTH_TOKEN + 4).contains(&len) {
        fatal(&mut tls, "08P01", "invalid message length").await;
        core.shared.login_rejected("protocol");
        return None;
    }
    if !fill(&mut tls, &mut buf, 1 + len).await.ok()? {
        return None;
    }
    let msg = buf.split_to(1 + len);
    let payload = &msg[5..];
    let Some(password) = payload.strip_suffix(&[0]) else {
        fatal(&mut tls, "08P01", "invalid password packet size").await;
        core.shared.login_rejected("protocol");
        return None;
    };
    let password = String::from_utf8_lossy(password).into_owned();
    let sni = tls.get_ref().1.server_name().map(str::to_string);

    match core.authenticate(&user, &password, sni.as_deref()).await {
        Ok(method) => Some(Session {
            stream: tls,
            leftover: buf,
            code,
            params,
            method,
        }),
        Err(rejection) => {
            tracing::debug!(user, reason = rejection.reason, "login refused");
            fatal(&mut tls, rejection.code, &rejection.message).await;
            core.shared.login_rejected(&rejection.reason);
            None
        }
    }
}

async fn forward_cancel(core: &EmulatorState, pkt: &[u8]) {
    if pkt.len() != 16 {
        return;
    }
    if let Ok(mut up) = UnixStream::connect(&core.socket_path).await {
        // Counted before sending: the cancelled query may fail before we read on.
        core.shared.cancel_forwarded();
        if up.write_all(pkt).await.is_ok() {
            // PostgreSQL closes the connection once it has signalled the backend.
            let mut sink = [0u8; 64];
            let _ = tokio::time::timeout(Duration::from_secs(5), up.read(&mut sink)).await;
        }
    }
}

async fn splice(core: &EmulatorState, s: Session) {
    let Session {
        stream: mut client,
        leftover,
        code,
        params,
        method,
    } = s;
    let mut up = match UnixStream::connect(&core.socket_path).await {
        Ok(u) => u,
        Err(_) => {
            fatal(
                &mut client,
                "57P03",
                "the database system is not accepting connections",
            )
            .await;
            core.shared.login_rejected("unavailable");
            return;
        }
    };
    if up.write_all(&build_startup(code, &params)).await.is_err() {
        fatal(
            &mut client,
            "57P03",
            "the database system is not accepting connections",
        )
        .await;
        core.shared.login_rejected("unavailable");
        return;
    }
    // Relay AuthenticationOk, ParameterStatus, BackendKeyData, ... up to ReadyForQuery.
    let mut ubuf = BytesMut::with_capacity(4096);
    loop {
        let ok = matches!(fill(&mut up, &mut ubuf, 5).await, Ok(true));
        if !ok {
            fatal(
                &mut client,
                "57P03",
                "the database system is not accepting connections",
            )
            .await;
            core.shared.login_rejected("unavailable");
            return;
        }
        let len = be32(&ubuf[1..5]) as usize;
        if !matches!(fill(&mut up, &mut ubuf, 1 + len).await, Ok(true)) {
            fatal(
                &mut client,
                "57P03",
                "the database system is not accepting connections",
            )
            .await;
            core.shared.login_rejected("unavailable");
            return;
        }
        let msg = ubuf.split_to(1 + len);
        if msg[0] == b'R' && len >= 8 && be32(&msg[5..9]) != 0 {
            fatal(
                &mut client,
                "28000",
                "the emulator's upstream server asked for authentication; it must trust its Unix socket",
            )
            .await;
            core.shared.login_rejected("upstream");
            return;
        }
        if client.write_all(&msg).await.is_err() {
            return;
        }
        match msg[0] {
            b'E' => {
                let _ = client.flush().await;
                let _ = client.shutdown().await;
                core.shared.login_rejected("upstream");
                return;
            }
            b'Z' => break,
            _ => {}
        }
    }
    if !ubuf.is_empty() && client.write_all(&ubuf).await.is_err() {
        return;
    }
    if client.flush().await.is_err() {
        return;
    }
    core.shared.login_accepted(method);
    if !leftover.is_empty() && up.write_all(&leftover).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_round_trip() {
        let params = vec![
            ("user".to_string(), "u".to_string()),
            ("database".to_string(), "d".to_string()),
        ];
        let pkt = build_startup(196_608, &params);
        assert_eq!(be32(&pkt[..4]) as usize, pkt.len());
        assert_eq!(parse_params(&pkt[8..]), Some(params));
        assert_eq!(parse_params(b"user\0u"), None);
    }

    #[test]
    fn error_response_layout() {
        let e = error_response("28P01", "nope");
        assert_eq!(e[0], b'E');
        assert_eq!(be32(&e[1..5]) as usize, e.len() - 1);
        assert!(e.ends_with(b"Mnope\0\0"));
    }
}
