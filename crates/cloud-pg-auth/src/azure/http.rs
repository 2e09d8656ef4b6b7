//! HTTP plumbing of the Azure source: one client per source, what the last response said
//! (status, `Retry-After`) for error classification, every body read with a size limit, and
//! the `az` runner (its output limited too).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use azure_core::http::headers::{HeaderName, Headers};
use azure_core::http::{AsyncRawResponse, HttpClient, Request};

use super::AzureOptions;
use super::limits::{
    MAX_CA_FILE, MAX_CLI_OUTPUT, MAX_HTTP_BODY, read_body, read_file, read_stream,
};
use crate::error::{ConfigError, Error};

/// Connection set-up never waits longer than this (or the request timeout, if shorter).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the HTTP client of one source.
///
/// Connection pooling is off: a token request happens a few times an hour, and an idle pooled
/// connection is bound to the tokio runtime that opened it, which is how a credential used
/// from a second runtime hangs (reqwest #1148/#2501, the "event loop is closed" class). Without
/// a pool, every request opens its connection on the runtime it runs on.
///
/// `identity_endpoint`: the client talks to a managed identity endpoint (link-local IMDS or a
/// local App Service endpoint), which must never go through an HTTP proxy.
pub(crate) fn build_client(
    options: &AzureOptions,
    identity_endpoint: bool,
) -> Result<Arc<dyn HttpClient>, Error> {
    let mut builder = reqwest::Client::builder()
        // The whole exchange is bounded by the source's fetch timeout; this only makes an
        // address that does not answer fail sooner.
        .connect_timeout(options.timeout.min(CONNECT_TIMEOUT))
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none());
    if identity_endpoint {
        builder = builder.no_proxy();
    }
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
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
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
        builder = builder.tls_certs_merge(certs);
    }
    let client = builder.build().map_err(|e| Error::Tls {
        message: "cannot build the https client for azure".to_string(),
        source: Some(Box::new(e)),
    })?;
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

/// The server's advice on when to retry: `Retry-After` in seconds, or the millisecond
/// variants Azure services send. HTTP dates are ignored (the cache's backoff applies).
pub(crate) fn retry_after(headers: &Headers) -> Option<Duration> {
    let get = |name: &'static str| headers.get_optional_str(&HeaderName::from_static(name));
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = get(name).and_then(|v| v.trim().parse::<u64>().ok()) {
            return Some(Duration::from_millis(ms));
        }
    }
    get("retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
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
