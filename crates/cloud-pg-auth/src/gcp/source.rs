//! [`GcpSource`]: access tokens from a service account key, gcloud's user credentials, the
//! metadata server, workload identity federation or service account impersonation, for
//! Cloud SQL and AlloyDB IAM logins.

use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::OnceCell;

use super::credentials::{CredentialsFile, ServiceAccountKey, UserCredentials};
use super::external::{ExternalAccount, SubjectTokenSource};
use super::federation;
use super::http::{
    Reply, TokenAnswer, build_client, encode, error_code, form, kind_of, parse_token, send,
    send_error, status_text, with_retry,
};
use super::impersonated::{ImpersonatedCredentials, SourceCredentials};
use super::jwt::sign_assertion;
use super::{CLOUD_PLATFORM_SCOPE, CredentialsChoice, GcpOptions, GcpProduct, username_from_email};
use crate::AccessToken;
use crate::error::{ConfigError, Error, TokenError, TokenErrorKind};
use crate::source::{SourceInfo, TokenSource};
use crate::token::TokenDetails;

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const METADATA_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default";

/// Google OAuth 2 access tokens for Cloud SQL and AlloyDB IAM logins, from Application
/// Default Credentials (see the [module docs](super)).
///
/// Build one source per engine: it owns its HTTP client, which keeps no idle connection, so
/// it keeps working when the runtime it was first used on is gone. Building needs no
/// runtime and sends nothing; each [`fetch`](TokenSource::fetch) asks once (retries and
/// refresh belong to the [`TokenCache`](crate::TokenCache)).
pub struct GcpSource {
    backend: Backend,
    product: GcpProduct,
    info: SourceInfo,
    origin: String,
    timeout: Duration,
    /// `PGUSER`: when unset, the user name is derived from the principal's email.
    user: Option<String>,
}

enum Backend {
    /// The metadata server: `base` is `http://{host}{METADATA_PATH}`; the service account's
    /// email is asked once, and only when a user name must be derived from it (no `PGUSER`).
    Metadata {
        client: reqwest::Client,
        base: String,
        email: OnceCell<String>,
    },
    ServiceAccount {
        client: reqwest::Client,
        key: ServiceAccountKey,
    },
    User {
        client: reqwest::Client,
        credentials: UserCredentials,
    },
    /// Workload identity federation; `subject_client` asks a subject token URL (without a
    /// proxy when it is a local address).
    External {
        client: reqwest::Client,
        subject_client: reqwest::Client,
        account: ExternalAccount,
    },
    Impersonated {
        client: reqwest::Client,
        credentials: ImpersonatedCredentials,
    },
}

/// Which OAuth grant an answer is for, to say what to fix when it fails.
#[derive(Clone, Copy)]
enum Grant {
    Jwt,
    Refresh,
}

