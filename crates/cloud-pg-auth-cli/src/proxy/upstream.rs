//! The upstream login: a fresh token from the shared credential, a connection over the
//! core's verified TLS (`net::open_upstream`), the StartupMessage with the served role, and
//! the authentication exchange the server asks for: cleartext (a token, or a password),
//! SCRAM-SHA-256 or MD5 (passwords). A refused token is dropped from the cache and the
//! login retried once with a new one, as `PgConnector` does. Everything the server sends
//! after AuthenticationOk up to ReadyForQuery is kept, unchanged, for the client.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use cloud_pg_auth::AccessToken;
use cloud_pg_auth::engine::chain_text;
use cloud_pg_auth::net::{Upstream, open_upstream};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::ProxyState;
use super::wire;

/// A logged-in upstream session, ready to relay.
pub(crate) struct Opened {
    pub stream: Upstream,
    /// AuthenticationOk, ParameterStatus, BackendKeyData, notices and ReadyForQuery, as sent.
    pub greeting: Vec<u8>,
    /// The server's BackendKeyData.
    pub key: Option<(i32, i32)>,
    /// How long the login took, token included.
    pub elapsed: Duration,
}

/// Why there is no upstream session; the client gets `client_error`.
pub(crate) struct Failed {
    /// What to send the client: the server's own ErrorResponse, or one of ours.
    pub client_error: Vec<u8>,
    /// For the log line (never a secret: server texts and the core's error chains only).
    pub reason: String,
}

/// Protocol errors from the server: one attempt's outcome.
enum Attempt {
    Opened(Opened),
    /// The server refused the credentials (28P01/28000): worth one retry with a new token.
    Refused {
        raw: Vec<u8>,
        message: String,
    },
    Failed(Failed),
}

/// Logs in as the served role to `database`, passing the client's other startup
/// parameters (`params`) through.
pub(crate) async fn login(
    shared: &ProxyState,
    database: &str,
    params: &[(String, String)],
) -> Result<Opened, Failed> {
    let started = Instant::now();
    let login = async {
        let mut retried = false;
        loop {
            let token = shared.auth.token().await.map_err(|e| Failed {
                client_error: wire::error_response(
                    "08001",
                    "pgauth proxy could not get a token for the server",
                    Some("see the proxy's log; pgauth doctor checks every step"),
                ),
                reason: format!(
                    "no token: {}",
                    crate::redact::url_passwords(&chain_text(&e))
                ),
            })?;
            match attempt(shared, &token, database, params, started).await {
                Attempt::Opened(opened) => return Ok(opened),
                Attempt::Refused { raw, message } => {
                    if retried {
                        return Err(Failed {
                            client_error: raw,
                            reason: format!(
                                "the server refused the credentials twice, also with a new token: {message}"
                            ),
                        });
                    }
                    retried = true;
                    shared.count(|s| s.auth_retries += 1);
                    tracing::info!("the server refused the token; retrying once with a new one");
                    shared.auth.invalidate(token.secret());
                }
                Attempt::Failed(failed) => return Err(failed),
            }
        }
    };
    match tokio::time::timeout(shared.connect_timeout, login).await {
        Ok(result) => result,
        Err(_) => Err(Failed {
            client_error: wire::error_response(
                "08001",
                &format!(
                    "pgauth proxy could not log in to {} within {} s",
                    shared.endpoint.label(),
                    shared.connect_timeout.as_secs()
                ),
                Some("check that the server is reachable from the proxy (pgauth doctor)"),
            ),
            reason: "upstream connect timeout".to_string(),
        }),
    }
}

fn unreachable(shared: &ProxyState, reason: String) -> Attempt {
    Attempt::Failed(Failed {
        client_error: wire::error_response(
            "08001",
            &format!(
                "pgauth proxy could not connect to {}",
                shared.endpoint.label()
            ),
            Some("the proxy's log says why; pgauth doctor checks every step"),
        ),
        reason,
    })
}

