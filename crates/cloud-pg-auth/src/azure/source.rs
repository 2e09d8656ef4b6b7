//! [`AzureSource`]: Entra tokens from a managed identity, workload identity, a client secret,
//! the Azure CLI or any caller-supplied `TokenCredential`.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::{ClientOptions, HttpClient, RetryOptions, Transport};
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientAssertionCredential,
    ClientAssertionCredentialOptions, ClientSecretCredential, ClientSecretCredentialOptions,
};

use super::audience;
use super::federated::FederatedTokenFile;
use super::http::{
    CliExecutor, FactsSlot, LAST_RESPONSE, RecordingClient, ResponseFacts, build_client,
};
use super::limits::too_large_in;
use super::managed_identity::{ManagedIdentityClient, RawToken};
use super::{AzureCredentialKind, AzureOptions, Choice, DEFAULT_TIMEOUT, JwtClaims};
use crate::error::{ConfigError, Error, TokenError, TokenErrorKind};
use crate::source::{SourceInfo, TokenSource};
use crate::status::rfc3339;
use crate::{AccessToken, AuthMethod, Secret, Settings};

/// Microsoft Entra tokens for Azure Database for PostgreSQL.
///
/// Each source owns its credential and its HTTP client: build one per engine, never share a
/// credential between engines or tokio runtimes. The HTTP client keeps no idle connections,
/// so a source keeps working when the runtime it was first used on is gone.
///
/// One [`fetch`](TokenSource::fetch) asks once: retries and refresh belong to the
/// [`TokenCache`](crate::TokenCache). azure_identity's own retry policy is switched off, and
/// its built-in cache is bypassed for workload identity and client secrets (a new credential
/// per fetch): it would answer our refresh ahead of expiry with the token it holds until 5
/// minutes before expiry. A caller's own `TokenCredential` ([`AzureSource::for_credential`])
/// and the Azure CLI keep their caches, so their tokens are renewed when those caches decide.
pub struct AzureSource {
    backend: Backend,
    scope: String,
    info: SourceInfo,
    origin: String,
    timeout: Duration,
    kind: Option<AzureCredentialKind>,
}

enum Backend {
    ManagedIdentity(ManagedIdentityClient),
    /// A caller's credential, or the Azure CLI's (`az` keeps its own cache): asked as it is.
    Credential(Arc<dyn TokenCredential>),
    /// Workload identity or a client secret: a new azure_identity credential per fetch.
    /// Their built-in cache answers with the token it holds until 5 minutes before expiry,
    /// which would turn our refresh well ahead of expiry (half-life for long-lived tokens)
    /// into one in the last 5 minutes, and hide an endpoint outage until then.
    Fresh(CredentialFactory),
}

/// Makes one of azure_identity's credentials (cheap: options and the shared HTTP client).
type CredentialFactory =
    Box<dyn Fn() -> azure_core::Result<Arc<dyn TokenCredential>> + Send + Sync>;

impl AzureSource {
    /// Builds the credential the options call for (for `auto`, the first configured one).
    /// Synchronous and without network traffic; a workload identity's token file is read here.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when settings are missing or contradict each other (the message says
    /// what `auto` found), [`Error::Tls`] when the https client cannot be built.
    pub fn new(options: &AzureOptions) -> Result<Self, Error> {
        Self::build(options, None)
    }