impl GcpSource {
    /// Builds the source for the credentials [`GcpOptions::choose`] picks; a credentials
    /// file is read and checked here. `user` is `PGUSER`: without it the database user name
    /// is derived from the service account's email, which user credentials cannot give.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the setting or file to fix (a missing or bad credentials
    /// file, an unsupported credentials type or credential source, user credentials or
    /// federation without impersonation and without `PGUSER`, a bad `GCE_METADATA_HOST`);
    /// [`Error::Tls`] when the HTTP client cannot be built.
    pub fn new(options: &GcpOptions, user: Option<&str>) -> Result<Self, Error> {
        let user = user.map(str::trim).filter(|u| !u.is_empty());
        let choice = options.choose()?;
        let product = options.product;
        let info = SourceInfo::new("gcp").cloud(product.as_str());
        let (backend, info) = match &choice {
            CredentialsChoice::MetadataServer(host) => {
                let base = format!("http://{host}{METADATA_PATH}");
                let backend = Backend::Metadata {
                    client: build_client(options.timeout, true)?,
                    base,
                    email: OnceCell::new(),
                };
                let info = info
                    .credential_kind("metadata-server")
                    .identity("default service account")
                    .endpoint(format!("http://{host}"));
                (backend, info)
            }
            CredentialsChoice::ExplicitFile(path) | CredentialsChoice::GcloudFile(path) => {
                let setting = match &choice {
                    CredentialsChoice::ExplicitFile(_) => "GOOGLE_APPLICATION_CREDENTIALS".into(),
                    _ => path.display().to_string(),
                };
                match CredentialsFile::read(path, &setting)? {
                    CredentialsFile::ServiceAccount(key) => {
                        let info = info
                            .credential_kind("service-account-key")
                            .identity(key.client_email.clone())
                            .endpoint(key.token_uri.clone());
                        let client = build_client(options.timeout, false)?;
                        (Backend::ServiceAccount { client, key }, info)
                    }
                    CredentialsFile::AuthorizedUser(credentials) => {
                        let Some(user) = user else {
                            return Err(ConfigError::new(
                                "PGUSER",
                                format!(
                                    "{} holds user credentials (authorized_user), which do not \
                                     name the user reliably; set PGUSER to your google account's \
                                     email, the database user created with --type=cloud_iam_user",
                                    path.display()
                                ),
                            )
                            .into());
                        };
                        let info = info
                            .credential_kind("user-credentials")
                            .identity(user.to_string())
                            .endpoint(credentials.token_uri.clone());
                        let client = build_client(options.timeout, false)?;
                        (
                            Backend::User {
                                client,
                                credentials,
                            },
                            info,
                        )
                    }
                    CredentialsFile::ExternalAccount(account) => {
                        let identity = match (&account.impersonation, user) {
                            (Some(impersonation), _) => impersonation.email.clone(),
                            (None, Some(user)) => user.to_string(),
                            (None, None) => {
                                return Err(ConfigError::new(
                                    "PGUSER",
                                    format!(
                                        "{} holds workload identity federation credentials \
                                         (external_account) without \
                                         service_account_impersonation_url, and a federated \
                                         identity has no email to derive the database user \
                                         from; set PGUSER to the database user, or impersonate \
                                         a service account",
                                        path.display()
                                    ),
                                )
                                .into());
                            }
                        };
                        let info = info
                            .credential_kind("external-account")
                            .identity(identity)
                            .endpoint(account.token_url.clone());
                        let client = build_client(options.timeout, false)?;
                        let subject_client = match &account.source {
                            SubjectTokenSource::Url { url, .. } => {
                                build_client(options.timeout, federation::is_local_url(url))?
                            }
                            SubjectTokenSource::File(_) => client.clone(),
                        };
                        let backend = Backend::External {
                            client,
                            subject_client,
                            account,
                        };
                        (backend, info)
                    }
                    CredentialsFile::Impersonated(credentials) => {
                        let info = info
                            .credential_kind("impersonated-service-account")
                            .identity(credentials.impersonation.email.clone())
                            .endpoint(credentials.impersonation.url.clone());
                        let client = build_client(options.timeout, false)?;
                        let backend = Backend::Impersonated {
                            client,
                            credentials,
                        };
                        (backend, info)
                    }
                }
            }
        };
        tracing::debug!(source = %info.label(), "gcp token source ready");
        Ok(Self {
            backend,
            product,
            origin: info.label(),
            info,
            timeout: options.timeout,
            user: user.map(str::to_string),
        })
    }

    /// The product tokens are asked for.
    #[must_use]
    pub fn product(&self) -> GcpProduct {
        self.product
    }

