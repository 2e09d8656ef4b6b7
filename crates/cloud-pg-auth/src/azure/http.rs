//! HTTP plumbing of the Azure source: one client per source, what the last response said
//! (status, `Retry-After`) for error classification, every body read with a size limit, and
//! the `az` runner (its output limited too).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use azure_core::http::headers::{Headers, RETRY_AFTER, RETRY_AFTER_MS, X_MS_RETRY_AFTER_MS};
use azure_core::http::policies::get_retry_after;
use azure_core::http::{AsyncRawResponse, HttpClient, Request};
use azure_core::time::OffsetDateTime;

use super::AzureOptions;
use super::limits::{MAX_CA_FILE, MAX_CLI_OUTPUT, read_body, read_stream};
use crate::error::{ConfigError, Error};
use crate::http::MAX_HTTP_BODY;
use crate::input::read_file;

/// Builds the HTTP client of one source (see [`crate::http::build_client`]), trusting the
/// certificates of `PGAUTH_AZURE_CA_FILE` too when it is set.
///
/// `identity_endpoint`: the client talks to a managed identity endpoint (link-local IMDS or a
/// local App Service endpoint), which must never go through an HTTP proxy.
pub(crate) fn build_client(
    options: &AzureOptions,
    identity_endpoint: bool,
) -> Result<Arc<dyn HttpClient>, Error> {
    let mut extra_roots = Vec::new();
    if let Some(path) = &options.ca_file {
        let pem = read_file(path, MAX_CA_FILE, "the file").map_err(|e| {
            ConfigError::new(
                "PGAUTH_AZURE_CA_FILE",
                format!(
                    "cannot read {}: {e}; point it at a PEM file of CA certificates",
                    path.display()
                ),
            )
        })?;
        extra_roots = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|certs| !certs.is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    "PGAUTH_AZURE_CA_FILE",
                    format!(
                        "{} holds no PEM certificate; point it at a CA certificate file",
                        path.display()
                    ),
                )
            })?;
    }
    let client =
        crate::http::build_client(options.timeout, identity_endpoint, extra_roots, "azure")?;
    Ok(Arc::new(client))
}

/// What the last HTTP response of a fetch said, for classifying a failure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ResponseFacts {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<Duration>,
}

pub(crate) type FactsSlot = Arc<Mutex<Option<ResponseFacts>>>;

tokio::task_local! {
    /// Set around one fetch; the recording client writes each response's facts into it.
    pub(crate) static LAST_RESPONSE: FactsSlot;
}

/// Wraps a client and notes each response's status and `Retry-After` in [`LAST_RESPONSE`],
/// so that errors the SDK reports without them can still be classified; and reads each body
/// here, at most [`MAX_HTTP_BODY`] bytes, so that neither the SDK nor our managed identity
/// client ever collects an unbounded one (a larger body is an error holding `TooLarge`).
#[derive(Debug)]
pub(crate) struct RecordingClient {
    inner: Arc<dyn HttpClient>,
}

impl RecordingClient {
    pub(crate) fn new(inner: Arc<dyn HttpClient>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl HttpClient for RecordingClient {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let response = self.inner.execute_request(request).await?;
        let (status, headers, body) = response.deconstruct();
        let facts = ResponseFacts {
            status: u16::from(status),
            retry_after: retry_after(&headers),
        };
        let _ = LAST_RESPONSE.try_with(|slot| *slot.lock().unwrap() = Some(facts));
        let body = read_body(&headers, body, MAX_HTTP_BODY).await?;
        Ok(AsyncRawResponse::from_bytes(status, headers, body))
    }
}

/// The server's advice on when to retry: `Retry-After` in seconds or as an HTTP date (the
/// time left until then, zero once it has passed), or the millisecond variants Azure
/// services send, in azure_core's order. azure_core's parser reads them.
pub(crate) fn retry_after(headers: &Headers) -> Option<Duration> {
    retry_after_at(headers, OffsetDateTime::now_utc)
}

/// [`retry_after`] with `now` for the clock (tests).
fn retry_after_at(headers: &Headers, now: fn() -> OffsetDateTime) -> Option<Duration> {
    // One header at a time: azure_core stops at the first header it can read, and a
    // negative value (which std's Duration cannot hold) should not hide the next one.
    [X_MS_RETRY_AFTER_MS, RETRY_AFTER_MS, RETRY_AFTER]
        .iter()
        .find_map(|name| {
            get_retry_after(headers, now, std::slice::from_ref(name))
                .and_then(|after| Duration::try_from(after).ok())
        })
}

/// Runs `az` for [`azure_identity::AzureCliCredential`] with the configured search path and
/// no stdin, reads at most [`MAX_CLI_OUTPUT`] bytes of each output stream, and kills it when
/// it writes more or the fetch is abandoned (timeout).
pub(crate) struct CliExecutor {
    search_path: Option<OsString>,
}

impl CliExecutor {
    pub(crate) fn new(search_path: Option<OsString>) -> Self {
        Self { search_path }
    }
}

impl fmt::Debug for CliExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CliExecutor").finish_non_exhaustive()
    }
}

