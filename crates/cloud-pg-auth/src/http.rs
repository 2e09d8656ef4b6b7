//! HTTP pieces the Azure and Google token sources share: how their clients are built, the
//! size limit on a response body, and the one-line summary of an error body.

use std::time::Duration;

use crate::error::Error;

/// Response bodies: a token answer is 2 to 8 KiB (an Entra JWT plus a few fields; a Google
/// token under 2 KiB) and an error under 2 KiB. 1 MiB leaves more than a hundredfold
/// headroom and still bounds a fetch's memory, whatever a misbehaving endpoint or proxy
/// sends.
pub(crate) const MAX_HTTP_BODY: usize = 1 << 20;

/// Connection set-up never waits longer than this (or the request timeout, if shorter).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds the HTTP client of one source, trusting `extra_roots` on top of the defaults;
/// `cloud` names it in the error.
///
/// Connection pooling is off: a token request happens a few times an hour, and an idle pooled
/// connection is bound to the tokio runtime that opened it, which is how a credential used
/// from a second runtime hangs (reqwest #1148/#2501, the "event loop is closed" class).
/// Without a pool, every request opens its connection on the runtime it runs on. Redirects
/// are off: credentials never follow one.
///
/// `local_endpoint`: the client talks to a metadata or managed identity endpoint (link-local
/// or loopback), which must never go through an HTTP proxy.
pub(crate) fn build_client(
    timeout: Duration,
    local_endpoint: bool,
    extra_roots: Vec<reqwest::Certificate>,
    cloud: &str,
) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder()
        // The whole exchange is bounded by the source's fetch timeout; this only makes an
        // address that does not answer fail sooner.
        .connect_timeout(timeout.min(CONNECT_TIMEOUT))
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none());
    if local_endpoint {
        builder = builder.no_proxy();
    }
    if !extra_roots.is_empty() {
        builder = builder.tls_certs_merge(extra_roots);
    }
    builder.build().map_err(|e| Error::Tls {
        message: format!("cannot build the https client for {cloud}"),
        source: Some(Box::new(e)),
    })
}

/// What a JSON error body says: `description (code)`, the description or the code alone,
/// on one line of at most 300 characters; `None` when it names neither.
///
/// The shapes: OAuth's `{"error": "code", "error_description": "..."}`; Azure's and Google
/// APIs' `{"error": {"code" or "status": "...", "message": "..."}}` (Google's `code` is the
/// HTTP status as a number, so its `status` names the error); and a bare `message` or
/// `Message` (App Service endpoints).
pub(crate) fn describe_json(value: &serde_json::Value) -> Option<String> {
    let text = |v: Option<&serde_json::Value>| {
        v.and_then(serde_json::Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let (description, code) = match value.get("error") {
        Some(serde_json::Value::Object(inner)) => (
            text(inner.get("message")),
            text(inner.get("code")).or_else(|| text(inner.get("status"))),
        ),
        error => (
            text(value.get("error_description"))
                .or_else(|| text(value.get("message")))
                .or_else(|| text(value.get("Message"))),
            text(error),
        ),
    };
    let said = match (description, code) {
        (Some(d), Some(c)) => format!("{d} ({c})"),
        (Some(d), None) => d,
        (None, Some(c)) => c,
        (None, None) => return None,
    };
    Some(one_line(&said))
}

/// `text` on one line (control characters as spaces) of at most 300 characters: enough for
/// any error description, and a message never carries a whole page.
pub(crate) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str, expected: Option<&str>) {
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(describe_json(&value).as_deref(), expected, "{body}");
    }

    #[test]
    fn error_bodies_are_summed_up_on_one_line() {
        check(
            r#"{"error":"invalid_request","error_description":"Identity not found"}"#,
            Some("Identity not found (invalid_request)"),
        );
        check(
            r#"{"error":{"code":"Throttled","message":"slow down"}}"#,
            Some("slow down (Throttled)"),
        );
        check(
            r#"{"error":{"code":403,"message":"denied","status":"PERMISSION_DENIED"}}"#,
            Some("denied (PERMISSION_DENIED)"),
        );
        check(r#"{"statusCode":500,"message":"boom"}"#, Some("boom"));
        check(r#"{"Message":"boom"}"#, Some("boom"));
        check(r#"{"error":"invalid_resource"}"#, Some("invalid_resource"));
        check(r#"{"error":" ","message":""}"#, None);
        check("{}", None);
        check("[1]", None);
        check(r#"{"message":"line\nbreak"}"#, Some("line break"));
        let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(1000));
        check(&long, Some(&"x".repeat(300)));
    }
}