fn protocol(reason: String) -> Attempt {
    Attempt::Failed(Failed {
        client_error: wire::error_response(
            "08P01",
            &format!("pgauth proxy: unexpected answer from the server ({reason})"),
            None,
        ),
        reason,
    })
}

async fn attempt(
    shared: &ProxyState,
    token: &AccessToken,
    database: &str,
    params: &[(String, String)],
    started: Instant,
) -> Attempt {
    let mut stream = match open_upstream(&shared.endpoint, &shared.policy, None).await {
        Ok(s) => s,
        Err(e) => {
            return unreachable(
                shared,
                crate::redact::url_passwords(&chain_text(&e)).to_string(),
            );
        }
    };
    let user = shared.user.as_str();
    let mut startup: Vec<(&str, &str)> = vec![("user", user), ("database", database)];
    startup.extend(
        params
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "user" | "database"))
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    if let Some(app) = &shared.application_name
        && !params.iter().any(|(k, _)| k == "application_name")
    {
        startup.push(("application_name", app.as_str()));
    }
    let mut buf = BytesMut::new();
    if frontend::startup_message(startup.iter().copied(), &mut buf).is_err() {
        return protocol("a startup parameter holds a NUL byte".into());
    }
    if let Err(e) = send(&mut stream, &mut buf).await {
        return unreachable(shared, e.to_string());
    }
    let mut scram: Option<ScramSha256> = None;
    // Authentication: the token is exposed here only, written into the password message.
    loop {
        let (raw, message) = match receive(&mut stream).await {
            Ok((raw, Some(message))) => (raw, message),
            // NegotiateProtocolVersion: we asked for 3.0 without options; a server that
            // answers it anyway goes on with 3.0.
            Ok((_, None)) => continue,
            Err(e) => return unreachable(shared, format!("the server closed the login: {e}")),
        };
        let sent = match message {
            Message::AuthenticationOk => break,
            Message::AuthenticationCleartextPassword => {
                frontend::password_message(token.secret().expose().as_bytes(), &mut buf)
            }
            Message::AuthenticationMd5Password(body) => {
                let hash = md5_hash(
                    user.as_bytes(),
                    token.secret().expose().as_bytes(),
                    body.salt(),
                );
                frontend::password_message(hash.as_bytes(), &mut buf)
            }
            Message::AuthenticationSasl(_) => {
                // After the type, length and code 10: NUL-terminated mechanism names.
                let offered = raw.get(9..).unwrap_or_default();
                if !offered
                    .split(|b| *b == 0)
                    .any(|m| m == SCRAM_SHA_256.as_bytes())
                {
                    return protocol("SASL without SCRAM-SHA-256".into());
                }
                // No channel binding: the client's TLS ends at the proxy, and the
                // upstream TLS is verified by name already.
                let state = ScramSha256::new(
                    token.secret().expose().as_bytes(),
                    ChannelBinding::unsupported(),
                );
                let sent =
                    frontend::sasl_initial_response(SCRAM_SHA_256, state.message(), &mut buf);
                scram = Some(state);
                sent
            }
            Message::AuthenticationSaslContinue(body) => {
                let Some(state) = scram.as_mut() else {
                    return protocol("SASL continue without a SASL start".into());
                };
                if state.update(body.data()).is_err() {
                    return protocol("a malformed SCRAM message".into());
                }
                frontend::sasl_response(state.message(), &mut buf)
            }
            Message::AuthenticationSaslFinal(body) => {
                let Some(state) = scram.as_mut() else {
                    return protocol("SASL final without a SASL start".into());
                };
                if state.finish(body.data()).is_err() {
                    return protocol("the server's SCRAM signature does not verify".into());
                }
                continue;
            }
            Message::ErrorResponse(_) => {
                let (code, text) = error_fields(&raw);
                if cloud_pg_auth::login::is_refused_login(Some(code.as_str())) {
                    return Attempt::Refused {
                        raw,
                        message: format!("{code} {text}"),
                    };
                }
                return Attempt::Failed(Failed {
                    client_error: raw,
                    reason: format!("the server refused the login: {code} {text}"),
                });
            }
            // We asked for 3.0 without options; a server that answers this anyway goes on.
            Message::NoticeResponse(_) => continue,
            _ => {
                return protocol(format!(
                    "message {:?} during authentication; the proxy supports cleartext, MD5 and SCRAM-SHA-256",
                    raw.first().map(|b| *b as char)
                ));
            }
        };
        if sent.is_err() {
            return protocol("a credential too long for a message".into());
        }
        if let Err(e) = send(&mut stream, &mut buf).await {
            return unreachable(shared, e.to_string());
        }
    }
    // AuthenticationOk, then the session's parameters and key up to ReadyForQuery.
    let mut greeting = Vec::with_capacity(512);
    greeting.extend_from_slice(&[b'R', 0, 0, 0, 8, 0, 0, 0, 0]);
    let mut key = None;
    loop {
        let (raw, message) = match receive(&mut stream).await {
            Ok(m) => m,
            Err(e) => return unreachable(shared, format!("the server closed the login: {e}")),
        };
        match message {
            None => continue,
            Some(Message::BackendKeyData(body)) => {
                key = Some((body.process_id(), body.secret_key()));
            }
            Some(Message::ErrorResponse(_)) => {
                let (code, text) = error_fields(&raw);
                return Attempt::Failed(Failed {
                    client_error: raw,
                    reason: format!("the server ended the login: {code} {text}"),
                });
            }
            _ => {}
        }
        greeting.extend_from_slice(&raw);
        if raw.first() == Some(&b'Z') {
            break;
        }
    }
    Attempt::Opened(Opened {
        stream,
        greeting,
        key,
        elapsed: started.elapsed(),
    })
}

