//! Credentials files of Application Default Credentials: service account keys
//! (`service_account`), user credentials (`authorized_user`), workload identity federation
//! (`external_account`) and service account impersonation (`impersonated_service_account`);
//! the other types are refused.

use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

use super::GOOGLE_TOKEN_URI;
use super::external::{ExternalAccount, external_account};
use super::impersonated::{ImpersonatedCredentials, impersonated};
use super::jwt::RsaKey;
use super::username::username_from_email;
use crate::Secret;
use crate::error::ConfigError;
use crate::input::{http_url, is_loopback, read_file};

/// A credentials file is a few KiB (a service account key about 2.3 KiB); 64 KiB is far
/// above any real one and far below a log or binary put in its place by mistake.
pub(crate) const MAX_CREDENTIALS_FILE: usize = 64 << 10;

/// A parsed credentials file.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum CredentialsFile {
    /// A service account key (`"type": "service_account"`).
    ServiceAccount(ServiceAccountKey),
    /// User credentials (`"type": "authorized_user"`), as `gcloud auth
    /// application-default login` writes them.
    AuthorizedUser(UserCredentials),
    /// Workload identity federation (`"type": "external_account"`) with a file or URL
    /// credential source.
    ExternalAccount(ExternalAccount),
    /// Service account impersonation (`"type": "impersonated_service_account"`), as `gcloud
    /// auth application-default login --impersonate-service-account` writes it.
    Impersonated(ImpersonatedCredentials),
}

/// A service account key: the account's email, the key's id and private key, and the token
/// endpoint to exchange a signed assertion at.
#[derive(Clone)]
pub struct ServiceAccountKey {
    pub(crate) client_email: String,
    pub(crate) private_key_id: String,
    pub(crate) private_key: Secret,
    pub(crate) token_uri: String,
    pub(crate) key: RsaKey,
}

/// User credentials: an OAuth client and the user's refresh token.
#[derive(Clone)]
pub struct UserCredentials {
    pub(crate) client_id: String,
    pub(crate) client_secret: Secret,
    pub(crate) refresh_token: Secret,
    pub(crate) token_uri: String,
}

impl ServiceAccountKey {
    /// The service account's email (`client_email`).
    #[must_use]
    pub fn get_client_email(&self) -> &str {
        &self.client_email
    }

    /// The key's id (`private_key_id`), sent as the assertion's `kid`.
    #[must_use]
    pub fn get_private_key_id(&self) -> &str {
        &self.private_key_id
    }

    /// The PEM private key (`private_key`).
    #[must_use]
    pub fn get_private_key(&self) -> &Secret {
        &self.private_key
    }

    /// Where the signed assertion is exchanged for a token (`token_uri`).
    #[must_use]
    pub fn get_token_uri(&self) -> &str {
        &self.token_uri
    }
}

impl UserCredentials {
    /// The OAuth client's id (`client_id`).
    #[must_use]
    pub fn get_client_id(&self) -> &str {
        &self.client_id
    }

    /// The OAuth client's secret (`client_secret`).
    #[must_use]
    pub fn get_client_secret(&self) -> &Secret {
        &self.client_secret
    }

    /// The user's refresh token (`refresh_token`).
    #[must_use]
    pub fn get_refresh_token(&self) -> &Secret {
        &self.refresh_token
    }

    /// Where the refresh token is exchanged for an access token (`token_uri` when the file
    /// has one, else Google's).
    #[must_use]
    pub fn get_token_uri(&self) -> &str {
        &self.token_uri
    }
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("private_key", &self.private_key)
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

impl fmt::Debug for UserCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("refresh_token", &self.refresh_token)
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

impl CredentialsFile {
    /// Reads and checks the credentials file at `path`; `setting` names where the path came
    /// from (`GOOGLE_APPLICATION_CREDENTIALS`, or gcloud's file itself) in errors.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for `setting` naming the file and what is wrong with it.
    pub fn read(path: &Path, setting: &str) -> Result<Self, ConfigError> {
        let bytes = read_file(path, MAX_CREDENTIALS_FILE, "the file").map_err(|e| {
            ConfigError::new(
                setting,
                format!(
                    "cannot read the credentials file {}: {e}; point it at a service account \
                     key file or run gcloud auth application-default login",
                    path.display()
                ),
            )
        })?;
        Self::parse(&bytes, &path.display().to_string(), setting)
    }

