//! Google Cloud SQL and AlloyDB IAM logins, emulated: a metadata server, an OAuth 2 token
//! endpoint for service account keys and user credentials, workload identity federation (a
//! Security Token Service and a subject token URL), IAM's `generateAccessToken` for
//! impersonation, and the check the databases apply to an access token presented as a
//! password.
//!
//! [`GcpIdentity`] holds the principals and the tokens issued; [`GcpServer`] serves its
//! endpoints on a loopback port: set `GCE_METADATA_HOST` to [`GcpServer::metadata_host`],
//! and key files written by [`GcpServer::write_service_account_key`] name its `token_uri`;
//! [`GcpIdentity::write_external_account_file`] and
//! [`GcpIdentity::write_impersonated_file`] write the other credentials files.
//! Tokens are opaque, as Google's are: only the emulator that issued one can check it
//! ([`GcpIdentity::check`]).

mod check;
mod files;
mod iam;
mod metadata;
mod oauth;
mod principals;
mod sts;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use tokio::sync::watch;

pub use check::{CLOUD_PLATFORM_SCOPE, GcpPrincipal, GcpProduct, GcpRejection, PrincipalKind};
pub use files::{FederatedSource, ImpersonatingSource};
pub use iam::IAM_SCOPE;
pub use principals::{SERVICE_ACCOUNT_SUFFIX, ServiceAccount, UserAccount, username_for};
pub use sts::{
    FEDERATION_AUDIENCE, SUBJECT_TOKEN_HEADER, SUBJECT_TOKEN_TYPE, URL_SUBJECT, federated_principal,
};

use crate::Error;
use crate::identity::{Body, Handler, bind, json_response, read_body, supervise};
use check::TokenStore;
use principals::write_json;
use sts::SubjectTokens;

/// The project the default principals live in.
pub const PROJECT: &str = "pgauth-emulator";

/// The emulator's Google principals and issued tokens. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct GcpIdentity {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The metadata server's default service account.
    metadata_account: ServiceAccount,
    /// The service account whose key files are handed out.
    key_account: ServiceAccount,
    user: UserAccount,
    tokens: TokenStore,
    /// Federated workloads' subject tokens.
    subjects: SubjectTokens,
    counts: Counts,
    lifetime: Mutex<Duration>,
    /// `http://127.0.0.1:port`, where the endpoints are served: the token endpoint checks
    /// assertions against `{base}/token`.
    base_url: OnceLock<String>,
}

/// What the Google endpoints were asked, for tests to wait on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcpCounts {
    /// Tokens the metadata server issued.
    pub metadata_tokens: u64,
    /// Email look-ups on the metadata server.
    pub metadata_emails: u64,
    /// JWT-bearer grants asked (issued or refused).
    pub jwt_grants: u64,
    /// Refresh-token grants asked (issued or refused).
    pub refresh_grants: u64,
    /// Token exchanges asked at the Security Token Service (issued or refused).
    pub sts_exchanges: u64,
    /// `generateAccessToken` requests (issued or refused).
    pub impersonations: u64,
    /// Subject tokens the subject token URL served.
    pub subject_tokens_served: u64,
    /// Requests refused (missing header, bad assertion, bad client, ...).
    pub refused: u64,
}

#[derive(Debug, Default)]
struct Counts {
    metadata_tokens: AtomicU64,
    metadata_emails: AtomicU64,
    jwt_grants: AtomicU64,
    refresh_grants: AtomicU64,
    sts_exchanges: AtomicU64,
    impersonations: AtomicU64,
    subject_tokens_served: AtomicU64,
    refused: AtomicU64,
}

impl Counts {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::SeqCst);
    }
    fn metadata_token(&self) {
        Self::bump(&self.metadata_tokens);
    }
    fn email(&self) {
        Self::bump(&self.metadata_emails);
    }
    fn jwt_grant(&self) {
        Self::bump(&self.jwt_grants);
    }
    fn refresh_grant(&self) {
        Self::bump(&self.refresh_grants);
    }
    fn sts_exchange(&self) {
        Self::bump(&self.sts_exchanges);
    }
    fn impersonation(&self) {
        Self::bump(&self.impersonations);
    }
    fn subject_token_served(&self) {
        Self::bump(&self.subject_tokens_served);
    }
    fn refused(&self) {
        Self::bump(&self.refused);
    }
}

impl GcpIdentity {
    /// Principals in [`PROJECT`]: the metadata server's `emulator-vm@...` service account,
    /// the key file's `emulator-app@...` service account, and the user
    /// `emulator-user@example.com`; each service account with a new RSA key pair.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] when a key pair cannot be generated.
    pub fn new() -> Result<Self, Error> {
        Self::with_principals(
            ServiceAccount::generate("emulator-vm", PROJECT)?,
            ServiceAccount::generate("emulator-app", PROJECT)?,
            UserAccount::generate("emulator-user@example.com"),
        )
    }

