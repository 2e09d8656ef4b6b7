//! `target_session_attrs` for relayed sessions, as libpq checks it: the relay follows the
//! login message by message, holds back the server's first ReadyForQuery, asks
//! `SHOW transaction_read_only` itself and lets the client see the session only when it is
//! what the settings ask for. sqlx has no such check; done here, it covers every connection
//! (`PooledEngine::get`, `pool().acquire()`, the migration engine) before sqlx can pool it.

use std::io;

use cloud_pg_auth::TargetSessionAttrs;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// A login message above this is refused: the largest (SASL, ParameterStatus) are a few
/// hundred bytes.
const MAX_MESSAGE: usize = 1 << 20;

/// The query libpq sends for `read-write` and `read-only`.
const QUERY: &str = TargetSessionAttrs::SESSION_CHECK_QUERY;

/// How the login through the relay ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Splice the rest: the session passed the check (its ReadyForQuery was sent on), or the
    /// server refused the login (its error was sent on and it closes).
    Splice,
    /// The session is not what the settings ask for: the reason, for the client.
    Refused(String),
}

/// Relays the login after the StartupMessage: server messages one at a time to `local`, each
/// authentication request's answer from `local` back, until the server's first
/// ReadyForQuery, which is held back while the session is checked.
pub(super) async fn through_login<L, U>(
    local: &mut L,
    upstream: &mut U,
    wanted: TargetSessionAttrs,
) -> io::Result<Outcome>
where
    L: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let message = read_message(upstream).await?;
        match message[0] {
            b'R' => {
                send(local, &message).await?;
                if needs_answer(&message) {
                    let answer = read_message(local).await?;
                    send(upstream, &answer).await?;
                }
            }
            b'Z' => {
                let refusal = check(local, upstream, wanted).await?;
                if refusal.is_none() {
                    send(local, &message).await?;
                }
                return Ok(refusal.map_or(Outcome::Splice, Outcome::Refused));
            }
            b'E' => {
                send(local, &message).await?;
                return Ok(Outcome::Splice);
            }
            // ParameterStatus, BackendKeyData, NoticeResponse, NegotiateProtocolVersion.
            _ => send(local, &message).await?,
        }
    }
}

/// Asks the server, reads its answers up to ReadyForQuery, and judges.
async fn check<L, U>(
    local: &mut L,
    upstream: &mut U,
    wanted: TargetSessionAttrs,
) -> io::Result<Option<String>>
where
    L: AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    send(upstream, &query(QUERY)).await?;
    let (mut value, mut failure) = (None, None);
    loop {
        let message = read_message(upstream).await?;
        match message[0] {
            b'D' => value = first_column(&message[5..]),
            b'E' => failure = Some(error_text(&message[5..])),
            // A server parameter's value is the client's to know.
            b'S' => send(local, &message).await?,
            b'Z' => break,
            // RowDescription, CommandComplete, notices: answers to the relay's own query.
            _ => {}
        }
    }
    // The core's verdict: the same text the other adapters give.
    Ok(wanted.refusal(value.as_deref(), failure.as_deref()))
}

/// Whether an Authentication message asks the client for something: cleartext (3), MD5 (5),
/// SASL start (10) and continue (11), and the GSSAPI/SSPI exchanges (7, 8, 9) sqlx does not
/// speak (it hangs up, which ends the relay's read). Ok (0) and SASL final (12) do not.
fn needs_answer(message: &[u8]) -> bool {
    let code = message
        .get(5..9)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes);
    matches!(code, Some(2 | 3 | 5 | 7 | 8 | 9 | 10 | 11))
}

/// One message whole (type byte, length, body).
async fn read_message<R>(from: &mut R) -> io::Result<Vec<u8>>
where
    R: AsyncRead + Unpin,
{
    let mut header = [0u8; 5];
    from.read_exact(&mut header).await?;
    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if !(4..=MAX_MESSAGE).contains(&length) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "a protocol message {:?} of {length} bytes during login",
                char::from(header[0])
            ),
        ));
    }
    let mut message = vec![0u8; length + 1];
    message[..5].copy_from_slice(&header);
    from.read_exact(&mut message[5..]).await?;
    Ok(message)
}

async fn send<W>(to: &mut W, message: &[u8]) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    to.write_all(message).await?;
    // Over TLS, written bytes can wait in the session until flushed.
    to.flush().await
}

/// A simple Query message.
fn query(sql: &str) -> Vec<u8> {
    let length = u32::try_from(sql.len() + 5).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(sql.len() + 6);
    out.push(b'Q');
    out.extend(length.to_be_bytes());
    out.extend(sql.as_bytes());
    out.push(0);
    out
}

/// The first column of a DataRow body, `None` when NULL or malformed.
fn first_column(body: &[u8]) -> Option<String> {
    let columns = i16::from_be_bytes(body.get(..2)?.try_into().ok()?);
    if columns < 1 {
        return None;
    }
    let length = i32::from_be_bytes(body.get(2..6)?.try_into().ok()?);
    let length = usize::try_from(length).ok()?;
    let value = body.get(6..6 + length)?;
    Some(String::from_utf8_lossy(value).into_owned())
}

/// The `M` (message) field of an ErrorResponse body.
fn error_text(body: &[u8]) -> String {
    body.split(|&b| b == 0)
        .find_map(|field| field.strip_prefix(b"M"))
        .map(|m| String::from_utf8_lossy(m).into_owned())
        .unwrap_or_else(|| "no message".into())
}

#[cfg(test)]
#[path = "login_tests.rs"]
mod tests;
