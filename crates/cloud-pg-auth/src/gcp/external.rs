//! Workload identity federation files (`external_account`): where the subject token comes
//! from, what the STS exchange sends, and the service account to impersonate, if any.
//!
//! Only file and URL credential sources are read, as Google's libraries read them; the
//! `executable`, AWS (`environment_id`) and certificate sources are refused naming the type.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::credentials::{check_token_uri, field, optional_field};
use super::impersonated::{Impersonation, impersonation};
use crate::Secret;
use crate::input::http_url;

/// Google's Security Token Service: the default `token_url` of `external_account` files.
pub const GOOGLE_STS_URL: &str = "https://sts.googleapis.com/v1/token";

const WHAT: &str = "workload identity federation file";

/// Where a federated workload's subject token is read, with the format it is in. Read
/// again on every fetch: platforms rotate it (a Kubernetes projected token, for one).
#[derive(Clone)]
pub(crate) enum SubjectTokenSource {
    /// `credential_source.file`.
    File(PathBuf),
    /// `credential_source.url`, asked with `GET` and the `headers`; header values may be
    /// secrets, so they are kept as [`Secret`]s.
    Url {
        url: String,
        headers: Vec<(String, Secret)>,
    },
}

/// The format of the subject token (`credential_source.format`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubjectTokenFormat {
    /// The whole content, surrounding blanks removed (`"type": "text"`, the default).
    Text,
    /// A JSON object whose string field `subject_token_field_name` is the token.
    Json {
        /// The field that holds the token (`subject_token_field_name`).
        subject_token_field_name: String,
    },
}

/// A workload identity federation file (`"type": "external_account"`): a subject token from
/// the platform (a file or a local URL) is exchanged at Google's Security Token Service for
/// a federated access token, which may then impersonate a service account.
#[derive(Clone)]
pub struct ExternalAccount {
    /// The credentials file, for messages.
    pub(crate) file: String,
    pub(crate) audience: String,
    pub(crate) subject_token_type: String,
    pub(crate) token_url: String,
    pub(crate) source: SubjectTokenSource,
    pub(crate) format: SubjectTokenFormat,
    pub(crate) impersonation: Option<Impersonation>,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret: Option<Secret>,
    pub(crate) workforce_pool_user_project: Option<String>,
}

impl ExternalAccount {
    /// The workload identity pool provider the subject token is exchanged for (`audience`).
    #[must_use]
    pub fn get_audience(&self) -> &str {
        &self.audience
    }

    /// The subject token's type (`subject_token_type`), as sent to the STS.
    #[must_use]
    pub fn get_subject_token_type(&self) -> &str {
        &self.subject_token_type
    }

    /// The STS endpoint (`token_url`, [`GOOGLE_STS_URL`] when absent).
    #[must_use]
    pub fn get_token_url(&self) -> &str {
        &self.token_url
    }

    /// The subject token file (`credential_source.file`), for a file source.
    #[must_use]
    pub fn get_subject_token_file(&self) -> Option<&Path> {
        match &self.source {
            SubjectTokenSource::File(path) => Some(path),
            SubjectTokenSource::Url { .. } => None,
        }
    }

    /// The subject token URL (`credential_source.url`), for a URL source.
    #[must_use]
    pub fn get_subject_token_url(&self) -> Option<&str> {
        match &self.source {
            SubjectTokenSource::Url { url, .. } => Some(url),
            SubjectTokenSource::File(_) => None,
        }
    }

    /// The names of the headers sent to the subject token URL (their values may be
    /// secrets and are not given out).
    #[must_use]
    pub fn get_subject_token_header_names(&self) -> Vec<&str> {
        match &self.source {
            SubjectTokenSource::Url { headers, .. } => {
                headers.iter().map(|(name, _)| name.as_str()).collect()
            }
            SubjectTokenSource::File(_) => Vec::new(),
        }
    }

