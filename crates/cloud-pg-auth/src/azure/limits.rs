//! Size limits on everything the Azure source reads from outside the process: HTTP bodies,
//! the federated token file, the `az` CLI's output and the CA file. Whatever sends more is
//! refused once the limit is passed, before it is all in memory: an endpoint, proxy or file
//! that misbehaves costs at most the limit, never an allocation of its choosing. The HTTP
//! body limit and the file reader are the core's (`crate::http`, `crate::input`).

use std::error::Error as StdError;
use std::io;

use azure_core::error::ErrorKind;
use azure_core::http::AsyncResponseBody;
use azure_core::http::headers::{HeaderName, Headers};
use futures_util::StreamExt as _;
use tokio::io::{AsyncRead, AsyncReadExt as _};

use crate::input::TooLarge;

/// The workload identity token file: a Kubernetes projected service account token is 1 to
/// 2 KiB. 64 KiB is generous for any issuer's assertion and far from any real file mistake
/// (a log or a binary put in its place).
pub(crate) const MAX_FEDERATED_TOKEN_FILE: usize = 64 << 10;

/// Each of the `az` CLI's stdout and stderr: the token JSON is about 3 to 8 KiB, and an error
/// with a Python traceback tens of KiB. Same bound as an HTTP body, for the same answer.
pub(crate) const MAX_CLI_OUTPUT: usize = 1 << 20;

/// `PGAUTH_AZURE_CA_FILE`: the whole Mozilla root bundle as PEM is about 220 KiB, so 1 MiB
/// holds any bundle a person would point at.
pub(crate) const MAX_CA_FILE: usize = 1 << 20;

/// The [`TooLarge`] anywhere in an error chain, also inside an `io::Error`.
pub(crate) fn too_large_in<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a TooLarge> {
    let mut next: Option<&'a (dyn StdError + 'static)> = Some(error);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<TooLarge>() {
            return Some(found);
        }
        // `io::Error::source` skips the error it wraps: look inside.
        if let Some(found) = e
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<TooLarge>())
        {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// Reads a response body of at most `limit` bytes. A `Content-Length` above the limit is
/// refused before reading; a body without one (chunked, or until the connection closes) is
/// refused as soon as it passes the limit.
pub(crate) async fn read_body(
    headers: &Headers,
    mut body: AsyncResponseBody,
    limit: usize,
) -> azure_core::Result<Vec<u8>> {
    let too_large = || {
        azure_core::Error::new(
            ErrorKind::Io,
            TooLarge {
                what: "the response body",
                limit,
            },
        )
    };
    let declared = headers
        .get_optional_str(&HeaderName::from_static("content-length"))
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        if chunk.len() > limit - out.len() {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Reads a child's output stream to its end, refusing more than `limit` bytes (the caller
/// then drops the child, which kills it).
pub(crate) async fn read_stream(
    stream: Option<impl AsyncRead + Unpin>,
    limit: usize,
    what: &'static str,
) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    if let Some(stream) = stream {
        stream.take(limit as u64 + 1).read_to_end(&mut out).await?;
    }
    if out.len() > limit {
        return Err(io::Error::other(TooLarge { what, limit }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::read_file;

    #[test]
    fn files_above_the_limit_are_found_in_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![b'a'; 10]).unwrap();
        let e = read_file(&path, 9, "the file").unwrap_err();
        let wrapped = azure_core::Error::new(ErrorKind::Credential, e);
        let found = too_large_in(&wrapped).expect("found through io::Error");
        assert_eq!((found.what, found.limit), ("the file", 9));
    }
}
