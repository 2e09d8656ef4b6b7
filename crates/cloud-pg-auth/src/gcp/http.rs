//! HTTP plumbing of the Google source: one reqwest client per source, every body read with a
//! size limit, token answers parsed, and failures sorted into kinds with a message that says
//! what to check.

use std::fmt;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::Secret;
use crate::error::{Error, TokenError, TokenErrorKind};
use crate::http::{MAX_HTTP_BODY, describe_json, one_line};

/// Builds the HTTP client of one source (see [`crate::http::build_client`]); for the
/// metadata server, a link-local or loopback address, without proxy.
pub(crate) fn build_client(
    timeout: Duration,
    metadata_server: bool,
) -> Result<reqwest::Client, Error> {
    crate::http::build_client(timeout, metadata_server, Vec::new(), "google")
}

/// `application/x-www-form-urlencoded` body of `pairs`.
pub(crate) fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Everything but RFC 3986's unreserved characters is encoded.
const ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes a query or form value.
pub(crate) fn encode(value: &str) -> String {
    utf8_percent_encode(value, ENCODED).to_string()
}

/// A response, its body read up to [`MAX_HTTP_BODY`].
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) body: Vec<u8>,
}

/// The body's length only: a successful answer holds an access token.
impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("retry_after", &self.retry_after)
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Why no reply came: the request failed, or the body was over the limit.
#[derive(Debug)]
pub(crate) enum SendError {
    Request(reqwest::Error),
    TooLarge,
}

/// Sends `request` and reads the reply with a size limit.
pub(crate) async fn send(request: reqwest::RequestBuilder) -> Result<Reply, SendError> {
    let mut response = request.send().await.map_err(SendError::Request)?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    if response
        .content_length()
        .is_some_and(|n| n > MAX_HTTP_BODY as u64)
    {
        return Err(SendError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(SendError::Request)? {
        if chunk.len() > MAX_HTTP_BODY - body.len() {
            return Err(SendError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Reply {
        status,
        retry_after,
        body,
    })
}

/// The reply to a failed send, as a [`TokenError`]: `what` names the endpoint in the message,
/// `hint` says what to check when it cannot be reached.
pub(crate) fn send_error(error: SendError, origin: &str, what: &str, hint: &str) -> TokenError {
    match error {
        SendError::TooLarge => TokenError::new(
            TokenErrorKind::Transient,
            origin,
            format!(
                "{what} sent more than a token answer (over {} MiB); {hint}",
                MAX_HTTP_BODY >> 20
            ),
        ),
        SendError::Request(e) => TokenError::new(
            TokenErrorKind::Transient,
            origin,
            format!("cannot reach {what}, or its answer broke off; {hint}"),
        )
        .with_cause(e),
    }
}

/// An access token as an endpoint returned it.
pub(crate) struct TokenAnswer {
    pub(crate) secret: Secret,
    pub(crate) expires_in: Duration,
}

/// Reads a token answer: `access_token` and `expires_in` (a number, or a number in a string).
pub(crate) fn parse_token(body: &[u8], what: &str) -> Result<TokenAnswer, String> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("{what} answered with a body that is not json ({e})"))?;
    let token = value
        .get("access_token")
        .and_then(serde_json::Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("{what}'s answer has no access_token"))?;
    let expires_in = value
        .get("expires_in")
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        })
        .filter(|s| *s > 0)
        .ok_or_else(|| format!("{what}'s answer has no usable expires_in"))?;
    Ok(TokenAnswer {
        secret: Secret::new(token),
        expires_in: Duration::from_secs(expires_in),
    })
}

/// The OAuth error code of a failed answer (`invalid_grant`), if it names one.
pub(crate) fn error_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    match value.get("error")? {
        serde_json::Value::String(code) => Some(code.clone()),
        // Google APIs' own shape: {"error": {"status": "PERMISSION_DENIED", ...}}.
        serde_json::Value::Object(inner) => inner
            .get("status")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string),
        _ => None,
    }
}

/// What a failed answer said, on one line of at most 300 characters: `description (code)`
/// of a JSON body, or the start of a text body (the metadata server answers in text).
pub(crate) fn describe(body: &[u8]) -> Option<String> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => describe_json(&value),
        Err(_) => {
            let text = one_line(String::from_utf8_lossy(body).trim());
            (!text.is_empty()).then_some(text)
        }
    }
}

/// `HTTP 400: text` or `HTTP 400`.
pub(crate) fn status_text(reply: &Reply) -> String {
    match describe(&reply.body) {
        Some(text) => format!("HTTP {}: {text}", reply.status),
        None => format!("HTTP {}", reply.status),
    }
}

/// The kind of a failed answer by status: 429 throttled, 408 and 5xx transient, the other
/// 4xx rejected (asking again will not help soon). 404 is rejected too: from the metadata
/// server it means no service account is attached, a configuration problem that retrying
/// does not fix (and from IAM, an impersonated service account that does not exist).
pub(crate) fn kind_of(status: u16) -> TokenErrorKind {
    match status {
        429 => TokenErrorKind::Throttled,
        408 | 500..=599 => TokenErrorKind::Transient,
        _ => TokenErrorKind::Rejected,
    }
}

/// Adds the server's `Retry-After` to an error.
pub(crate) fn with_retry(error: TokenError, reply: &Reply) -> TokenError {
    match reply.retry_after {
        Some(after) => error.with_retry_after(after),
        None => error,
    }
}