    /// Like [`new`](Self::new), with every HTTP request sent through `client` (an azure_core
    /// transport): for proxies, tests, or routing the VM metadata endpoint elsewhere.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_http_client(
        options: &AzureOptions,
        client: Arc<dyn HttpClient>,
    ) -> Result<Self, Error> {
        Self::build(options, Some(client))
    }

    /// A source over a caller-supplied credential. `info` describes it for status output
    /// (for example `SourceInfo::new("azure").credential_kind("custom")`). `scope` must ask for
    /// a cloud's Azure Database for PostgreSQL audience ([`AzureCloud::scope`]): every token
    /// is checked against it, and with any other scope every fetch fails.
    ///
    /// [`AzureCloud::scope`]: super::AzureCloud::scope
    #[must_use]
    pub fn from_credential(
        credential: Arc<dyn TokenCredential>,
        scope: impl Into<String>,
        info: SourceInfo,
    ) -> Self {
        Self {
            backend: Backend::Credential(credential),
            scope: scope.into(),
            origin: info.label(),
            info,
            timeout: DEFAULT_TIMEOUT,
            kind: None,
        }
    }

    /// A source over the caller's own `TokenCredential` (any azure_identity credential, or
    /// one of the application's) for the server `settings` name, ready for an engine's
    /// `token_source(..)`: tokens are asked for the database scope of the settings' cloud
    /// (the host's cloud, such as usgov for `*.postgres.database.usgovcloudapi.net`, which
    /// `PGAUTH_AZURE_CLOUD` must agree with; for other host names `PGAUTH_AZURE_CLOUD`), within
    /// the settings' Azure timeout. Engines treat settings that leave the method to `auto`
    /// as Azure's with it: the user is `PGUSER`, else the name the token carries.
    ///
    /// ```no_run
    /// # async fn run(credential: std::sync::Arc<dyn azure_core::credentials::TokenCredential>)
    /// # -> Result<(), cloud_pg_auth::Error> {
    /// use cloud_pg_auth::Settings;
    /// use cloud_pg_auth::azure::AzureSource;
    ///
    /// let settings = Settings::from_env()?;
    /// let source = AzureSource::for_credential(credential, &settings)?;
    /// // An engine builder takes it: PooledEngine::builder(settings).token_source(source).
    /// # let _ = source;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the host's cloud is not the settings' cloud, an Azure setting
    /// is invalid, or `PGAUTH_METHOD` names another method.
    pub fn for_credential(
        credential: Arc<dyn TokenCredential>,
        settings: &Settings,
    ) -> Result<Arc<dyn TokenSource>, Error> {
        let method = settings.get_method();
        if !matches!(method, AuthMethod::Auto | AuthMethod::Azure) {
            return Err(ConfigError::new(
                "PGAUTH_METHOD",
                format!(
                    "is {} but the token source is an azure credential; unset PGAUTH_METHOD or set it to azure",
                    method.as_str()
                ),
            )
            .into());
        }
        let options = settings.get_azure();
        options.check_host(settings.get_host().unwrap_or_default())?;
        let info = SourceInfo::new("azure")
            .cloud(options.cloud.as_str())
            .credential_kind("token-credential");
        let source = Self::from_credential(credential, options.effective_scope(), info)
            .with_timeout(options.timeout);
        Ok(Arc::new(source))
    }

    /// Sets the time allowed for one fetch (default [`DEFAULT_TIMEOUT`], or the options').
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The scope tokens are requested for.
    #[must_use]
    pub fn scope(&self) -> &str {
        &self.scope
    }

    /// The credential kind in use (`auto` resolved); `None` for a caller-supplied credential.
    #[must_use]
    pub fn credential_kind(&self) -> Option<AzureCredentialKind> {
        self.kind
    }

    fn build(options: &AzureOptions, client: Option<Arc<dyn HttpClient>>) -> Result<Self, Error> {
        options.validate()?;
        let choice = options.choose(|| options.find_az())?;
        let kind = choice.kind();
        let scope = options.effective_scope().to_string();
        let http = |identity_endpoint: bool| -> Result<Arc<dyn HttpClient>, Error> {
            let inner = match &client {
                Some(client) => Arc::clone(client),
                None => build_client(options, identity_endpoint)?,
            };
            Ok(Arc::new(RecordingClient::new(inner)))
        };
        let info = SourceInfo::new("azure")
            .cloud(options.cloud.as_str())
            .credential_kind(kind.as_str());
        let token_endpoint = |tenant: &str| {
            format!(
                "{}/{tenant}/oauth2/v2.0/token",
                options.effective_authority_host()
            )
        };

        let (backend, info) = match choice {
            Choice::ManagedIdentity {
                endpoint,
                user_assigned,
            } => {
                let label = user_assigned
                    .as_ref()
                    .map_or_else(|| "system-assigned".to_string(), |id| id.label());
                let client =
                    ManagedIdentityClient::new(http(true)?, endpoint, user_assigned, &scope)?;
                let info = info
                    .identity(format!("{label} ({})", client.protocol()))
                    .endpoint(client.endpoint());
                (Backend::ManagedIdentity(client), info)
            }
            Choice::WorkloadIdentity {
                token_file,
                client_id,
                tenant_id,
            } => {
                // The file is read by our assertion, with a size limit (see `federated`).
                let assertion = FederatedTokenFile::new(&token_file)?;
                let (entra, http) = (options.clone(), http(false)?);
                let (tenant, client) = (tenant_id.clone(), client_id.clone());
                let factory: CredentialFactory = Box::new(move || {
                    let credential: Arc<dyn TokenCredential> = ClientAssertionCredential::new(
                        tenant.clone(),
                        client.clone(),
                        assertion.clone(),
                        Some(ClientAssertionCredentialOptions {
                            client_options: entra_client_options(&entra, Arc::clone(&http)),
                        }),
                    )?;
                    Ok(credential)
                });
                // Made once here so that bad settings fail at start-up.
                factory().map_err(|e| {
                    ConfigError::new(
                        "AZURE_TENANT_ID",
                        format!("cannot set up workload identity: {}", chain(&e)),
                    )
                })?;
                let info = info
                    .identity(format!("client id {client_id}"))
                    .endpoint(token_endpoint(&tenant_id));
                (Backend::Fresh(factory), info)
            }
            Choice::ClientSecret {
                tenant_id,
                client_id,
                secret,
            } => {
                let (entra, http) = (options.clone(), http(false)?);
                let (tenant, client) = (tenant_id.clone(), client_id.clone());
                let factory: CredentialFactory = Box::new(move || {
                    let credential: Arc<dyn TokenCredential> = ClientSecretCredential::new(
                        &tenant,
                        client.clone(),
                        azure_core::credentials::Secret::new(secret.expose().to_string()),
                        Some(ClientSecretCredentialOptions {
                            client_options: entra_client_options(&entra, Arc::clone(&http)),
                        }),
                    )?;
                    Ok(credential)
                });
                // Made once here so that bad settings fail at start-up, naming the setting.
                factory().map_err(|e| {
                    let text = chain(&e);
                    let setting = if text.contains("tenant") {
                        "AZURE_TENANT_ID"
                    } else if text.contains("client ID") {
                        "AZURE_CLIENT_ID"
                    } else {
                        "AZURE_CLIENT_SECRET"
                    };
                    ConfigError::new(
                        setting,
                        format!("cannot set up the client secret credential: {text}"),
                    )
                })?;
                let info = info
                    .identity(format!("client id {client_id}"))
                    .endpoint(token_endpoint(&tenant_id));
                (Backend::Fresh(factory), info)
            }
            Choice::Cli { program } => {
                let credential = AzureCliCredential::new(Some(AzureCliCredentialOptions {
                    executor: Some(Arc::new(CliExecutor::new(options.cli_search_path.clone()))),
                    ..Default::default()
                }))
                .map_err(|e| {
                    ConfigError::new(
                        "PGAUTH_AZURE_CREDENTIAL",
                        format!("cannot set up the azure cli credential: {}", chain(&e)),
                    )
                })?;
                let info = info.endpoint(program.display().to_string());
                (Backend::Credential(credential), info)
            }
        };
        tracing::debug!(source = %info.label(), "azure token source ready");
        Ok(Self {
            backend,
            scope,
            origin: info.label(),
            info,
            timeout: options.timeout,
            kind: Some(kind),
        })
    }

    async fn fetch_raw(&self, slot: &FactsSlot) -> Result<RawToken, TokenError> {
        match &self.backend {
            Backend::ManagedIdentity(client) => client.fetch(&self.origin).await,
            Backend::Credential(credential) => self.ask(credential.as_ref(), slot).await,
            Backend::Fresh(factory) => match factory() {
                Ok(credential) => self.ask(credential.as_ref(), slot).await,
                Err(e) => Err(classify(e, *slot.lock().unwrap(), self.kind, &self.origin)),
            },
        }
    }

    async fn ask(
        &self,
        credential: &dyn TokenCredential,
        slot: &FactsSlot,
    ) -> Result<RawToken, TokenError> {
        let scopes = [self.scope.as_str()];
        match credential.get_token(&scopes, None).await {
            Ok(token) => Ok(RawToken {
                secret: Secret::new(token.token.secret()),
                expires_on: unix_time(token.expires_on.unix_timestamp()),
            }),
            Err(e) => {
                let facts = *slot.lock().unwrap();
                Err(classify(e, facts, self.kind, &self.origin))
            }
        }
    }
}

