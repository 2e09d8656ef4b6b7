//! The metadata server's service account endpoints: token (scopes honoured) and email, with
//! the `Metadata-Flavor: Google` header required as on Compute Engine.

use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Response, StatusCode};
use serde_json::json;

use super::GcpIdentity;
use super::check::{CLOUD_PLATFORM_SCOPE, GcpPrincipal, PrincipalKind};
use crate::identity::{Body, json_response};

/// The path prefix of the attached service accounts.
pub(crate) const SERVICE_ACCOUNTS: &str = "/computeMetadata/v1/instance/service-accounts/";

/// A metadata server answer: every one carries `Metadata-Flavor: Google`.
fn flavored(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert("metadata-flavor", HeaderValue::from_static("Google"));
    response
}

fn text(status: u16, body: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    flavored(r)
}

/// Answers `GET /computeMetadata/v1/instance/service-accounts/{default|email}/{token|email}`.
pub(crate) fn handle(
    identity: &GcpIdentity,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    header: impl Fn(&str) -> Option<String>,
) -> Response<Body> {
    if header("metadata-flavor").is_none_or(|v| v != "Google") {
        identity.inner.counts.refused();
        return text(
            403,
            "Missing required header \"Metadata-Flavor\": \"Google\"",
        );
    }
    if header("x-forwarded-for").is_some() {
        identity.inner.counts.refused();
        return text(403, "Request had an X-Forwarded-For header; refused");
    }
    if method != Method::GET {
        return text(405, "Method not allowed");
    }
    let account = identity.metadata_account();
    let rest = path.strip_prefix(SERVICE_ACCOUNTS).unwrap_or_default();
    let Some((who, what)) = rest.split_once('/') else {
        return text(404, "Not Found");
    };
    if who != "default" && who != account.email() {
        return text(404, "Not Found");
    }
    match what.trim_end_matches('/') {
        "email" => {
            identity.inner.counts.email();
            text(200, account.email())
        }
        "token" => {
            // `scopes=a,b` (commas; blanks tolerated); the VM's scope when absent.
            let scopes: Vec<String> = query
                .iter()
                .filter(|(k, _)| k == "scopes")
                .flat_map(|(_, v)| v.split([',', ' ']))
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let scopes = if scopes.is_empty() {
                vec![CLOUD_PLATFORM_SCOPE.to_string()]
            } else {
                scopes
            };
            let principal = GcpPrincipal {
                email: account.email().to_string(),
                kind: PrincipalKind::ServiceAccount,
                scopes,
            };
            let lifetime = identity.token_lifetime();
            let token = identity
                .inner
                .tokens
                .issue(principal, SystemTime::now(), lifetime);
            identity.inner.counts.metadata_token();
            flavored(json_response(
                200,
                &json!({
                    "access_token": token,
                    "expires_in": lifetime.as_secs(),
                    "token_type": "Bearer",
                }),
            ))
        }
        _ => text(404, "Not Found"),
    }
}
