//! Managed identity tokens over the App Service / Container Apps protocol and the VM's
//! instance metadata service (IMDS).
//!
//! Written here rather than taken from azure_identity's `ManagedIdentityCredential`, which
//! reads `IDENTITY_ENDPOINT` from the process environment (not from our settings snapshot),
//! cannot be pointed away from the hard-coded IMDS address, retries IMDS for up to 72 s on its
//! own (retries belong to the token cache here), rejects a numeric `expires_on`, sends a
//! user-assigned resource id in the wrong App Service parameter, and drops the server's
//! `Retry-After` and error description. The wire format is the same.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use azure_core::http::{HttpClient, Method, Request, Url};

use super::http::retry_after;
use super::limits::{read_body, too_large_in};
use super::{ManagedIdentityEndpoint, UserAssigned};
use crate::Secret;
use crate::error::{ConfigError, TokenError, TokenErrorKind};
use crate::http::{MAX_HTTP_BODY, describe_json};

/// The VM instance metadata service's token endpoint.
pub(crate) const IMDS_URL: &str = "http://169.254.169.254/metadata/identity/oauth2/token";
const IMDS_API_VERSION: &str = "2018-02-01";
const APP_SERVICE_API_VERSION: &str = "2019-08-01";

/// A token as an endpoint returned it, before JWT checks.
pub(crate) struct RawToken {
    pub(crate) secret: Secret,
    pub(crate) expires_on: SystemTime,
}

/// Asks a managed identity endpoint for one token per call. No cache, no retry.
pub(crate) struct ManagedIdentityClient {
    http: Arc<dyn HttpClient>,
    url: Url,
    header: Option<Secret>,
    user_assigned: Option<UserAssigned>,
    resource: String,
}

impl ManagedIdentityClient {
    pub(crate) fn new(
        http: Arc<dyn HttpClient>,
        endpoint: ManagedIdentityEndpoint,
        user_assigned: Option<UserAssigned>,
        scope: &str,
    ) -> Result<Self, ConfigError> {
        let (url, header) = match endpoint {
            ManagedIdentityEndpoint::AppService { url, header } => (url, Some(header)),
            ManagedIdentityEndpoint::Imds => (IMDS_URL.to_string(), None),
        };
        let url = Url::parse(&url).map_err(|e| {
            ConfigError::new(
                "IDENTITY_ENDPOINT",
                format!("{url:?} is not a valid url: {e}"),
            )
        })?;
        // Managed identity speaks the v1 protocol: a resource, not a scope.
        let resource = scope.strip_suffix("/.default").unwrap_or(scope).to_string();
        Ok(Self {
            http,
            url,
            header,
            user_assigned,
            resource,
        })
    }

    /// The endpoint, for status output (without query).
    pub(crate) fn endpoint(&self) -> String {
        let mut url = self.url.clone();
        url.set_query(None);
        url.to_string()
    }