impl fmt::Debug for AzureSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureSource")
            .field("info", &self.info)
            .field("scope", &self.scope)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TokenSource for AzureSource {
    async fn fetch(&self) -> Result<AccessToken, TokenError> {
        let slot = FactsSlot::default();
        let attempt = LAST_RESPONSE.scope(
            Arc::clone(&slot),
            tokio::time::timeout(self.timeout, self.fetch_raw(&slot)),
        );
        let raw = match attempt.await {
            Ok(result) => result?,
            Err(_elapsed) => {
                return Err(TokenError::new(
                    TokenErrorKind::Transient,
                    &self.origin,
                    format!(
                        "no token within {:?}; the identity endpoint is slow or unreachable",
                        self.timeout
                    ),
                ));
            }
        };
        finish(raw, &self.origin, &self.scope, SystemTime::now())
    }

    fn info(&self) -> SourceInfo {
        self.info.clone()
    }
}

/// Client options for the Entra credentials: our transport, no SDK retries (the cache
/// retries), and the authority set explicitly so that azure_identity never reads
/// `AZURE_AUTHORITY_HOST` from the process environment.
fn entra_client_options(options: &AzureOptions, http: Arc<dyn HttpClient>) -> ClientOptions {
    let mut cloud = CustomConfiguration::default();
    cloud.authority_host = options.effective_authority_host().to_string();
    ClientOptions {
        transport: Some(Transport::new(http)),
        retry: RetryOptions::none(),
        cloud: Some(Arc::new(CloudConfiguration::Custom(cloud))),
        ..Default::default()
    }
}

