//! Workload identity federation, emulated: subject tokens the emulator mints for federated
//! workloads (written to a file, or served by a local URL as a platform would), and the
//! Security Token Service (`POST /v1/token`) that exchanges one for a federated access token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::json;

use super::GcpIdentity;
use super::check::{GcpPrincipal, PrincipalKind};
use crate::identity::{Body, json_response};
use crate::util::random_alnum;

/// The STS path.
pub(crate) const STS_PATH: &str = "/v1/token";
/// The path of the local subject token URL (a platform's token service, emulated).
pub(crate) const SUBJECT_TOKEN_PATH: &str = "/emulator/gcp/subject-token";

/// The project number of the emulator's workload identity pool.
const POOL_PROJECT_NUMBER: &str = "100000000001";

/// The audience of the emulator's workload identity pool provider: what `external_account`
/// files name as `audience`.
pub const FEDERATION_AUDIENCE: &str = "//iam.googleapis.com/projects/100000000001/locations/global/workloadIdentityPools/pgauth-emulator-pool/providers/pgauth-emulator-provider";

/// The subject token type of the tokens the emulator mints (OIDC ID tokens, JWTs).
pub const SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The subject of the tokens the subject token URL serves.
pub const URL_SUBJECT: &str = "system:serviceaccount:default:url-workload";

/// The header the subject token URL requires (as Azure's instance metadata service does).
pub const SUBJECT_TOKEN_HEADER: (&str, &str) = ("Metadata", "True");

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// How long a minted subject token is accepted.
const SUBJECT_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// The federated principal of a subject, as IAM names it.
pub fn federated_principal(subject: &str) -> String {
    format!(
        "principal://iam.googleapis.com/projects/{POOL_PROJECT_NUMBER}/locations/global/workloadIdentityPools/pgauth-emulator-pool/subject/{subject}"
    )
}

/// The subject tokens minted, and those presented to the STS, in order.
#[derive(Debug, Default)]
pub(crate) struct SubjectTokens {
    minted: Mutex<HashMap<String, (String, SystemTime)>>,
    seen: Mutex<Vec<String>>,
}

impl SubjectTokens {
    pub(crate) fn mint(&self, subject: &str, now: SystemTime) -> String {
        // Shaped like a JWT (three dot-separated parts) but opaque: only this emulator
        // knows whose it is.
        let token = format!(
            "eyJhbGciOiJSUzI1NiJ9.emu-{}.{}",
            random_alnum(32),
            random_alnum(43)
        );
        self.minted.lock().unwrap().insert(
            token.clone(),
            (subject.to_string(), now + SUBJECT_TOKEN_LIFETIME),
        );
        token
    }

    pub(crate) fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    fn record(&self, token: &str) {
        self.seen.lock().unwrap().push(token.to_string());
    }

    /// The subject of a minted token valid at `now`.
    fn subject_of(&self, token: &str, now: SystemTime) -> Option<String> {
        let minted = self.minted.lock().unwrap();
        let (subject, expires_at) = minted.get(token)?;
        (now < *expires_at).then(|| subject.clone())
    }
}

type Refusal = (u16, &'static str, String);

fn refuse(code: &'static str, description: &str) -> Refusal {
    (400, code, description.to_string())
}

/// Answers `POST /v1/token` with a form body: an RFC 8693 token exchange.
pub(crate) fn exchange(identity: &GcpIdentity, form: &[(String, String)]) -> Response<Body> {
    identity.inner.counts.sts_exchange();
    let get = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    // Every subject token presented is remembered, for tests to see what was sent.
    if let Some(token) = get("subject_token") {
        identity.inner.subjects.record(token);
    }
    match check_exchange(identity, get) {
        Ok((subject, scopes)) => {
            let lifetime = identity.token_lifetime();
            let principal = GcpPrincipal {
                email: federated_principal(&subject),
                kind: PrincipalKind::Federated,
                scopes,
            };
            let token = identity
                .inner
                .tokens
                .issue(principal, SystemTime::now(), lifetime);
            json_response(
                200,
                &json!({
                    "access_token": token,
                    "issued_token_type": ACCESS_TOKEN_TYPE,
                    "token_type": "Bearer",
                    "expires_in": lifetime.as_secs(),
                }),
            )
        }
        Err((status, code, description)) => {
            identity.inner.counts.refused();
            json_response(
                status,
                &json!({ "error": code, "error_description": description }),
            )
        }
    }
}

fn check_exchange<'a>(
    identity: &GcpIdentity,
    get: impl Fn(&str) -> Option<&'a str>,
) -> Result<(String, Vec<String>), Refusal> {
    if get("grant_type") != Some(TOKEN_EXCHANGE) {
        return Err(refuse(
            "unsupported_grant_type",
            "Invalid value for \"grant_type\".",
        ));
    }
    if get("requested_token_type") != Some(ACCESS_TOKEN_TYPE) {
        return Err(refuse(
            "invalid_request",
            "Invalid value for \"requested_token_type\".",
        ));
    }
    if get("audience") != Some(FEDERATION_AUDIENCE) {
        return Err(refuse(
            "invalid_target",
            "The target service indicated by the \"audience\" parameters is invalid. This might either be because the pool or provider is disabled or deleted or because it doesn't exist.",
        ));
    }
    if !matches!(
        get("subject_token_type"),
        Some(SUBJECT_TOKEN_TYPE | ID_TOKEN_TYPE)
    ) {
        return Err(refuse(
            "invalid_request",
            "Invalid value for \"subject_token_type\". Supported values are urn:ietf:params:oauth:token-type:jwt and urn:ietf:params:oauth:token-type:id_token.",
        ));
    }
    let scopes: Vec<String> = get("scope")
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if scopes.is_empty() {
        return Err(refuse("invalid_scope", "Missing scope."));
    }
    let token = get("subject_token").ok_or_else(|| {
        refuse(
            "invalid_request",
            "Missing required parameter: subject_token",
        )
    })?;
    let subject = identity
        .inner
        .subjects
        .subject_of(token, SystemTime::now())
        .ok_or_else(|| {
            refuse(
                "invalid_grant",
                "The provided subject token is invalid or has expired.",
            )
        })?;
    Ok((subject, scopes))
}

/// Answers `GET /emulator/gcp/subject-token`: a fresh subject token for [`URL_SUBJECT`], as
/// text or, with `?format=json`, as `{"access_token": ...}`; [`SUBJECT_TOKEN_HEADER`]
/// required.
pub(crate) fn serve_subject_token(
    identity: &GcpIdentity,
    query: &[(String, String)],
    header: impl Fn(&str) -> Option<String>,
) -> Response<Body> {
    let (name, value) = SUBJECT_TOKEN_HEADER;
    if header(name).is_none_or(|v| v != value) {
        return json_response(
            400,
            &json!({"error": "invalid_request", "error_description": "Required metadata header not specified"}),
        );
    }
    identity.inner.counts.subject_token_served();
    let token = identity.inner.subjects.mint(URL_SUBJECT, SystemTime::now());
    if query.iter().any(|(k, v)| k == "format" && v == "json") {
        return json_response(
            200,
            &json!({ "access_token": token, "token_type": "Bearer" }),
        );
    }
    let mut response = Response::new(Full::new(Bytes::from(token)));
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}