    /// The scope tokens are asked for (user credentials get the scopes the user consented
    /// to, which include `cloud-platform`).
    #[must_use]
    pub fn scope(&self) -> &'static str {
        self.product.login_scope()
    }

    /// One fetch, without the timeout: the token and the principal's email when known.
    async fn fetch_raw(&self) -> Result<(TokenAnswer, Option<String>), TokenError> {
        match &self.backend {
            Backend::Metadata {
                client,
                base,
                email,
            } => {
                let url = format!("{base}/token?scopes={}", encode(self.scope()));
                let reply = self.metadata_get(client, &url).await?;
                let answer = self.metadata_token(&reply)?;
                // The cell is filled only here, when no PGUSER is set: with one, no email.
                let email = match &self.user {
                    Some(_) => None,
                    None => Some(
                        email
                            .get_or_try_init(|| self.metadata_email(client, base))
                            .await?
                            .clone(),
                    ),
                };
                Ok((answer, email))
            }
            Backend::ServiceAccount { client, key } => {
                let answer = self.jwt_grant(client, key, self.scope()).await?;
                Ok((answer, Some(key.client_email.clone())))
            }
            Backend::User {
                client,
                credentials,
            } => Ok((self.refresh_grant(client, credentials).await?, None)),
            Backend::External {
                client,
                subject_client,
                account,
            } => {
                let subject = federation::subject_token(subject_client, account, &self.origin);
                let subject = subject.await?;
                let Some(impersonation) = &account.impersonation else {
                    let answer =
                        federation::exchange(client, account, &subject, self.scope(), &self.origin);
                    return Ok((answer.await?, None));
                };
                // The federated token only has to impersonate, as Google's Go library asks
                // it; the login scope goes on the service account's token.
                let federated = federation::exchange(
                    client,
                    account,
                    &subject,
                    CLOUD_PLATFORM_SCOPE,
                    &self.origin,
                )
                .await?;
                let answer = federation::impersonate(
                    client,
                    impersonation,
                    &federated.secret,
                    self.scope(),
                    "the federated identity",
                    &self.origin,
                )
                .await?;
                Ok((answer, Some(impersonation.email.clone())))
            }
            Backend::Impersonated {
                client,
                credentials,
            } => {
                let (source, who) = match &credentials.source {
                    SourceCredentials::ServiceAccount(key) => (
                        self.jwt_grant(client, key, CLOUD_PLATFORM_SCOPE).await?,
                        key.client_email.as_str(),
                    ),
                    SourceCredentials::AuthorizedUser(user) => (
                        self.refresh_grant(client, user).await?,
                        "the user of the source credentials",
                    ),
                };
                let impersonation = &credentials.impersonation;
                let answer = federation::impersonate(
                    client,
                    impersonation,
                    &source.secret,
                    self.scope(),
                    who,
                    &self.origin,
                )
                .await?;
                Ok((answer, Some(impersonation.email.clone())))
            }
        }
    }

    /// A service account key's token with `scope` (JWT-bearer grant).
    async fn jwt_grant(
        &self,
        client: &reqwest::Client,
        key: &ServiceAccountKey,
        scope: &str,
    ) -> Result<TokenAnswer, TokenError> {
        let assertion = sign_assertion(key, scope, SystemTime::now())
            .map_err(|e| TokenError::new(TokenErrorKind::Config, &self.origin, e))?;
        let body = form(&[
            ("grant_type", JWT_BEARER),
            ("assertion", assertion.expose()),
        ]);
        let reply = self.post_form(client, &key.token_uri, body).await?;
        self.endpoint_token(&reply, "the service account key", Grant::Jwt)
    }

    /// User credentials' token (refresh-token grant).
    async fn refresh_grant(
        &self,
        client: &reqwest::Client,
        credentials: &UserCredentials,
    ) -> Result<TokenAnswer, TokenError> {
        // No scope: the token carries the scopes the user consented to. Asking for a login
        // scope that the consent lacks fails (alloydb.login is not among gcloud's), and
        // cloud-platform, which is, serves both products.
        let body = form(&[
            ("grant_type", "refresh_token"),
            ("client_id", &credentials.client_id),
            ("client_secret", credentials.client_secret.expose()),
            ("refresh_token", credentials.refresh_token.expose()),
        ]);
        let reply = self.post_form(client, &credentials.token_uri, body).await?;
        self.endpoint_token(&reply, "the user credentials", Grant::Refresh)
    }

    async fn metadata_get(&self, client: &reqwest::Client, url: &str) -> Result<Reply, TokenError> {
        send(client.get(url).header("Metadata-Flavor", "Google"))
            .await
            .map_err(|e| {
                send_error(
                    e,
                    &self.origin,
                    "the metadata server",
                    "outside google cloud set GOOGLE_APPLICATION_CREDENTIALS to a key file or \
                     run gcloud auth application-default login; check GCE_METADATA_HOST",
                )
            })
    }

    /// The metadata server's token answer, or an error saying what its status means.
    fn metadata_token(&self, reply: &Reply) -> Result<TokenAnswer, TokenError> {
        if (200..300).contains(&reply.status) {
            return parse_token(&reply.body, "the metadata server")
                .map_err(|m| TokenError::new(TokenErrorKind::Transient, &self.origin, m));
        }
        Err(self.metadata_status_error(reply))
    }

    fn metadata_status_error(&self, reply: &Reply) -> TokenError {
        let said = status_text(reply);
        let message = match reply.status {
            404 => format!(
                "the metadata server has no service account for this workload ({said}); attach \
                 a service account to the instance, or on gke bind the kubernetes service \
                 account to a google service account (workload identity)"
            ),
            403 => format!(
                "the metadata server refused the request ({said}); check GCE_METADATA_HOST \
                 and, on gke, the workload identity setup"
            ),
            429 => format!("the metadata server is throttling token requests ({said})"),
            _ => format!("the metadata server failed ({said})"),
        };
        with_retry(
            TokenError::new(kind_of(reply.status), &self.origin, message),
            reply,
        )
    }

    /// The attached service account's email (for the user name).
    async fn metadata_email(
        &self,
        client: &reqwest::Client,
        base: &str,
    ) -> Result<String, TokenError> {
        let reply = self.metadata_get(client, &format!("{base}/email")).await?;
        if !(200..300).contains(&reply.status) {
            return Err(self
                .metadata_status_error(&reply)
                .context("cannot read the service account's email for the user name"));
        }
        let email = String::from_utf8_lossy(&reply.body).trim().to_string();
        if username_from_email(&email).is_none() {
            return Err(TokenError::new(
                TokenErrorKind::Config,
                &self.origin,
                "the metadata server's service account email is not an email address, so no \
                 user name can be derived; set PGUSER",
            ));
        }
        Ok(email)
    }

    async fn post_form(
        &self,
        client: &reqwest::Client,
        url: &str,
        body: String,
    ) -> Result<Reply, TokenError> {
        let request = client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        send(request).await.map_err(|e| {
            send_error(
                e,
                &self.origin,
                "the token endpoint",
                "check the network path to it and any proxy in between",
            )
        })
    }

    /// A token endpoint's answer, or an error saying what to check.
    fn endpoint_token(
        &self,
        reply: &Reply,
        what: &str,
        grant: Grant,
    ) -> Result<TokenAnswer, TokenError> {
        if (200..300).contains(&reply.status) {
            return parse_token(&reply.body, "the token endpoint")
                .map_err(|m| TokenError::new(TokenErrorKind::Transient, &self.origin, m));
        }
        let said = status_text(reply);
        let message = match reply.status {
            429 => format!("google is throttling token requests ({said})"),
            s if s >= 500 => format!("the token endpoint failed ({said})"),
            _ => {
                let fix = match (grant, error_code(&reply.body).as_deref()) {
                    (Grant::Jwt, Some("invalid_grant")) => {
                        "the key may be deleted or disabled, or this machine's clock is off: \
                         check it with gcloud iam service-accounts keys list"
                    }
                    (Grant::Refresh, Some("invalid_grant")) => {
                        "the refresh token expired or was revoked: run gcloud auth \
                         application-default login again"
                    }
                    (_, Some("invalid_scope")) => {
                        "these credentials cannot have the login scope: use a service account key"
                    }
                    (Grant::Jwt, _) => "check the service account key file",
                    _ => "check the user credentials file",
                };
                format!("google refused {what} ({said}); {fix}")
            }
        };
        Err(with_retry(
            TokenError::new(kind_of(reply.status), &self.origin, message),
            reply,
        ))
    }
}