/// Checks a token and turns it into an [`AccessToken`]: it must be a JWT for the database
/// audience of `scope` (else it never leaves this function); the expiry is the earlier of the
/// endpoint's and the JWT's `exp`; the details come from the JWT claims.
pub(crate) fn finish(
    raw: RawToken,
    origin: &str,
    scope: &str,
    now: SystemTime,
) -> Result<AccessToken, TokenError> {
    if raw.secret.is_empty() {
        return Err(TokenError::new(
            TokenErrorKind::Transient,
            origin,
            "the identity endpoint returned an empty token",
        ));
    }
    let claims = JwtClaims::parse(raw.secret.expose());
    // Config, not transient: asking again gets the same audience. The cache still backs off.
    audience::check_token(claims.as_ref(), scope)
        .map_err(|message| TokenError::new(TokenErrorKind::Config, origin, message))?;
    let expires_at = match claims.as_ref().and_then(JwtClaims::expires_at) {
        Some(exp) => exp.min(raw.expires_on),
        None => raw.expires_on,
    };
    if expires_at <= now {
        return Err(TokenError::new(
            TokenErrorKind::Transient,
            origin,
            format!(
                "the identity endpoint returned a token that expired at {} (now {}); if this \
                 machine's clock is wrong, fix it",
                rfc3339(expires_at),
                rfc3339(now)
            ),
        ));
    }
    let details = claims.map(|c| c.details()).unwrap_or_default();
    Ok(AccessToken::new(raw.secret)
        .with_expiry(expires_at)
        .with_details(details))
}

fn unix_time(seconds: i64) -> SystemTime {
    u64::try_from(seconds)
        .ok()
        .and_then(|s| SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(s)))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// Sorts an azure_identity failure into a kind, with a message that says what to check.