    /// An emulator with the given principals.
    ///
    /// # Errors
    ///
    /// None today; kept fallible like [`new`](Self::new).
    pub fn with_principals(
        metadata_account: ServiceAccount,
        key_account: ServiceAccount,
        user: UserAccount,
    ) -> Result<Self, Error> {
        Ok(Self {
            inner: Arc::new(Inner {
                metadata_account,
                key_account,
                user,
                tokens: TokenStore::default(),
                subjects: SubjectTokens::default(),
                counts: Counts::default(),
                lifetime: Mutex::new(oauth::DEFAULT_LIFETIME),
                base_url: OnceLock::new(),
            }),
        })
    }

    /// The metadata server's default service account.
    pub fn metadata_account(&self) -> &ServiceAccount {
        &self.inner.metadata_account
    }

    /// The service account of the key files.
    pub fn key_account(&self) -> &ServiceAccount {
        &self.inner.key_account
    }

    /// The user of the user credentials files.
    pub fn user(&self) -> &UserAccount {
        &self.inner.user
    }

    /// Sets the lifetime of the tokens issued from now on (3599 s by default).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        *self.inner.lifetime.lock().unwrap() = lifetime;
    }

    fn token_lifetime(&self) -> Duration {
        *self.inner.lifetime.lock().unwrap()
    }

    /// Records where the endpoints are served (`http://127.0.0.1:port`); [`GcpServer`] does
    /// this. The first call wins.
    pub fn set_base_url(&self, base_url: impl Into<String>) {
        let _ = self.inner.base_url.set(base_url.into());
    }

    /// The token endpoint's URL (`{base}/token`); empty until the base URL is set.
    pub fn token_uri(&self) -> String {
        self.inner
            .base_url
            .get()
            .map(|base| format!("{base}/token"))
            .unwrap_or_default()
    }

    /// The emulator's service account with `email` (the key account or the metadata
    /// server's), if any: those are the accounts that can be impersonated.
    pub fn service_account(&self, email: &str) -> Option<&ServiceAccount> {
        [self.key_account(), self.metadata_account()]
            .into_iter()
            .find(|a| a.email() == email)
    }

    fn key_account_by_kid(&self, kid: &str) -> Option<&ServiceAccount> {
        [self.key_account(), self.metadata_account()]
            .into_iter()
            .find(|a| !kid.is_empty() && a.key_id() == kid)
    }

    /// Checks `token` presented as the password of `role` on `product`, now: only a token
    /// this emulator issued, unexpired, with the product's login scope (or
    /// `cloud-platform`), for the principal whose database user name is `role`.
    ///
    /// # Errors
    ///
    /// The [`GcpRejection`]; its [`message`](GcpRejection::message) is the server's text.
    pub fn check(
        &self,
        token: &str,
        role: &str,
        product: GcpProduct,
    ) -> Result<GcpPrincipal, GcpRejection> {
        self.check_at(token, role, product, SystemTime::now())
    }

    /// [`check`](Self::check) at `now`.
    ///
    /// # Errors
    ///
    /// As [`check`](Self::check).
    pub fn check_at(
        &self,
        token: &str,
        role: &str,
        product: GcpProduct,
        now: SystemTime,
    ) -> Result<GcpPrincipal, GcpRejection> {
        self.inner.tokens.check(token, role, product, now)
    }

    /// The request counters.
    pub fn counts(&self) -> GcpCounts {
        let c = &self.inner.counts;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        GcpCounts {
            metadata_tokens: get(&c.metadata_tokens),
            metadata_emails: get(&c.metadata_emails),
            jwt_grants: get(&c.jwt_grants),
            refresh_grants: get(&c.refresh_grants),
            sts_exchanges: get(&c.sts_exchanges),
            impersonations: get(&c.impersonations),
            subject_tokens_served: get(&c.subject_tokens_served),
            refused: get(&c.refused),
        }
    }

    /// Whether `path` is one of the Google endpoints (for a router that serves others too).
    pub fn serves(path: &str) -> bool {
        matches!(path, "/token" | sts::STS_PATH | sts::SUBJECT_TOKEN_PATH)
            || path.starts_with(metadata::SERVICE_ACCOUNTS)
            || path.starts_with(iam::SERVICE_ACCOUNTS_PATH)
    }

    /// Whether a request to `path` asks Google for a token (counted and given faults by the
    /// emulator); email look-ups and the platform's subject token URL do not.
    pub fn is_token_request(path: &str) -> bool {
        let path = path.trim_end_matches('/');
        Self::serves(path) && !path.ends_with("/email") && path != sts::SUBJECT_TOKEN_PATH
    }

    /// Answers one request to the metadata server, the token endpoint, the Security Token
    /// Service, the subject token URL or `generateAccessToken`.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = pairs(req.uri().query().unwrap_or_default().as_bytes());
        let headers = req.headers().clone();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        if path.starts_with(metadata::SERVICE_ACCOUNTS) {
            return metadata::handle(self, &method, &path, &query, header);
        }
        if path == sts::SUBJECT_TOKEN_PATH && method == Method::GET {
            return sts::serve_subject_token(self, &query, header);
        }
        let email = path
            .strip_prefix(iam::SERVICE_ACCOUNTS_PATH)
            .and_then(|rest| rest.strip_suffix(iam::GENERATE_ACCESS_TOKEN))
            .map(str::to_string);
        if method != Method::POST || !(path == "/token" || path == sts::STS_PATH || email.is_some())
        {
            return json_response(404, &serde_json::json!({"error": "not_found"}));
        }
        let authorization = header("authorization");
        let body = match read_body(req).await {
            Ok(body) => body,
            Err(e) => {
                return json_response(
                    400,
                    &serde_json::json!({"error": "invalid_request", "error_description": e}),
                );
            }
        };
        match email {
            Some(email) => {
                iam::generate_access_token(self, &email, authorization.as_deref(), &body)
            }
            None if path == sts::STS_PATH => sts::exchange(self, &pairs(&body)),
            None => oauth::handle(self, &pairs(&body)),
        }
    }

    /// Writes the key file of [`key_account`](Self::key_account) into `dir`
    /// (`service-account.json`) with this emulator's `token_uri`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] before the base URL is set; [`Error::Io`] when the file
    /// cannot be written.
    pub fn write_service_account_key(&self, dir: &Path) -> Result<PathBuf, Error> {
        let uri = self.require_token_uri()?;
        write_json(
            dir,
            "service-account.json",
            &self.key_account().key_json(&uri),
        )
    }

    /// Writes the user credentials file of [`user`](Self::user) into `dir`
    /// (`authorized-user.json`) with this emulator's `token_uri`.
    ///
    /// # Errors
    ///
    /// As [`write_service_account_key`](Self::write_service_account_key).
    pub fn write_authorized_user_file(&self, dir: &Path) -> Result<PathBuf, Error> {
        let uri = self.require_token_uri()?;
        write_json(
            dir,
            "authorized-user.json",
            &self.user().credentials_json(&uri),
        )
    }

    fn require_token_uri(&self) -> Result<String, Error> {
        let uri = self.token_uri();
        if uri.is_empty() {
            return Err(Error::InvalidArgument(
                "the google endpoints are not served yet; start a GcpServer first".into(),
            ));
        }
        Ok(uri)
    }

    fn handler(&self) -> Handler {
        let identity = self.clone();
        Arc::new(move |req| {
            let identity = identity.clone();
            Box::pin(async move { identity.handle(req).await })
                as Pin<Box<dyn Future<Output = Response<Body>> + Send>>
        })
    }
}