    /// The subject token's format.
    #[must_use]
    pub fn get_subject_token_format(&self) -> &SubjectTokenFormat {
        &self.format
    }

    /// The service account impersonated with the federated token, if any
    /// (`service_account_impersonation_url`).
    #[must_use]
    pub fn get_impersonation(&self) -> Option<&Impersonation> {
        self.impersonation.as_ref()
    }

    /// The OAuth client that authenticates to the STS (`client_id`, workforce pools).
    #[must_use]
    pub fn get_client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// The project a workforce pool's requests are billed to
    /// (`workforce_pool_user_project`).
    #[must_use]
    pub fn get_workforce_pool_user_project(&self) -> Option<&str> {
        self.workforce_pool_user_project.as_deref()
    }
}

impl fmt::Debug for ExternalAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The header values and the client secret are secrets; the rest is configuration.
        f.debug_struct("ExternalAccount")
            .field("file", &self.file)
            .field("audience", &self.audience)
            .field("subject_token_type", &self.subject_token_type)
            .field("token_url", &self.token_url)
            .field("subject_token_file", &self.get_subject_token_file())
            .field("subject_token_url", &self.get_subject_token_url())
            .field("headers", &self.get_subject_token_header_names())
            .field("format", &self.format)
            .field("impersonation", &self.impersonation)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .finish_non_exhaustive()
    }
}

/// Parses an `external_account` object; `file` names it in later messages.
pub(crate) fn external_account(
    object: &Map<String, Value>,
    file: &str,
) -> Result<ExternalAccount, String> {
    let audience = field(object, "audience", WHAT)?;
    let subject_token_type = field(object, "subject_token_type", WHAT)?;
    let token_url = match object.get("token_url") {
        None => GOOGLE_STS_URL.to_string(),
        Some(value) => {
            let url = value.as_str().map(str::trim).unwrap_or_default();
            if !check_token_uri(url) {
                return Err(format!(
                    "token_url {url:?} is not an https url (http is allowed only to a \
                     loopback address); use {GOOGLE_STS_URL}"
                ));
            }
            url.to_string()
        }
    };
    let source = object
        .get("credential_source")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            "has no \"credential_source\" object; regenerate the file with gcloud iam \
             workload-identity-pools create-cred-config"
                .to_string()
        })?;
    let (source, format) = credential_source(source)?;
    let impersonation = match object.get("service_account_impersonation_url") {
        None | Some(Value::Null) => None,
        Some(_) => Some(impersonation(object, token_lifetime(object)?)?),
    };
    let client_id = optional_field(object, "client_id")?;
    let client_secret = optional_field(object, "client_secret")?.map(Secret::new);
    let workforce_pool_user_project = optional_field(object, "workforce_pool_user_project")?;
    if workforce_pool_user_project.is_some() && !is_workforce_pool(audience) {
        return Err(
            "has workforce_pool_user_project, which only a workforce pool audience \
             (//iam.googleapis.com/locations/.../workforcePools/...) takes; remove it"
                .to_string(),
        );
    }
    Ok(ExternalAccount {
        file: file.to_string(),
        audience: audience.to_string(),
        subject_token_type: subject_token_type.to_string(),
        token_url,
        source,
        format,
        impersonation,
        client_id,
        client_secret,
        workforce_pool_user_project,
    })
}

