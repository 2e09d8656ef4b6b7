//! Credentials files for workload identity federation (`external_account`) and service
//! account impersonation (`impersonated_service_account`) that name the emulator's
//! endpoints, and the subject token files a platform would write.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::{Value, json};

use super::GcpIdentity;
use super::iam::{GENERATE_ACCESS_TOKEN, SERVICE_ACCOUNTS_PATH};
use super::principals::write_json;
use super::sts::{
    FEDERATION_AUDIENCE, STS_PATH, SUBJECT_TOKEN_HEADER, SUBJECT_TOKEN_PATH, SUBJECT_TOKEN_TYPE,
};
use crate::Error;

/// Where an `external_account` file's subject token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FederatedSource {
    /// A file (`credential_source.file`), written with
    /// [`GcpIdentity::write_subject_token`].
    File(PathBuf),
    /// The emulator's subject token URL, answering in text.
    UrlText,
    /// The emulator's subject token URL, answering `{"access_token": ...}`
    /// (`format.type` `json`, `subject_token_field_name` `access_token`).
    UrlJson,
}

/// The credentials an `impersonated_service_account` file impersonates with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImpersonatingSource {
    /// The emulator's user ([`GcpIdentity::user`]), as `gcloud auth application-default
    /// login --impersonate-service-account` leaves it.
    User,
    /// The key file's service account ([`GcpIdentity::key_account`]).
    KeyAccount,
}

impl GcpIdentity {
    /// The Security Token Service's URL (`{base}/v1/token`), for `token_url`.
    pub fn sts_url(&self) -> String {
        format!("{}{STS_PATH}", self.base_url())
    }

    /// The subject token URL (`{base}/emulator/gcp/subject-token`).
    pub fn subject_token_url(&self) -> String {
        format!("{}{SUBJECT_TOKEN_PATH}", self.base_url())
    }

    /// The `generateAccessToken` URL of the service account `email`.
    pub fn impersonation_url(&self, email: &str) -> String {
        format!(
            "{}{SERVICE_ACCOUNTS_PATH}{email}{GENERATE_ACCESS_TOKEN}",
            self.base_url()
        )
    }

    fn base_url(&self) -> &str {
        self.inner.base_url.get().map_or("", String::as_str)
    }

    /// Mints a subject token for the federated workload `subject` (valid for an hour) and
    /// writes it to `path`, replacing the file at once as a kubelet rotates a projected
    /// token. Returns the token.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be written.
    pub fn write_subject_token(&self, path: &Path, subject: &str) -> Result<String, Error> {
        let token = self.mint_subject_token(subject);
        let temp = path.with_extension("tmp");
        std::fs::write(&temp, &token).map_err(Error::io(format!("writing {}", temp.display())))?;
        std::fs::rename(&temp, path)
            .map_err(Error::io(format!("renaming to {}", path.display())))?;
        Ok(token)
    }

    /// Mints a subject token for the federated workload `subject`, valid for an hour.
    pub fn mint_subject_token(&self, subject: &str) -> String {
        self.inner.subjects.mint(subject, SystemTime::now())
    }

    /// The subject tokens presented to the Security Token Service so far, in order
    /// (accepted or not).
    pub fn subject_tokens_seen(&self) -> Vec<String> {
        self.inner.subjects.seen()
    }

    /// Writes `external-account.json` into `dir`: workload identity federation with the
    /// emulator's pool provider ([`FEDERATION_AUDIENCE`]) and STS, the subject token from
    /// `source`, impersonating the service account `impersonate` when given.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] before the base URL is set; [`Error::Io`] when the file
    /// cannot be written.
    pub fn write_external_account_file(
        &self,
        dir: &Path,
        source: &FederatedSource,
        impersonate: Option<&str>,
    ) -> Result<PathBuf, Error> {
        self.require_token_uri()?;
        let (name, value) = SUBJECT_TOKEN_HEADER;
        let credential_source = match source {
            FederatedSource::File(path) => json!({ "file": path.display().to_string() }),
            FederatedSource::UrlText => json!({
                "url": self.subject_token_url(),
                "headers": { name: value },
            }),
            FederatedSource::UrlJson => json!({
                "url": format!("{}?format=json", self.subject_token_url()),
                "headers": { name: value },
                "format": { "type": "json", "subject_token_field_name": "access_token" },
            }),
        };
        let mut file = json!({
            "universe_domain": "googleapis.com",
            "type": "external_account",
            "audience": FEDERATION_AUDIENCE,
            "subject_token_type": SUBJECT_TOKEN_TYPE,
            "token_url": self.sts_url(),
            "credential_source": credential_source,
        });
        if let Some(email) = impersonate {
            file["service_account_impersonation_url"] = json!(self.impersonation_url(email));
        }
        write_json(dir, "external-account.json", &file)
    }

    /// Writes `impersonated-service-account.json` into `dir`: `source` impersonates the
    /// service account `target`, through `delegates` (emails) if any.
    ///
    /// # Errors
    ///
    /// As [`write_external_account_file`](Self::write_external_account_file).
    pub fn write_impersonated_file(
        &self,
        dir: &Path,
        source: ImpersonatingSource,
        target: &str,
        delegates: &[&str],
    ) -> Result<PathBuf, Error> {
        let uri = self.require_token_uri()?;
        let source_credentials: Value = match source {
            ImpersonatingSource::User => self.user().credentials_json(&uri),
            ImpersonatingSource::KeyAccount => self.key_account().key_json(&uri),
        };
        let file = json!({
            "type": "impersonated_service_account",
            "service_account_impersonation_url": self.impersonation_url(target),
            "delegates": delegates,
            "source_credentials": source_credentials,
        });
        write_json(dir, "impersonated-service-account.json", &file)
    }
}