    /// Parses a credentials file's contents; `file` names it in errors.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for `setting` naming `file` and what is wrong with it.
    pub fn parse(bytes: &[u8], file: &str, setting: &str) -> Result<Self, ConfigError> {
        let bad = |message: String| ConfigError::new(setting, format!("{file}: {message}"));
        // The error of serde_json names a position, never the content: safe to show.
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| bad(format!("is not a json credentials file ({e})")))?;
        let object = value
            .as_object()
            .ok_or_else(|| bad("is not a json object; use a credentials file".into()))?;
        let kind = object
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("has no \"type\"; use a service account key file".into()))?;
        match kind {
            "service_account" => service_account(object).map(Self::ServiceAccount),
            "authorized_user" => authorized_user(object).map(Self::AuthorizedUser),
            "external_account" => external_account(object, file).map(Self::ExternalAccount),
            "impersonated_service_account" => impersonated(object, file).map(Self::Impersonated),
            "external_account_authorized_user" => Err(
                "has type \"external_account_authorized_user\" (a workforce identity \
                 federation user login), which is not supported: use a service account key, \
                 the metadata server, or a token callback"
                    .to_string(),
            ),
            other => Err(format!(
                "has type {other:?}, which is not a credentials type this library knows; use \
                 a service account key file (\"service_account\"), gcloud's user \
                 credentials (\"authorized_user\"), \"external_account\" or \
                 \"impersonated_service_account\""
            )),
        }
        .map_err(bad)
    }

    /// The file's `type`: `service_account`, `authorized_user`, `external_account` or
    /// `impersonated_service_account`.
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::ServiceAccount(_) => "service_account",
            Self::AuthorizedUser(_) => "authorized_user",
            Self::ExternalAccount(_) => "external_account",
            Self::Impersonated(_) => "impersonated_service_account",
        }
    }
}

/// A non-empty string field, or a message naming it.
pub(crate) fn field<'a>(
    object: &'a Map<String, Value>,
    name: &str,
    what: &str,
) -> Result<&'a str, String> {
    object
        .get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("the {what} has no {name:?}; {}", fix_for(what)))
}

/// An optional string field: `None` when absent, null or blank; an error when not a string.
pub(crate) fn optional_field(
    object: &Map<String, Value>,
    name: &str,
) -> Result<Option<String>, String> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
        Some(_) => Err(format!("{name} is not a string")),
    }
}

fn fix_for(what: &str) -> &'static str {
    if what.contains("federation") {
        "regenerate the file with gcloud iam workload-identity-pools create-cred-config"
    } else if what.contains("service account") {
        "create a new key (gcloud iam service-accounts keys create) and point to it"
    } else {
        "run gcloud auth application-default login again"
    }
}

pub(crate) fn service_account(object: &Map<String, Value>) -> Result<ServiceAccountKey, String> {
    const WHAT: &str = "service account key";
    let client_email = field(object, "client_email", WHAT)?;
    if username_from_email(client_email).is_none() {
        return Err(format!(
            "the {WHAT}'s client_email {client_email:?} is not an email address; {}",
            fix_for(WHAT)
        ));
    }
    let private_key_id = field(object, "private_key_id", WHAT)?;
    let pem = field(object, "private_key", WHAT)?;
    let key = RsaKey::from_pem(pem).map_err(|e| format!("the {WHAT}'s private_key {e}"))?;
    let token_uri = token_uri(object)?;
    Ok(ServiceAccountKey {
        client_email: client_email.to_string(),
        private_key_id: private_key_id.to_string(),
        private_key: Secret::new(pem),
        token_uri,
        key,
    })
}

pub(crate) fn authorized_user(object: &Map<String, Value>) -> Result<UserCredentials, String> {
    const WHAT: &str = "user credentials file";
    Ok(UserCredentials {
        client_id: field(object, "client_id", WHAT)?.to_string(),
        client_secret: Secret::new(field(object, "client_secret", WHAT)?),
        refresh_token: Secret::new(field(object, "refresh_token", WHAT)?),
        token_uri: token_uri(object)?,
    })
}

/// The file's `token_uri`, Google's when absent. It receives a signed assertion or a
/// refresh token, so it must be `https`, or `http` to a loopback address (an emulator).
fn token_uri(object: &Map<String, Value>) -> Result<String, String> {
    let Some(value) = object.get("token_uri") else {
        return Ok(GOOGLE_TOKEN_URI.to_string());
    };
    let uri = value.as_str().map(str::trim).unwrap_or_default();
    if check_token_uri(uri) {
        Ok(uri.to_string())
    } else {
        Err(format!(
            "token_uri {uri:?} is not an https url (http is allowed only to a loopback \
             address); use {GOOGLE_TOKEN_URI}"
        ))
    }
}

/// Whether `uri` may receive credentials: `https://host/...`, or `http://` to loopback.
pub(crate) fn check_token_uri(uri: &str) -> bool {
    http_url(uri).is_some_and(|url| url.https || is_loopback(url.host))
}