    /// `app service` or `imds`.
    pub(crate) fn protocol(&self) -> &'static str {
        if self.header.is_some() {
            "app service"
        } else {
            "imds"
        }
    }

    /// Asks for one token.
    pub(crate) async fn fetch(&self, origin: &str) -> Result<RawToken, TokenError> {
        let mut url = self.url.clone();
        {
            let mut query = url.query_pairs_mut();
            let app_service = self.header.is_some();
            query.append_pair(
                "api-version",
                if app_service {
                    APP_SERVICE_API_VERSION
                } else {
                    IMDS_API_VERSION
                },
            );
            query.append_pair("resource", &self.resource);
            match (&self.user_assigned, app_service) {
                (None, _) => {}
                (Some(UserAssigned::ClientId(id)), _) => {
                    query.append_pair("client_id", id);
                }
                (Some(UserAssigned::ObjectId(id)), true) => {
                    query.append_pair("principal_id", id);
                }
                (Some(UserAssigned::ObjectId(id)), false) => {
                    query.append_pair("object_id", id);
                }
                (Some(UserAssigned::ResourceId(id)), true) => {
                    query.append_pair("mi_res_id", id);
                }
                (Some(UserAssigned::ResourceId(id)), false) => {
                    query.append_pair("msi_res_id", id);
                }
            }
        }
        let mut request = Request::new(url, Method::Get);
        match &self.header {
            Some(header) => request.insert_header("x-identity-header", header.expose().to_string()),
            None => request.insert_header("metadata", "true"),
        }

        let response = self
            .http
            .execute_request(&request)
            .await
            .map_err(|e| self.read_error(origin, e))?;
        let (status, headers, body) = response.deconstruct();
        let status = u16::from(status);
        let retry = retry_after(&headers);
        let body = read_body(&headers, body, MAX_HTTP_BODY)
            .await
            .map_err(|e| self.read_error(origin, e))?;
        if (200..300).contains(&status) {
            return parse_token(&body, SystemTime::now())
                .map_err(|message| TokenError::new(TokenErrorKind::Transient, origin, message));
        }
        Err(self.status_error(origin, status, &body, retry))
    }

    /// No usable answer: unreachable, broken off, or a body over the limit (transient all:
    /// the cache backs off, and an endpoint that keeps sending too much keeps failing).
    fn read_error(&self, origin: &str, error: azure_core::Error) -> TokenError {
        let message = match too_large_in(&error) {
            Some(too_large) => format!(
                "the managed identity endpoint {} sent more than a token answer: {too_large}; \
                 check IDENTITY_ENDPOINT and any proxy in between",
                self.endpoint()
            ),
            None => format!(
                "cannot reach the managed identity endpoint {}, or its answer broke off",
                self.endpoint()
            ),
        };
        TokenError::new(TokenErrorKind::Transient, origin, message).with_cause(error)
    }

    fn status_error(
        &self,
        origin: &str,
        status: u16,
        body: &[u8],
        retry: Option<Duration>,
    ) -> TokenError {
        let said = match describe_error(body) {
            Some(text) => format!("HTTP {status}: {text}"),
            None => format!("HTTP {status}"),
        };
        let who = match &self.user_assigned {
            Some(id) => format!("the user-assigned identity with {}", id.label()),
            None => "a system-assigned identity".to_string(),
        };
        let (kind, message) = match status {
            429 => (
                TokenErrorKind::Throttled,
                format!("the managed identity endpoint is throttling token requests ({said})"),
            ),
            400 => (
                TokenErrorKind::Rejected,
                format!(
                    "the managed identity endpoint refused the request ({said}); check that \
                     {who} is assigned to this resource (a user-assigned identity is picked \
                     with AZURE_CLIENT_ID, PGAUTH_AZURE_MI_OBJECT_ID or \
                     PGAUTH_AZURE_MI_RESOURCE_ID)"
                ),
            ),
            401 | 403 => (
                TokenErrorKind::Rejected,
                format!(
                    "the managed identity endpoint refused the request ({said}); check \
                     IDENTITY_HEADER and that {who} is assigned to this resource"
                ),
            ),
            404 | 410 => (
                TokenErrorKind::Transient,
                format!("the managed identity endpoint is not ready ({said})"),
            ),
            _ => (
                TokenErrorKind::Transient,
                format!("the managed identity endpoint failed ({said})"),
            ),
        };
        let error = TokenError::new(kind, origin, message);
        match retry {
            Some(after) => error.with_retry_after(after),
            None => error,
        }
    }
}

