//! The network side of workload identity federation and impersonation: reading the subject
//! token, exchanging it at Google's Security Token Service, and asking IAM's
//! `generateAccessToken` for a service account's token. Every secret on the way (subject
//! token, federated token, source token) stays a [`Secret`] and out of messages.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::external::{ExternalAccount, SubjectTokenFormat, SubjectTokenSource};
use super::http::{
    Reply, TokenAnswer, describe, error_code, form, kind_of, parse_token, send, send_error,
    with_retry,
};
use super::impersonated::Impersonation;
use super::time::parse_rfc3339;
use crate::Secret;
use crate::error::{TokenError, TokenErrorKind};
use crate::http::MAX_HTTP_BODY;
use crate::input::{http_url, read_file};

/// The STS grant type (RFC 8693 token exchange).
pub(crate) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The token type asked from the STS: always an access token.
pub(crate) const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Reads the subject token, afresh: the platform rotates it.
pub(crate) async fn subject_token(
    client: &reqwest::Client,
    account: &ExternalAccount,
    origin: &str,
) -> Result<Secret, TokenError> {
    let (content, location) = match &account.source {
        SubjectTokenSource::File(path) => {
            // A plain read: the file is a few KiB on a local (often in-memory) volume.
            let content = read_file(path, MAX_HTTP_BODY, "the file").map_err(|e| {
                TokenError::new(
                    TokenErrorKind::Config,
                    origin,
                    format!(
                        "cannot read the subject token file {} (credential_source.file of {}): \
                         {e}; check that the platform provides it (on kubernetes, a projected \
                         service account token volume)",
                        path.display(),
                        account.file
                    ),
                )
            })?;
            (
                content,
                format!("the subject token file {}", path.display()),
            )
        }
        SubjectTokenSource::Url { url, headers } => {
            let mut request = client.get(url);
            for (name, value) in headers {
                request = request.header(name.as_str(), value.expose());
            }
            let hint = format!("check credential_source.url in {}", account.file);
            let reply = send(request)
                .await
                .map_err(|e| send_error(e, origin, "the subject token url", &hint))?;
            if !(200..300).contains(&reply.status) {
                let message = format!(
                    "the subject token url {url} answered {}; check credential_source.url and \
                     headers in {}",
                    said(&reply, &[]),
                    account.file
                );
                return Err(with_retry(
                    TokenError::new(kind_of(reply.status), origin, message),
                    &reply,
                ));
            }
            (reply.body, format!("the subject token url {url}"))
        }
    };
    extract(&content, &account.format).map_err(|e| {
        TokenError::new(
            TokenErrorKind::Config,
            origin,
            format!(
                "{location} {e}; check credential_source.format in {}",
                account.file
            ),
        )
    })
}

/// The token in a file's or URL's content, by the format; the message says what is wrong
/// without the content.
pub(crate) fn extract(content: &[u8], format: &SubjectTokenFormat) -> Result<Secret, String> {
    let token = match format {
        SubjectTokenFormat::Text => std::str::from_utf8(content)
            .map_err(|_| "is not utf-8 text".to_string())?
            .trim()
            .to_string(),
        SubjectTokenFormat::Json {
            subject_token_field_name: name,
        } => {
            // serde_json's error names a position, never the content.
            let value: Value = serde_json::from_slice(content)
                .map_err(|e| format!("is not json ({e}), as format type \"json\" says"))?;
            value
                .get(name)
                .and_then(Value::as_str)
                .map(|s| s.trim().to_string())
                .ok_or_else(|| format!("has no string field {name:?} (subject_token_field_name)"))?
        }
    };
    if token.is_empty() {
        return Err("holds an empty subject token".to_string());
    }
    Ok(Secret::new(token))
}

/// The STS request's form: the subject token exchanged for an access token with `scope`.
pub(crate) fn sts_form(account: &ExternalAccount, subject: &Secret, scope: &str) -> String {
    let options;
    let mut pairs = vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("audience", account.audience.as_str()),
        ("scope", scope),
        ("requested_token_type", ACCESS_TOKEN_TYPE),
        ("subject_token", subject.expose()),
        ("subject_token_type", account.subject_token_type.as_str()),
    ];
    // Workforce pools bill a project, unless an OAuth client already names one.
    if let (Some(project), None) = (&account.workforce_pool_user_project, &account.client_id) {
        options = json!({ "userProject": project }).to_string();
        pairs.push(("options", &options));
    }
    form(&pairs)
}