#[async_trait]
impl azure_identity::Executor for CliExecutor {
    async fn run(&self, program: &OsStr, args: &[&OsStr]) -> std::io::Result<Output> {
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(path) = &self.search_path {
            command.env("PATH", path);
        }
        let mut child = command.spawn()?;
        // try_join: the first stream over its limit ends both reads; dropping `child` then
        // kills the process, which may still be writing.
        let (stdout, stderr) = tokio::try_join!(
            read_stream(
                child.stdout.take(),
                MAX_CLI_OUTPUT,
                "the azure cli's output"
            ),
            read_stream(
                child.stderr.take(),
                MAX_CLI_OUTPUT,
                "the azure cli's error output"
            ),
        )?;
        let status = child.wait().await?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}

#[cfg(test)]
mod tests {
    use azure_core::http::headers::HeaderName;

    use super::*;

    /// Wednesday 21 October 2015, 07:28:00 UTC.
    fn fixed_now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_445_412_480).unwrap()
    }

    fn check(pairs: &[(&'static str, &str)], expected: Option<Duration>) {
        let mut headers = Headers::new();
        for (name, value) in pairs {
            headers.insert(HeaderName::from_static(name), value.to_string());
        }
        assert_eq!(retry_after_at(&headers, fixed_now), expected, "{pairs:?}");
    }

    #[test]
    fn retry_after_reads_seconds_dates_and_milliseconds() {
        let secs = Duration::from_secs;
        check(&[], None);
        check(&[("retry-after", "7")], Some(secs(7)));
        check(&[("retry-after", "0")], Some(Duration::ZERO));
        // An HTTP date (IMF-fixdate): the time left until then, none once it has passed.
        check(
            &[("retry-after", "Wed, 21 Oct 2015 07:28:30 GMT")],
            Some(secs(30)),
        );
        check(
            &[("retry-after", "Thu, 22 Oct 2015 07:28:00 GMT")],
            Some(secs(86_400)),
        );
        check(
            &[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")],
            Some(Duration::ZERO),
        );
        check(
            &[("retry-after", "Tue, 20 Oct 2015 07:28:00 GMT")],
            Some(Duration::ZERO),
        );
        check(
            &[("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT")],
            Some(secs(253_402_300_799 - 1_445_412_480)),
        );
        // Huge numbers: as large as the server says (the cache caps them), or none beyond i64.
        check(
            &[("retry-after", "9223372036854775807")],
            Some(secs(i64::MAX.unsigned_abs())),
        );
        check(&[("retry-after", "18446744073709551616")], None);
        check(
            &[("retry-after-ms", "9223372036854775807")],
            Some(Duration::from_millis(i64::MAX.unsigned_abs())),
        );
        // The millisecond headers come first.
        check(
            &[("retry-after-ms", "1500"), ("retry-after", "7")],
            Some(Duration::from_millis(1500)),
        );
        check(
            &[("x-ms-retry-after-ms", "250"), ("retry-after-ms", "1500")],
            Some(Duration::from_millis(250)),
        );
        // Junk, negative values and dates in other forms are no hint; the next header counts.
        for junk in [
            "",
            "soon",
            "-5",
            "1.5",
            "7s",
            "Wed, 21 Oct 2015 07:28:30 PST",
            "Wednesday, 21-Oct-15 07:28:30 GMT",
            "2015-10-21T07:28:30Z",
            "Wed, 32 Oct 2015 07:28:30 GMT",
        ] {
            check(&[("retry-after", junk)], None);
            check(
                &[("retry-after-ms", junk), ("retry-after", "7")],
                Some(secs(7)),
            );
        }
        // Dates are for Retry-After only; the millisecond headers are numbers.
        check(&[("retry-after-ms", "Wed, 21 Oct 2015 07:28:30 GMT")], None);
    }
}