/// Reads a token answer: every field may be a string or a number (IMDS sends strings,
/// some emulators and older endpoints numbers).
fn parse_token(body: &[u8], now: SystemTime) -> Result<RawToken, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        format!("the managed identity endpoint answered with a body that is not json ({e})")
    })?;
    let object = value
        .as_object()
        .ok_or("the managed identity endpoint answered with json that is not an object")?;
    let token = object
        .get("access_token")
        .and_then(serde_json::Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("the managed identity endpoint's answer has no access_token")?;
    let seconds = |name: &str| -> Option<i64> {
        let v = object.get(name)?;
        v.as_i64()
            .or_else(|| v.as_f64().map(|f| f as i64))
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
    };
    let expires_on = match (seconds("expires_on"), seconds("expires_in")) {
        (Some(on), _) => u64::try_from(on)
            .ok()
            .and_then(|on| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(on))),
        (None, Some(within)) => u64::try_from(within)
            .ok()
            .and_then(|within| now.checked_add(Duration::from_secs(within))),
        (None, None) => None,
    }
    .ok_or("the managed identity endpoint's answer has no usable expires_on or expires_in")?;
    Ok(RawToken {
        secret: Secret::new(token),
        expires_on,
    })
}

/// The error text an endpoint sent: `error_description (error)`, `message (code)` or
/// `message`; one line of at most 300 characters. `None` when the body says nothing usable
/// (not JSON, or JSON without those fields).
fn describe_error(body: &[u8]) -> Option<String> {
    describe_json(&serde_json::from_slice(body).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_parse(body: &str, expected: Result<(&str, u64), &str>) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let got = parse_token(body.as_bytes(), now).map(|t| {
            (
                t.secret.expose().to_string(),
                t.expires_on
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap()
                    .as_secs(),
            )
        });
        match expected {
            Ok((token, exp)) => assert_eq!(got, Ok((token.to_string(), exp)), "{body}"),
            Err(fragment) => {
                let e = got.expect_err(body);
                assert!(e.contains(fragment), "{body}: {e}");
            }
        }
    }

    #[test]
    fn token_answers() {
        check_parse(
            r#"{"access_token":"t","expires_on":"5000"}"#,
            Ok(("t", 5000)),
        );
        check_parse(r#"{"access_token":"t","expires_on":5000}"#, Ok(("t", 5000)));
        check_parse(r#"{"access_token":"t","expires_in":"60"}"#, Ok(("t", 1060)));
        check_parse(r#"{"access_token":"t","expires_in":60}"#, Ok(("t", 1060)));
        check_parse(
            r#"{"access_token":"t","expires_on":"5000","expires_in":"60"}"#,
            Ok(("t", 5000)),
        );
        check_parse(r#"{"access_token":"t"}"#, Err("no usable expires_on"));
        check_parse(
            r#"{"access_token":"t","expires_on":"soon"}"#,
            Err("no usable expires_on"),
        );
        check_parse(r#"{"access_token":"t","expires_on":-5}"#, Err("no usable"));
        check_parse(r#"{"expires_on":"5000"}"#, Err("no access_token"));
        check_parse(
            r#"{"access_token":"","expires_on":"5000"}"#,
            Err("no access_token"),
        );
        check_parse("not json", Err("not json"));
        check_parse("[1,2]", Err("not an object"));
    }

    fn check_describe(body: &str, expected: Option<&str>) {
        assert_eq!(
            describe_error(body.as_bytes()).as_deref(),
            expected,
            "{body}"
        );
    }

    #[test]
    fn error_descriptions() {
        check_describe(
            r#"{"error":"invalid_request","error_description":"Identity not found"}"#,
            Some("Identity not found (invalid_request)"),
        );
        check_describe(
            r#"{"error":{"code":"Throttled","message":"slow down"}}"#,
            Some("slow down (Throttled)"),
        );
        check_describe(r#"{"statusCode":500,"message":"boom"}"#, Some("boom"));
        check_describe(r#"{"error":"invalid_resource"}"#, Some("invalid_resource"));
        check_describe("<html>oops</html>", None);
        check_describe("{}", None);
        check_describe(r#"{"message":"line\nbreak"}"#, Some("line break"));
        let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(1000));
        assert_eq!(describe_error(long.as_bytes()).unwrap().len(), 300);
    }
}
