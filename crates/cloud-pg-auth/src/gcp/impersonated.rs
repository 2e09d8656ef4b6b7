//! Service account impersonation: the `impersonated_service_account` file that `gcloud auth
//! application-default login --impersonate-service-account` writes, and the
//! `generateAccessToken` URL that it and `external_account` files name.

use std::fmt;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use serde_json::{Map, Value};

use super::credentials::{
    ServiceAccountKey, UserCredentials, authorized_user, check_token_uri, service_account,
};
use super::username::username_from_email;

/// The end of a `generateAccessToken` URL, after the service account's email.
const GENERATE_ACCESS_TOKEN: &str = ":generateAccessToken";

/// The service account a token is exchanged for (`service_account_impersonation_url`),
/// with the delegation chain and the lifetime asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Impersonation {
    pub(crate) url: String,
    pub(crate) email: String,
    pub(crate) delegates: Vec<String>,
    pub(crate) lifetime: Duration,
}

impl Impersonation {
    /// The `generateAccessToken` URL (`service_account_impersonation_url`).
    #[must_use]
    pub fn get_url(&self) -> &str {
        &self.url
    }

    /// The impersonated service account's email, read from the URL; the database user
    /// name is derived from it.
    #[must_use]
    pub fn get_service_account_email(&self) -> &str {
        &self.email
    }

    /// The delegation chain (`delegates`), as `projects/-/serviceAccounts/EMAIL`.
    #[must_use]
    pub fn get_delegates(&self) -> &[String] {
        &self.delegates
    }

    /// The lifetime asked for the token (one hour unless the file says otherwise).
    #[must_use]
    pub fn get_lifetime(&self) -> Duration {
        self.lifetime
    }
}

/// The credentials that impersonate: a service account key or gcloud's user credentials
/// (`source_credentials`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SourceCredentials {
    /// A service account key (`"type": "service_account"`); its token is asked with the
    /// `cloud-platform` scope.
    ServiceAccount(ServiceAccountKey),
    /// User credentials (`"type": "authorized_user"`); their token carries the scopes
    /// the user consented to.
    AuthorizedUser(UserCredentials),
}

/// An `impersonated_service_account` file: the source credentials' token is exchanged for
/// a token of the service account named in the URL.
#[derive(Clone)]
pub struct ImpersonatedCredentials {
    /// The credentials file, for messages.
    pub(crate) file: String,
    pub(crate) source: SourceCredentials,
    pub(crate) impersonation: Impersonation,
}

impl ImpersonatedCredentials {
    /// The credentials that impersonate (`source_credentials`).
    #[must_use]
    pub fn get_source(&self) -> &SourceCredentials {
        &self.source
    }

    /// The service account impersonated.
    #[must_use]
    pub fn get_impersonation(&self) -> &Impersonation {
        &self.impersonation
    }
}

impl fmt::Debug for ImpersonatedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The source's own Debug redacts its secrets.
        f.debug_struct("ImpersonatedCredentials")
            .field("file", &self.file)
            .field("source", &self.source)
            .field("impersonation", &self.impersonation)
            .finish()
    }
}

/// Parses an `impersonated_service_account` object; `file` names it in later messages.
pub(crate) fn impersonated(
    object: &Map<String, Value>,
    file: &str,
) -> Result<ImpersonatedCredentials, String> {
    let source = object
        .get("source_credentials")
        .and_then(Value::as_object)
        .ok_or(
            "has no \"source_credentials\" object; run gcloud auth application-default login \
             --impersonate-service-account=EMAIL again",
        )?;
    let in_source = |e: String| format!("source_credentials: {e}");
    let source = match source.get("type").and_then(Value::as_str) {
        Some("service_account") => {
            SourceCredentials::ServiceAccount(service_account(source).map_err(in_source)?)
        }
        Some("authorized_user") => {
            SourceCredentials::AuthorizedUser(authorized_user(source).map_err(in_source)?)
        }
        other => {
            return Err(format!(
                "source_credentials has type {}, which cannot impersonate here; use \
                 \"service_account\" or \"authorized_user\" source credentials",
                other.map_or_else(|| "none".to_string(), |t| format!("{t:?}"))
            ));
        }
    };
    if object
        .get("service_account_impersonation_url")
        .is_none_or(Value::is_null)
    {
        return Err(
            "has no \"service_account_impersonation_url\"; run gcloud auth \
             application-default login --impersonate-service-account=EMAIL again"
                .to_string(),
        );
    }
    Ok(ImpersonatedCredentials {
        file: file.to_string(),
        source,
        impersonation: impersonation(object, 3600)?,
    })
}

/// `service_account_impersonation_url` and `delegates` of `object`, for a token of
/// `lifetime_seconds`. The URL receives a token, so it must be `https` (or `http` to a
/// loopback address, for an emulator), and it must name the service account.
pub(crate) fn impersonation(
    object: &Map<String, Value>,
    lifetime_seconds: u64,
) -> Result<Impersonation, String> {
    let url = object
        .get("service_account_impersonation_url")
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or_default();
    if !check_token_uri(url) {
        return Err(format!(
            "service_account_impersonation_url {url:?} is not an https url (http is allowed \
             only to a loopback address)"
        ));
    }
    let email = impersonated_email(url).ok_or_else(|| {
        format!(
            "service_account_impersonation_url {url:?} does not name a service account; use \
             https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/EMAIL{GENERATE_ACCESS_TOKEN}"
        )
    })?;
    let delegates = match object.get("delegates") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(delegate)
                    .ok_or_else(|| {
                        "delegates has an entry that is not a service account email".to_string()
                    })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err("delegates is not a list of service account emails".to_string());
        }
    };
    Ok(Impersonation {
        url: url.to_string(),
        email,
        delegates,
        lifetime: Duration::from_secs(lifetime_seconds),
    })
}

/// The email in `.../serviceAccounts/EMAIL:generateAccessToken`, if it is one.
pub(crate) fn impersonated_email(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next()?;
    let rest = path.strip_suffix(GENERATE_ACCESS_TOKEN)?;
    let (_, name) = rest.rsplit_once("/serviceAccounts/")?;
    let email = percent_decode_str(name).decode_utf8().ok()?;
    (!email.contains('/') && username_from_email(&email).is_some()).then(|| email.into_owned())
}

/// A delegate as the API wants it: `projects/-/serviceAccounts/EMAIL` (files may hold the
/// bare email).
fn delegate(value: &str) -> String {
    if value.starts_with("projects/") {
        value.to_string()
    } else {
        format!("projects/-/serviceAccounts/{value}")
    }
}
