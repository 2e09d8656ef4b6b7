//! Checks on what the process takes from outside it: files read with a size limit, and the
//! host of a URL or host setting (loopback or not). Plain std, so that settings and the
//! options of every cloud can use them without a feature.

use std::io::{self, Read as _};
use std::net::IpAddr;
use std::path::Path;

/// Something sent more than its limit.
#[derive(Debug, thiserror::Error)]
#[error("{what} is larger than {}, the most this client reads", size(*.limit))]
pub(crate) struct TooLarge {
    pub(crate) what: &'static str,
    pub(crate) limit: usize,
}

fn size(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

/// Reads a file of at most `limit` bytes; a larger one is an `InvalidData` error holding a
/// [`TooLarge`] for `what`. Only `limit + 1` bytes are ever read, so a log or a device put
/// in the file's place costs no more.
pub(crate) fn read_file(path: &Path, limit: usize, what: &'static str) -> io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut out = Vec::new();
    file.take(limit as u64 + 1).read_to_end(&mut out)?;
    if out.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            TooLarge { what, limit },
        ));
    }
    Ok(out)
}

/// Whether `host` is `localhost` or a loopback IP address (an IPv6 one with or without its
/// brackets).
#[must_use]
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The scheme and host of an `http://` or `https://` URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HttpUrl<'a> {
    pub(crate) https: bool,
    /// Without port, and without brackets for an IPv6 address.
    pub(crate) host: &'a str,
}

/// Reads the scheme and host of `url`; `None` when it is not `http(s)://host...`, has
/// user information (`user@`, which could hide the real host from a reader), or holds
/// blanks or control characters. Only what credentials checks need, not a URL parser.
pub(crate) fn http_url(url: &str) -> Option<HttpUrl<'_>> {
    let (https, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return None;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    (!host.is_empty()).then_some(HttpUrl { https, host })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_in_their_unit() {
        let text = |limit| TooLarge { what: "x", limit }.to_string();
        assert_eq!(
            text(1 << 20),
            "x is larger than 1 MiB, the most this client reads"
        );
        assert_eq!(
            text(64 << 10),
            "x is larger than 64 KiB, the most this client reads"
        );
        assert_eq!(
            text(100),
            "x is larger than 100 bytes, the most this client reads"
        );
    }

    #[test]
    fn files_above_the_limit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![b'a'; 10]).unwrap();
        assert_eq!(read_file(&path, 10, "the file").unwrap().len(), 10);
        let e = read_file(&path, 9, "the file").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let inner = e.get_ref().and_then(|e| e.downcast_ref::<TooLarge>());
        assert_eq!(inner.map(|t| (t.what, t.limit)), Some(("the file", 9)));
        let missing = read_file(&dir.path().join("missing"), 10, "the file").unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "",
            "example.com",
            "10.0.0.1",
            "169.254.169.254",
            "::",
            "localhost.",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn http_urls() {
        let url = |https, host| Some(HttpUrl { https, host });
        for (text, expected) in [
            (
                "https://oauth2.googleapis.com/token",
                url(true, "oauth2.googleapis.com"),
            ),
            ("http://127.0.0.1:8080/token", url(false, "127.0.0.1")),
            ("http://[::1]:9/x?y#z", url(false, "::1")),
            ("https://h", url(true, "h")),
            ("https://h?x", url(true, "h")),
            ("ftp://h/", None),
            ("https://", None),
            ("http://:80/", None),
            ("https://user@h/", None),
            ("https://h/a b", None),
            ("https://h/\n", None),
            ("h/token", None),
        ] {
            assert_eq!(http_url(text), expected, "{text}");
        }
    }
}