/// Exchanges the subject token at the STS for a federated access token with `scope`.
pub(crate) async fn exchange(
    client: &reqwest::Client,
    account: &ExternalAccount,
    subject: &Secret,
    scope: &str,
    origin: &str,
) -> Result<TokenAnswer, TokenError> {
    let mut request = client
        .post(&account.token_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(sts_form(account, subject, scope));
    if let Some(id) = &account.client_id {
        request = request.basic_auth(id, account.client_secret.as_ref().map(Secret::expose));
    }
    let hint = format!(
        "check token_url in {} and the network path to it",
        account.file
    );
    let reply = send(request)
        .await
        .map_err(|e| send_error(e, origin, "the security token service", &hint))?;
    if (200..300).contains(&reply.status) {
        return parse_token(&reply.body, "the security token service")
            .map_err(|m| TokenError::new(TokenErrorKind::Transient, origin, m));
    }
    let said = said(&reply, &[subject]);
    let message = match reply.status {
        429 => format!("google's security token service is throttling exchanges ({said})"),
        s if s >= 500 => format!("google's security token service failed ({said})"),
        _ => {
            let fix = match error_code(&reply.body).as_deref() {
                Some("invalid_grant") => {
                    "check that the subject token is current and that the workload identity \
                     pool provider accepts it (issuer, allowed audiences, attribute condition)"
                        .to_string()
                }
                Some("invalid_scope") => "check the pool's and provider's settings".to_string(),
                _ => format!("check audience and subject_token_type in {}", account.file),
            };
            format!("google's security token service refused the subject token ({said}); {fix}")
        }
    };
    Err(with_retry(
        TokenError::new(kind_of(reply.status), origin, message),
        &reply,
    ))
}

/// The `generateAccessToken` request's JSON body.
pub(crate) fn generate_body(impersonation: &Impersonation, scope: &str) -> String {
    let mut body = json!({
        "scope": [scope],
        "lifetime": format!("{}s", impersonation.lifetime.as_secs()),
    });
    if !impersonation.delegates.is_empty() {
        body["delegates"] = json!(impersonation.delegates);
    }
    body.to_string()
}

/// Asks IAM for a token of the impersonated service account with `scope`, authenticated with
/// `source` (the token of `who`).
pub(crate) async fn impersonate(
    client: &reqwest::Client,
    impersonation: &Impersonation,
    source: &Secret,
    scope: &str,
    who: &str,
    origin: &str,
) -> Result<TokenAnswer, TokenError> {
    let request = client
        .post(&impersonation.url)
        .bearer_auth(source.expose())
        .header("content-type", "application/json")
        .body(generate_body(impersonation, scope));
    let reply = send(request).await.map_err(|e| {
        send_error(
            e,
            origin,
            "the iam credentials api",
            "check service_account_impersonation_url and the network path to it",
        )
    })?;
    if (200..300).contains(&reply.status) {
        return parse_generated(&reply.body, SystemTime::now())
            .map_err(|m| TokenError::new(TokenErrorKind::Transient, origin, m));
    }
    let said = said(&reply, &[source]);
    let email = &impersonation.email;
    let message = match reply.status {
        429 => format!("the iam credentials api is throttling token requests ({said})"),
        s if s >= 500 => format!("the iam credentials api failed ({said})"),
        401 => format!("the iam credentials api refused the token of {who} ({said})"),
        403 => format!(
            "{who} may not impersonate {email} ({said}); grant it \
             roles/iam.serviceAccountTokenCreator on that service account and enable \
             iamcredentials.googleapis.com"
        ),
        404 => format!(
            "the service account {email} was not found ({said}); check \
             service_account_impersonation_url"
        ),
        _ => format!("the iam credentials api refused to impersonate {email} ({said})"),
    };
    Err(with_retry(
        TokenError::new(kind_of(reply.status), origin, message),
        &reply,
    ))
}

/// Reads a `generateAccessToken` answer: `accessToken` and `expireTime` (RFC 3339).
pub(crate) fn parse_generated(body: &[u8], now: SystemTime) -> Result<TokenAnswer, String> {
    const WHAT: &str = "the iam credentials api";
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("{WHAT} answered with a body that is not json ({e})"))?;
    let token = value
        .get("accessToken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("{WHAT}'s answer has no accessToken"))?;
    let expire = value
        .get("expireTime")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{WHAT}'s answer has no expireTime"))?;
    let at = parse_rfc3339(expire)
        .ok_or_else(|| format!("{WHAT}'s answer has an expireTime that is not a time"))?;
    let expires_in = at
        .duration_since(now)
        .ok()
        .filter(|d| *d >= Duration::from_secs(1))
        .ok_or_else(|| {
            format!(
                "{WHAT}'s answer expires at {expire}, which is not in the future; check this \
                 machine's clock"
            )
        })?;
    Ok(TokenAnswer {
        secret: Secret::new(token),
        expires_in,
    })
}

/// `HTTP 400: description (code)` of a failed answer, with any of `secrets` it echoes
/// replaced, before the summary is cut to length.
fn said(reply: &Reply, secrets: &[&Secret]) -> String {
    let mut body = String::from_utf8_lossy(&reply.body).into_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        body = body.replace(secret.expose(), "<redacted>");
    }
    match describe(body.as_bytes()) {
        Some(text) => format!("HTTP {}: {text}", reply.status),
        None => format!("HTTP {}", reply.status),
    }
}

/// Whether a subject token URL is on this machine or its link (a local metadata service):
/// such a URL is never sent through a proxy.
pub(crate) fn is_local_url(url: &str) -> bool {
    http_url(url).is_some_and(|url| {
        url.host.eq_ignore_ascii_case("localhost")
            || url.host.parse::<IpAddr>().is_ok_and(|ip| match ip {
                IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local(),
                IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xffc0) == 0xfe80,
            })
    })
}
