//! The client's side of the startup: SSLRequest (local TLS, or 'N'), GSSENCRequest ('N'),
//! CancelRequest, the StartupMessage (protocol 3.0; a newer minor version or a greased one
//! is answered with NegotiateProtocolVersion and served as 3.0), the check that the user
//! and database are ones this proxy serves, and the local password when one is set. Every
//! refusal is an ErrorResponse the client shows, then the connection closes.

use cloud_pg_auth::Secret;
use tokio::io::AsyncWriteExt as _;

use super::ProxyState;
use super::listener::{ClientStream, Peer};
use super::wire::{self, StartupRead};

/// What the client's startup asked for.
pub(crate) enum Start {
    /// A login that passed the checks: relay it.
    Login(Login),
    /// A CancelRequest (pid, key); `None` when its key is not a 3.0 one.
    Cancel(Option<(i32, i32)>),
    /// Refused (the client has its error) or gone.
    Done,
}

/// A client ready for the upstream login.
pub(crate) struct Login {
    pub stream: ClientStream,
    pub database: String,
    /// The client's startup parameters (user and database included; `_pq_` options not).
    pub params: Vec<(String, String)>,
}

/// Runs the client's startup on `stream`.
pub(crate) async fn startup(shared: &ProxyState, mut stream: ClientStream, peer: &Peer) -> Start {
    // SSLRequest and GSSENCRequest may come once each, before the StartupMessage.
    let mut ssl_asked = false;
    let mut gss_asked = false;
    loop {
        let packet = match wire::read_startup(&mut stream).await {
            StartupRead::Gone => return Start::Done,
            StartupRead::BadLength => {
                return refuse(
                    shared,
                    stream,
                    "08P01",
                    "invalid length of startup packet",
                    None,
                )
                .await;
            }
            StartupRead::Packet(p) => p,
        };
        match packet.code {
            wire::SSL_REQUEST if !ssl_asked && !stream.is_tls() => {
                ssl_asked = true;
                let tcp = match (stream, &shared.local_tls) {
                    (ClientStream::Tcp(tcp), Some(_)) => tcp,
                    (mut other, _) => {
                        // No local TLS here (none configured, or a Unix socket, which
                        // PostgreSQL never encrypts): libpq goes on in plaintext or gives up,
                        // as its sslmode says.
                        if other.write_all(b"N").await.is_err() {
                            return Start::Done;
                        }
                        stream = other;
                        continue;
                    }
                };
                let mut tcp = tcp;
                if tcp.write_all(b"S").await.is_err() {
                    return Start::Done;
                }
                let Some(acceptor) = &shared.local_tls else {
                    return Start::Done;
                };
                match acceptor.accept(tcp).await {
                    Ok(tls) => stream = ClientStream::Tls(Box::new(tls)),
                    Err(e) => {
                        shared.count(|s| s.refused_protocol += 1);
                        tracing::info!(client = %peer, "local tls handshake failed: {e}");
                        return Start::Done;
                    }
                }
            }
            wire::GSSENC_REQUEST if !gss_asked && !stream.is_tls() => {
                gss_asked = true;
                if stream.write_all(b"N").await.is_err() {
                    return Start::Done;
                }
            }
            wire::CANCEL_REQUEST => return Start::Cancel(wire::cancel_key(&packet.body)),
            code if code >> 16 == 3 => {
                return login(shared, stream, peer, code, &packet.body).await;
            }
            wire::SSL_REQUEST | wire::GSSENC_REQUEST => {
                return refuse(
                    shared,
                    stream,
                    "08P01",
                    "encryption requested twice or inside tls",
                    None,
                )
                .await;
            }
            code => {
                let message = format!(
                    "unsupported frontend protocol {}.{}: pgauth proxy supports 3.0",
                    (code >> 16) & 0xffff,
                    code & 0xffff
                );
                return refuse(shared, stream, "0A000", &message, None).await;
            }
        }
    }
}