async fn send(stream: &mut Upstream, buf: &mut BytesMut) -> std::io::Result<()> {
    let bytes = buf.split();
    stream.write_all(&bytes).await?;
    stream.flush().await
}

/// Server messages during login are small; a bigger one is not a PostgreSQL server.
const MAX_LOGIN_MESSAGE: usize = 1 << 20;

/// One server message: its bytes as sent and its decoding (`None` for
/// NegotiateProtocolVersion, which postgres-protocol does not decode).
async fn receive(stream: &mut Upstream) -> std::io::Result<(Vec<u8>, Option<Message>)> {
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if !(4..=MAX_LOGIN_MESSAGE).contains(&len) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "invalid message length",
        ));
    }
    let mut raw = vec![0u8; len + 1];
    raw[..5].copy_from_slice(&head);
    stream.read_exact(&mut raw[5..]).await?;
    if head[0] == b'v' {
        return Ok((raw, None));
    }
    let message = Message::parse(&mut BytesMut::from(&raw[..]))?.ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, "incomplete message")
    })?;
    Ok((raw, Some(message)))
}

/// SQLSTATE and message of an ErrorResponse (`raw`: the whole message, type and length
/// included): fields of a type byte and a NUL-terminated value, then a NUL.
pub(crate) fn error_fields(raw: &[u8]) -> (String, String) {
    let mut code = String::new();
    let mut text = String::new();
    let mut rest = raw.get(5..).unwrap_or_default();
    while let Some((&kind, tail)) = rest.split_first() {
        if kind == 0 {
            break;
        }
        let end = tail.iter().position(|b| *b == 0).unwrap_or(tail.len());
        let value = String::from_utf8_lossy(&tail[..end]).into_owned();
        match kind {
            b'C' => code = value,
            b'M' => text = value,
            _ => {}
        }
        rest = tail.get(end + 1..).unwrap_or_default();
    }
    (code, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_fields_are_read_from_the_raw_message() {
        let raw = wire::error_response("28P01", "password authentication failed", Some("h"));
        assert_eq!(
            error_fields(&raw),
            (
                "28P01".to_string(),
                "password authentication failed".to_string()
            )
        );
        assert_eq!(error_fields(b"E\0\0\0\x04"), (String::new(), String::new()));
        assert_eq!(
            error_fields(b"E\0\0\0\x07Cxy"),
            ("xy".to_string(), String::new())
        );
    }
}
