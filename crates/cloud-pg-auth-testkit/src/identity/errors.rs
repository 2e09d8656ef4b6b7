//! Error answers in each endpoint's own wire format, including the injected faults.

use hyper::Response;
use hyper::header::{HeaderValue, RETRY_AFTER};
use serde_json::json;

use super::serve::{Body, json_response};
use crate::state::Endpoint;
use crate::util::{now_unix, rfc3339, uuid};

pub(super) fn imds_error(status: u16, error: &str, description: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

pub(super) fn fault_response(
    endpoint: Endpoint,
    status: u16,
    retry_after: Option<u64>,
) -> Response<Body> {
    let note = "(fault injected by pgauth-emulator)";
    let mut resp = match endpoint {
        Endpoint::AppService | Endpoint::Imds => {
            let (error, desc) = match status {
                400 => ("invalid_request", "Identity not found".to_string()),
                404 => ("not_found", format!("IMDS is updating {note}")),
                410 => (
                    "gone",
                    format!("IMDS is updating; retry within 70 seconds {note}"),
                ),
                429 => ("too_many_requests", format!("Too many requests {note}")),
                503 => ("service_unavailable", format!("Service unavailable {note}")),
                _ => ("unknown_error", format!("Internal server error {note}")),
            };
            imds_error(status, error, &desc)
        }
        Endpoint::Entra => {
            let (error, code, desc) = match status {
                400 => ("invalid_request", 90014, "The request is invalid."),
                404 => ("invalid_request", 90002, "Tenant not found."),
                410 => (
                    "temporarily_unavailable",
                    90033,
                    "A transient error has occurred.",
                ),
                429 => (
                    "temporarily_unavailable",
                    50196,
                    "The server terminated an operation because it encountered a client request loop or too many requests.",
                ),
                503 => (
                    "temporarily_unavailable",
                    90033,
                    "A transient error has occurred. Please try again.",
                ),
                _ => (
                    "server_error",
                    90033,
                    "A transient error has occurred. Please try again.",
                ),
            };
            entra_error(status, error, code, &format!("{desc} {note}"))
        }
        // Google's token endpoint's shape; the metadata server's bodies are plain text, which
        // clients read as the status alone.
        Endpoint::Gcp => {
            let (error, desc) = match status {
                400 => ("invalid_request", "Bad Request"),
                404 => ("not_found", "Not Found"),
                410 => ("unavailable", "Gone"),
                429 => ("rate_limit_exceeded", "Too many requests"),
                503 => ("unavailable", "Service unavailable"),
                _ => ("internal_failure", "Internal error"),
            };
            imds_error(status, error, &format!("{desc} {note}"))
        }
    };
    if let Some(secs) = retry_after
        && (status == 429 || status == 503)
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(RETRY_AFTER, v);
    }
    resp
}

pub(super) fn entra_error(
    status: u16,
    error: &str,
    code: u32,
    description: &str,
) -> Response<Body> {
    let trace = uuid();
    let correlation = uuid();
    let now = now_unix();
    let ts = rfc3339(now).replace('T', " ");
    json_response(
        status,
        &json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {ts}"
            ),
            "error_codes": [code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": correlation,
        }),
    )
}