async fn login(
    shared: &ProxyState,
    mut stream: ClientStream,
    peer: &Peer,
    code: i32,
    body: &[u8],
) -> Start {
    let Some(all) = wire::parse_params(body) else {
        return refuse(
            shared,
            stream,
            "08P01",
            "invalid startup packet layout: expected terminator as last byte",
            None,
        )
        .await;
    };
    let (options, params): (Vec<_>, Vec<_>) =
        all.into_iter().partition(|(k, _)| k.starts_with("_pq_."));
    if code != wire::PROTOCOL_3_0 || !options.is_empty() {
        // 3.2 (PostgreSQL 18) or a greased version: say we speak 3.0 and know no options;
        // the client then speaks 3.0 (and its cancel keys are 4 bytes, as upstream).
        let unknown: Vec<String> = options.into_iter().map(|(k, _)| k).collect();
        if stream
            .write_all(&wire::negotiate_protocol_version(&unknown))
            .await
            .is_err()
        {
            return Start::Done;
        }
    }
    if shared.require_tls && !peer.is_local() && !stream.is_tls() {
        return refuse(
            shared,
            stream,
            "28000",
            "pgauth proxy accepts connections from other machines only over tls",
            Some("connect with sslmode=require (or verify-full with the proxy's certificate)"),
        )
        .await;
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let Some(user) = param("user") else {
        return refuse(
            shared,
            stream,
            "28000",
            "no PostgreSQL user name specified in startup packet",
            None,
        )
        .await;
    };
    let database = param("database").unwrap_or(user).to_string();
    if user != shared.user {
        let message = format!(
            "pgauth proxy serves the role \"{}\", not \"{user}\"",
            shared.user
        );
        let hint = format!(
            "connect with user={} (eval \"$(pgauth proxy --print-env)\" sets it)",
            shared.user
        );
        return not_served(shared, stream, peer, &message, &hint).await;
    }
    if !shared.databases.contains(&database) {
        let message = format!(
            "pgauth proxy does not serve the database \"{database}\"; it serves {}",
            shared
                .databases
                .iter()
                .map(|d| format!("\"{d}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let hint = "start the proxy with --database NAME for each further database";
        return not_served(shared, stream, peer, &message, hint).await;
    }
    if let Some(expected) = &shared.local_password {
        match ask_password(&mut stream).await {
            Some(given) if given == *expected => {}
            Some(_) => {
                shared.count(|s| s.refused_password += 1);
                tracing::info!(client = %peer, user, "refused: wrong local password");
                wire::fatal(
                    &mut stream,
                    "28P01",
                    &format!("password authentication failed for user \"{user}\""),
                    Some("the proxy's local password is PGAUTH_PROXY_PASSWORD where it runs"),
                )
                .await;
                return Start::Done;
            }
            None => return Start::Done,
        }
    }
    Start::Login(Login {
        stream,
        database,
        params,
    })
}

async fn not_served(
    shared: &ProxyState,
    mut stream: ClientStream,
    peer: &Peer,
    message: &str,
    hint: &str,
) -> Start {
    shared.count(|s| s.refused_not_served += 1);
    tracing::info!(client = %peer, "refused: {message}");
    wire::fatal(&mut stream, "28000", message, Some(hint)).await;
    Start::Done
}

async fn refuse(
    shared: &ProxyState,
    mut stream: ClientStream,
    code: &str,
    message: &str,
    hint: Option<&str>,
) -> Start {
    shared.count(|s| s.refused_protocol += 1);
    wire::fatal(&mut stream, code, message, hint).await;
    Start::Done
}

/// Asks for a cleartext password (the client's link is TLS, a Unix socket or loopback)
/// and reads it; `None` if the client hung up or sent something else.
async fn ask_password(stream: &mut ClientStream) -> Option<Secret> {
    stream
        .write_all(&wire::cleartext_password_request())
        .await
        .ok()?;
    stream.flush().await.ok()?;
    // libpq hangs up here to prompt for a password, then connects again.
    let (kind, body) = wire::read_message(stream, wire::MAX_PASSWORD_MESSAGE)
        .await
        .ok()?;
    if kind != b'p' {
        wire::fatal(
            stream,
            "08P01",
            &format!(
                "expected a password message, got message type {:?}",
                kind as char
            ),
            None,
        )
        .await;
        return None;
    }
    let password = body.strip_suffix(&[0])?;
    Some(Secret::new(String::from_utf8_lossy(password).into_owned()))
}