fn classify(
    error: azure_core::Error,
    facts: Option<ResponseFacts>,
    kind: Option<AzureCredentialKind>,
    origin: &str,
) -> TokenError {
    let status = http_status(&error).or(facts.map(|f| f.status).filter(|s| *s >= 400));
    let retry_after = facts.and_then(|f| f.retry_after);
    let text = chain(&error);
    if let Some(too_large) = too_large_in(&error) {
        let message = match kind {
            Some(AzureCredentialKind::Cli) => {
                format!("the azure cli gave no usable token: {too_large}")
            }
            Some(AzureCredentialKind::WorkloadIdentity) if too_large.what.contains("file") => {
                format!("{too_large}; check AZURE_FEDERATED_TOKEN_FILE")
            }
            _ => format!(
                "the token endpoint sent more than a token answer: {too_large}; check \
                 AZURE_AUTHORITY_HOST and any proxy in between"
            ),
        };
        return TokenError::new(TokenErrorKind::Transient, origin, message).with_cause(error);
    }
    let check = match kind {
        Some(AzureCredentialKind::WorkloadIdentity) => {
            "check AZURE_CLIENT_ID, AZURE_TENANT_ID and the federated credential of the app \
             registration or managed identity"
        }
        Some(AzureCredentialKind::ClientSecret) => {
            "check AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (it may have expired)"
        }
        _ => "check the credential's settings",
    };
    let (token_kind, message) = match status {
        Some(429) => (
            TokenErrorKind::Throttled,
            "entra is throttling token requests (HTTP 429)".to_string(),
        ),
        Some(s @ (400 | 401 | 403)) => (
            TokenErrorKind::Rejected,
            format!("entra refused the credential (HTTP {s}); {check}"),
        ),
        Some(s) => (
            TokenErrorKind::Transient,
            format!("the token endpoint failed (HTTP {s})"),
        ),
        None if kind == Some(AzureCredentialKind::Cli) => {
            let lower = text.to_ascii_lowercase();
            if lower.contains("az login") || lower.contains("aadsts") {
                (
                    TokenErrorKind::Rejected,
                    "the azure cli has no valid login; run az login".to_string(),
                )
            } else if lower.contains("not found on path") || lower.contains("wasn't found") {
                (
                    TokenErrorKind::Config,
                    "the azure cli (az) was not found; install it and run az login, or choose \
                     another credential with PGAUTH_AZURE_CREDENTIAL"
                        .to_string(),
                )
            } else {
                (
                    TokenErrorKind::Transient,
                    "the azure cli could not give a token".to_string(),
                )
            }
        }
        None => match innermost_kind(&error) {
            ErrorKind::Connection | ErrorKind::Io => (
                TokenErrorKind::Transient,
                "cannot reach the token endpoint".to_string(),
            ),
            ErrorKind::DataConversion => (
                TokenErrorKind::Transient,
                "the token endpoint's answer is not a token response".to_string(),
            ),
            _ => (
                TokenErrorKind::Transient,
                "the credential failed".to_string(),
            ),
        },
    };
    let token_error = TokenError::new(token_kind, origin, message).with_cause(error);
    match retry_after {
        Some(after) => token_error.with_retry_after(after),
        None => token_error,
    }
}

/// The HTTP status anywhere in an azure_core error chain.
fn http_status(error: &azure_core::Error) -> Option<u16> {
    let mut next: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(e) = next {
        if let Some(status) = e
            .downcast_ref::<azure_core::Error>()
            .and_then(azure_core::Error::http_status)
        {
            return Some(u16::from(status));
        }
        next = e.source();
    }
    None
}

/// The kind of the innermost azure_core error (azure_identity wraps everything in
/// `Credential`).
fn innermost_kind(error: &azure_core::Error) -> ErrorKind {
    let mut kind = error.kind().clone();
    let mut next = error.source();
    while let Some(e) = next {
        if let Some(inner) = e.downcast_ref::<azure_core::Error>() {
            kind = inner.kind().clone();
        }
        next = e.source();
    }
    kind
}

/// An error and its causes on one line.
fn chain(error: &(dyn StdError + 'static)) -> String {
    crate::error::chain_text(error).replace('\n', " ")
}