fn pairs(bytes: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(bytes)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The Google endpoints of a [`GcpIdentity`], served over plain HTTP on a loopback port until
/// dropped.
#[derive(Debug)]
pub struct GcpServer {
    identity: GcpIdentity,
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    down: watch::Sender<bool>,
}

impl GcpServer {
    /// Serves `identity` on `127.0.0.1` with a free port, and records the base URL in it.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when no port can be bound.
    pub async fn start(identity: GcpIdentity) -> Result<Self, Error> {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .map_err(Error::io("binding the google endpoints"))?;
        let addr = listener
            .local_addr()
            .map_err(Error::io("reading the google endpoints' address"))?;
        identity.set_base_url(format!("http://{addr}"));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (down, down_rx) = watch::channel(false);
        let (up, _) = watch::channel(false);
        tokio::spawn(supervise(
            listener,
            None,
            identity.handler(),
            down_rx,
            shutdown_rx,
            up,
        ));
        Ok(Self {
            identity,
            addr,
            shutdown,
            down,
        })
    }

    /// Takes the endpoints down (the port is closed, open connections dropped) or brings
    /// them back on the same port.
    pub fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }

    /// The identity served.
    pub fn identity(&self) -> &GcpIdentity {
        &self.identity
    }

    /// `127.0.0.1:port`: the value for `GCE_METADATA_HOST`.
    pub fn metadata_host(&self) -> String {
        self.addr.to_string()
    }

    /// The token endpoint's URL.
    pub fn token_uri(&self) -> String {
        self.identity.token_uri()
    }

    /// See [`GcpIdentity::write_service_account_key`].
    ///
    /// # Errors
    ///
    /// As there.
    pub fn write_service_account_key(&self, dir: &Path) -> Result<PathBuf, Error> {
        self.identity.write_service_account_key(dir)
    }

    /// See [`GcpIdentity::write_authorized_user_file`].
    ///
    /// # Errors
    ///
    /// As there.
    pub fn write_authorized_user_file(&self, dir: &Path) -> Result<PathBuf, Error> {
        self.identity.write_authorized_user_file(dir)
    }
}

impl Drop for GcpServer {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

#[cfg(test)]
mod tests;