impl fmt::Debug for GcpSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpSource")
            .field("info", &self.info)
            .field("product", &self.product)
            .field("user", &self.user)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TokenSource for GcpSource {
    async fn fetch(&self) -> Result<AccessToken, TokenError> {
        let (answer, email) = match tokio::time::timeout(self.timeout, self.fetch_raw()).await {
            Ok(result) => result?,
            Err(_elapsed) => {
                return Err(TokenError::new(
                    TokenErrorKind::Transient,
                    &self.origin,
                    format!(
                        "no token within {:?}; the token endpoint or metadata server is slow or \
                         unreachable",
                        self.timeout
                    ),
                ));
            }
        };
        Ok(finish(answer, email.as_deref(), SystemTime::now()))
    }

    fn info(&self) -> SourceInfo {
        self.info.clone()
    }
}

/// The token with its expiry (`expires_in` from `now`: Google tokens are opaque) and the
/// principal's email and derived user name.
pub(crate) fn finish(answer: TokenAnswer, email: Option<&str>, now: SystemTime) -> AccessToken {
    let mut details = TokenDetails::default();
    if let Some(email) = email {
        details = details.identity(email);
        if let Some(name) = username_from_email(email) {
            details = details
                .username(name)
                .username_source(crate::token::UsernameSource::GoogleEmail);
        }
    }
    AccessToken::new(answer.secret)
        .with_expiry(now + answer.expires_in)
        .with_details(details)
}