/// `credential_source`: a file or a URL, in text or JSON; the other sources are refused.
fn credential_source(
    source: &Map<String, Value>,
) -> Result<(SubjectTokenSource, SubjectTokenFormat), String> {
    // Refused sources first, by the key that marks them (as Google's libraries tell them).
    let refused = if source.contains_key("executable") {
        Some("executable")
    } else if source.contains_key("environment_id") {
        Some("aws")
    } else if source.contains_key("certificate") {
        Some("certificate")
    } else {
        None
    };
    if let Some(kind) = refused {
        return Err(format!(
            "has an {kind:?} credential_source, which is not supported: use a file or url \
             credential source, the metadata server, or a token callback"
        ));
    }
    let format = format(source.get("format"))?;
    let text = |name: &str| -> Result<Option<&str>, String> {
        match source.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.trim())),
            Some(_) => Err(format!(
                "credential_source.{name} is not a non-empty string; set it to the subject \
                 token's {}",
                if name == "file" { "path" } else { "url" }
            )),
        }
    };
    let source = match (text("file")?, text("url")?) {
        (Some(_), Some(_)) => {
            return Err(
                "credential_source has both \"file\" and \"url\"; keep the one the platform \
                 provides"
                    .to_string(),
            );
        }
        (None, None) => {
            return Err(
                "credential_source has neither \"file\" nor \"url\"; use a file or url \
                 credential source"
                    .to_string(),
            );
        }
        (Some(path), None) => SubjectTokenSource::File(PathBuf::from(path)),
        (None, Some(url)) => {
            // Subject token URLs are often plain HTTP to a local metadata service.
            if http_url(url).is_none() {
                return Err(format!(
                    "credential_source.url {url:?} is not an http or https url"
                ));
            }
            SubjectTokenSource::Url {
                url: url.to_string(),
                headers: headers(source.get("headers"))?,
            }
        }
    };
    Ok((source, format))
}

/// `credential_source.format`: text when absent.
fn format(value: Option<&Value>) -> Result<SubjectTokenFormat, String> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(SubjectTokenFormat::Text);
    };
    let object = value
        .as_object()
        .ok_or("credential_source.format is not an object; use {\"type\": \"text\"}")?;
    match object.get("type").and_then(Value::as_str).unwrap_or("text") {
        "text" => Ok(SubjectTokenFormat::Text),
        "json" => {
            let name = object
                .get("subject_token_field_name")
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .ok_or(
                    "credential_source.format has type \"json\" but no \
                     subject_token_field_name; name the field that holds the token",
                )?;
            Ok(SubjectTokenFormat::Json {
                subject_token_field_name: name.to_string(),
            })
        }
        other => Err(format!(
            "credential_source.format.type {other:?} is not a subject token format; use \
             \"text\" or \"json\""
        )),
    }
}

/// `credential_source.headers`: an object of string values, with valid header names.
fn headers(value: Option<&Value>) -> Result<Vec<(String, Secret)>, String> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let object = value
        .as_object()
        .ok_or("credential_source.headers is not an object of header names and values")?;
    object
        .iter()
        .map(|(name, value)| {
            let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if name.is_empty() || !name.chars().all(token) {
                return Err(format!(
                    "credential_source.headers has {name:?}, which is not a header name"
                ));
            }
            match value.as_str() {
                Some(v) if !v.chars().any(|c| c.is_control() && c != '\t') => {
                    Ok((name.clone(), Secret::new(v)))
                }
                _ => Err(format!(
                    "credential_source.headers.{name} is not a header value (a string without \
                     control characters)"
                )),
            }
        })
        .collect()
}

/// `service_account_impersonation.token_lifetime_seconds`: 600 to 43200, 3600 when absent.
fn token_lifetime(object: &Map<String, Value>) -> Result<u64, String> {
    let Some(options) = object
        .get("service_account_impersonation")
        .filter(|v| !v.is_null())
    else {
        return Ok(3600);
    };
    match options.get("token_lifetime_seconds") {
        None | Some(Value::Null) => Ok(3600),
        Some(value) => value
            .as_u64()
            .filter(|s| (600..=43200).contains(s))
            .ok_or_else(|| {
                "service_account_impersonation.token_lifetime_seconds is not a number of \
                 seconds from 600 to 43200"
                    .to_string()
            }),
    }
}

/// Workforce pools (users) have audiences `//iam.googleapis.com/locations/L/workforcePools/...`.
fn is_workforce_pool(audience: &str) -> bool {
    audience
        .strip_prefix("//iam.googleapis.com/locations/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(location, rest)| !location.is_empty() && rest.starts_with("workforcePools/"))
}
