//! The Azure token source against local endpoints that speak the real wire formats: the App
//! Service managed identity protocol over http://127.0.0.1, IMDS and the Entra token endpoint
//! through an injected transport that reroutes to 127.0.0.1 (no traffic ever leaves the
//! machine), and the Azure CLI through a fake `az` on the source's own search path.
#![cfg(feature = "azure")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::{AsyncRawResponse, HttpClient, Request};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloud_pg_auth::azure::{
    AzureCloud, AzureCredentialKind, AzureOptions, AzureSource, UserAssigned,
};
use cloud_pg_auth::{Env, Error, SourceInfo, TokenError, TokenErrorKind, TokenSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------------------------
// A canned-response HTTP/1.1 server on 127.0.0.1, on its own thread and runtime (so it
// outlives the runtimes of the tests). Keeps connections alive, counts requests and
// connections, and answers each request with the next canned response (the last repeats).

#[derive(Clone, Debug)]
struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
    /// No `content-length`: the body runs until the server closes the connection.
    close_delimited: bool,
}

fn reply(status: u16, body: impl Into<String>) -> Canned {
    Canned {
        status,
        headers: Vec::new(),
        body: body.into(),
        delay: Duration::ZERO,
        close_delimited: false,
    }
}

impl Canned {
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    fn close_delimited(mut self) -> Self {
        self.close_delimited = true;
        self
    }
}

#[derive(Clone, Debug, Default)]
struct Recorded {
    method: String,
    path: String,
    query: BTreeMap<String, String>,
    headers: BTreeMap<String, String>,
    body: String,
}

impl Recorded {
    fn form(&self) -> BTreeMap<String, String> {
        url::form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }
}

struct Server {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    connections: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    fn start(responses: Vec<Canned>) -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (reqs, conns) = (Arc::clone(&requests), Arc::clone(&connections));
        let responses = Arc::new(responses);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            conns.fetch_add(1, Ordering::SeqCst);
                            tokio::spawn(serve(stream, Arc::clone(&reqs), Arc::clone(&responses)));
                        }
                    }
                }
            });
        });
        Self {
            addr,
            requests,
            connections,
            stop: Some(stop),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(
    mut stream: tokio::net::TcpStream,
    requests: Arc<Mutex<Vec<Recorded>>>,
    responses: Arc<Vec<Canned>>,
) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let method = first.next().unwrap_or_default().to_string();
        let target = first.next().unwrap_or_default().to_string();
        let headers: BTreeMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
        buf.drain(..head_end + length);
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let recorded = Recorded {
            method,
            path: path.to_string(),
            query: url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
            headers,
            body,
        };
        let canned = {
            let mut all = requests.lock().unwrap();
            all.push(recorded);
            responses[(all.len() - 1).min(responses.len() - 1)].clone()
        };
        tokio::time::sleep(canned.delay).await;
        let mut out = format!(
            "HTTP/1.1 {} X\r\ncontent-type: application/json\r\n",
            canned.status
        );
        if canned.close_delimited {
            out.push_str("connection: close\r\n");
        } else {
            out.push_str(&format!("content-length: {}\r\n", canned.body.len()));
        }
        for (k, v) in &canned.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&canned.body);
        if stream.write_all(out.as_bytes()).await.is_err() || canned.close_delimited {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A transport that sends every request to the local server instead, noting where it was meant
// to go. Never lets a request reach its original host.

#[derive(Debug)]
struct Reroute {
    port: u16,
    inner: reqwest::Client,
    original: Arc<Mutex<Vec<String>>>,
}

impl Reroute {
    fn to(server: &Server) -> (Arc<Self>, Arc<Mutex<Vec<String>>>) {
        Self::to_port(server.addr.port())
    }

    fn to_port(port: u16) -> (Arc<Self>, Arc<Mutex<Vec<String>>>) {
        let original = Arc::new(Mutex::new(Vec::new()));
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        (
            Arc::new(Self {
                port,
                inner: client,
                original: Arc::clone(&original),
            }),
            original,
        )
    }
}

#[async_trait]
impl HttpClient for Reroute {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let url = request.url();
        self.original.lock().unwrap().push(format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.path()
        ));
        let mut local = request.clone();
        let target = local.url_mut();
        target.set_scheme("http").unwrap();
        target.set_host(Some("127.0.0.1")).unwrap();
        target.set_port(Some(self.port)).unwrap();
        self.inner.execute_request(&local).await
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens and expectations.

const MI_HEADER: &str = "identity-header-do-not-print";
const CLIENT_SECRET: &str = "client-secret-do-not-print";
const SIGNATURE: &str = "c2lnbmF0dXJlLWRvLW5vdC1wcmludA";

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

fn jwt(claims: serde_json::Value) -> String {
    format!(
        "{}.{}.{SIGNATURE}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT","kid":"k"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn mi_jwt(exp: u64) -> String {
    jwt(serde_json::json!({
        "aud": "https://ossrdbms-aad.database.windows.net",
        "appid": "0a1b2c3d-4e5f-6789-abcd-ef0123456789",
        "oid": "ffffffff-0000-1111-2222-333333333333",
        "idtyp": "app",
        "exp": exp,
        "xms_mirid": "/subscriptions/s/resourcegroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/orders-api",
    }))
}

/// What a fetch should give.
enum Want {
    /// A token expiring at this Unix time, whose derived user name is this.
    Token {
        expires: u64,
        user: Option<&'static str>,
    },
    /// An error of this kind whose text has this fragment, with this `retry_after`.
    Fails {
        kind: TokenErrorKind,
        fragment: &'static str,
        retry_after: Option<Duration>,
    },
}

fn fails(kind: TokenErrorKind, fragment: &'static str) -> Want {
    Want::Fails {
        kind,
        fragment,
        retry_after: None,
    }
}

fn check_result(label: &str, got: Result<cloud_pg_auth::AccessToken, TokenError>, want: &Want) {
    match (got, want) {
        (Ok(token), Want::Token { expires, user }) => {
            assert_eq!(token.expires_at(), Some(at(*expires)), "{label}");
            assert_eq!(token.details().username.as_deref(), *user, "{label}");
            let printed = format!("{token:?}");
            assert!(!printed.contains(SIGNATURE), "{label}: {printed}");
        }
        (
            Err(e),
            Want::Fails {
                kind,
                fragment,
                retry_after,
            },
        ) => {
            let text = e.chain_text();
            assert_eq!(e.kind(), *kind, "{label}: {text}");
            assert!(text.contains(fragment), "{label}: {text}");
            assert_eq!(e.retry_after(), *retry_after, "{label}: {text}");
            for secret in [MI_HEADER, CLIENT_SECRET, SIGNATURE] {
                assert!(!text.contains(secret), "{label}: {text}");
                assert!(!format!("{e:?}").contains(secret), "{label}");
            }
        }
        (Ok(token), _) => panic!("{label}: expected an error, got {token:?}"),
        (Err(e), _) => panic!("{label}: expected a token, got {}", e.chain_text()),
    }
}

fn app_service_options(server: &Server) -> AzureOptions {
    AzureOptions::from_env(&Env::from_pairs([
        ("IDENTITY_ENDPOINT", server.url("/msi/token")),
        ("IDENTITY_HEADER", MI_HEADER.to_string()),
    ]))
    .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Managed identity over the App Service protocol.

async fn check_app_service(
    label: &str,
    responses: Vec<Canned>,
    timeout: Option<Duration>,
    want: Want,
) {
    let server = Server::start(responses);
    let mut options = app_service_options(&server);
    if let Some(timeout) = timeout {
        options.timeout = timeout;
    }
    let source = AzureSource::new(&options).unwrap();
    let got = source.fetch().await;
    check_result(label, got, &want);
    let requests = server.requests();
    assert_eq!(
        requests.len(),
        1,
        "{label}: one fetch, one request, no retries"
    );
    let r = &requests[0];
    assert_eq!(r.method, "GET", "{label}");
    assert_eq!(r.path, "/msi/token", "{label}");
    assert_eq!(
        r.headers.get("x-identity-header").map(String::as_str),
        Some(MI_HEADER)
    );
    assert_eq!(
        r.query.get("api-version").map(String::as_str),
        Some("2019-08-01")
    );
    assert_eq!(
        r.query.get("resource").map(String::as_str),
        Some("https://ossrdbms-aad.database.windows.net"),
        "{label}"
    );
}

#[tokio::test]
async fn app_service_managed_identity() {
    use TokenErrorKind::*;
    let now = now_secs();
    let later = now + 86_400;
    let ok = |expires_on: serde_json::Value, token: &str| {
        reply(
            200,
            serde_json::json!({
                "access_token": token,
                "expires_on": expires_on,
                "resource": "https://ossrdbms-aad.database.windows.net",
                "token_type": "Bearer",
                "client_id": "0a1b2c3d-4e5f-6789-abcd-ef0123456789",
            })
            .to_string(),
        )
    };
    let user = Some("orders-api");
    let cases: Vec<(&str, Vec<Canned>, Option<Duration>, Want)> = vec![
        (
            "string expires_on",
            vec![ok(later.to_string().into(), &mi_jwt(later + 60))],
            None,
            Want::Token {
                expires: later,
                user,
            },
        ),
        (
            "numeric expires_on",
            vec![ok(later.into(), &mi_jwt(later + 60))],
            None,
            Want::Token {
                expires: later,
                user,
            },
        ),
        (
            "the jwt exp is earlier and wins",
            vec![ok(later.to_string().into(), &mi_jwt(now + 600))],
            None,
            Want::Token {
                expires: now + 600,
                user,
            },
        ),
        (
            "an opaque token is refused: entra access tokens are jwts",
            vec![ok(later.to_string().into(), "opaque-token")],
            None,
            fails(Config, "the token is not a jwt"),
        ),
        (
            "400 identity not found",
            vec![reply(
                400,
                r#"{"error":"invalid_request","error_description":"Identity not found"}"#,
            )],
            None,
            fails(
                Rejected,
                "(HTTP 400: Identity not found (invalid_request)); check that a system-assigned identity is assigned to this resource",
            ),
        ),
        (
            "429 with retry-after",
            vec![reply(429, r#"{"error":"too_many_requests"}"#).header("Retry-After", "7")],
            None,
            Want::Fails {
                kind: Throttled,
                fragment: "throttling token requests (HTTP 429: too_many_requests)",
                retry_after: Some(Duration::from_secs(7)),
            },
        ),
        (
            "500",
            vec![reply(500, "<html>upstream failure</html>")],
            None,
            fails(Transient, "the managed identity endpoint failed (HTTP 500)"),
        ),
        (
            "503 with retry-after",
            vec![reply(503, "").header("retry-after", "2")],
            None,
            Want::Fails {
                kind: Transient,
                fragment: "HTTP 503",
                retry_after: Some(Duration::from_secs(2)),
            },
        ),
        (
            "malformed json",
            vec![reply(200, r#"{"access_token": "#)],
            None,
            fails(Transient, "body that is not json"),
        ),
        (
            "missing access_token",
            vec![reply(200, format!(r#"{{"expires_on":"{later}"}}"#))],
            None,
            fails(Transient, "has no access_token"),
        ),
        (
            "missing expires_on",
            vec![reply(
                200,
                r#"{"access_token":"abc","token_type":"Bearer"}"#,
            )],
            None,
            fails(Transient, "no usable expires_on or expires_in"),
        ),
        (
            "an expired token",
            vec![ok((now - 60).to_string().into(), &mi_jwt(now - 60))],
            None,
            fails(Transient, "returned a token that expired at"),
        ),
        (
            "a slow endpoint",
            vec![ok(later.into(), "late").delayed(Duration::from_secs(30))],
            Some(Duration::from_millis(300)),
            fails(Transient, "no token within 300ms"),
        ),
    ];
    for (label, responses, timeout, want) in cases {
        check_app_service(label, responses, timeout, want).await;
    }
}

async fn check_user_assigned(id: UserAssigned, param: &str, value: &str) {
    let later = now_secs() + 3600;
    let server = Server::start(vec![reply(
        200,
        format!(
            r#"{{"access_token":"{}","expires_on":"{later}","token_type":"Bearer","resource":"r"}}"#,
            mi_jwt(later)
        ),
    )]);
    let options = AzureOptions {
        managed_identity: Some(id.clone()),
        ..app_service_options(&server)
    };
    let source = AzureSource::new(&options).unwrap();
    source.fetch().await.unwrap();
    let r = &server.requests()[0];
    assert_eq!(
        r.query.get(param).map(String::as_str),
        Some(value),
        "{id:?}"
    );
    assert_eq!(r.query.len(), 3, "{id:?}: {:?}", r.query);
    let info = source.info();
    assert_eq!(info.credential_kind.as_deref(), Some("managed-identity"));
    assert!(info.identity.unwrap().contains(value));
}

#[tokio::test]
async fn user_assigned_identities_use_the_app_service_parameter_names() {
    check_user_assigned(UserAssigned::ClientId("cid".into()), "client_id", "cid").await;
    check_user_assigned(UserAssigned::ObjectId("oid".into()), "principal_id", "oid").await;
    check_user_assigned(
        UserAssigned::ResourceId("/subscriptions/s/r/ua".into()),
        "mi_res_id",
        "/subscriptions/s/r/ua",
    )
    .await;
}

#[tokio::test]
async fn sources_report_what_they_are() {
    let server = Server::start(vec![reply(500, "")]);
    let options = AzureOptions {
        cloud: AzureCloud::UsGov,
        ..app_service_options(&server)
    };
    let source = AzureSource::new(&options).unwrap();
    assert_eq!(source.scope(), AzureCloud::UsGov.scope());
    assert_eq!(
        source.credential_kind(),
        Some(AzureCredentialKind::ManagedIdentity)
    );
    let info = source.info();
    assert_eq!(info.method, "azure");
    assert_eq!(info.cloud.as_deref(), Some("usgov"));
    assert_eq!(
        info.identity.as_deref(),
        Some("system-assigned (app service)")
    );
    assert_eq!(info.endpoint, Some(server.url("/msi/token")));
    let printed = format!("{source:?} {source:#?} {options:?}");
    assert!(!printed.contains(MI_HEADER), "{printed}");
    // The scope of the cloud goes on the wire, as a v1 resource.
    let _ = source.fetch().await;
    assert_eq!(
        server.requests()[0]
            .query
            .get("resource")
            .map(String::as_str),
        Some("https://ossrdbms-aad.database.usgovcloudapi.net")
    );
}

// ---------------------------------------------------------------------------------------------
// IMDS, through an injected transport: the request is built for 169.254.169.254 and rerouted
// to the local server before it leaves the process.

#[tokio::test]
async fn imds_managed_identity_through_an_injected_transport() {
    use TokenErrorKind::*;
    let later = now_secs() + 86_000;
    let imds_ok = reply(
        200,
        // IMDS sends every field as a string.
        serde_json::json!({
            "access_token": mi_jwt(later),
            "client_id": "0a1b2c3d-4e5f-6789-abcd-ef0123456789",
            "expires_in": "86399",
            "expires_on": later.to_string(),
            "ext_expires_in": "86399",
            "not_before": (later - 86_399).to_string(),
            "resource": "https://ossrdbms-aad.database.windows.net",
            "token_type": "Bearer",
        })
        .to_string(),
    );
    let cases = vec![
        (
            "ok",
            imds_ok,
            Want::Token {
                expires: later,
                user: Some("orders-api"),
            },
        ),
        (
            "identity not found",
            reply(
                400,
                r#"{"error":"invalid_request","error_description":"Identity not found"}"#,
            ),
            fails(
                Rejected,
                "the user-assigned identity with object id oid-9 is assigned",
            ),
        ),
        (
            "410 while imds updates",
            reply(410, ""),
            fails(Transient, "not ready (HTTP 410)"),
        ),
    ];
    for (label, response, want) in cases {
        let server = Server::start(vec![response]);
        let (transport, original) = Reroute::to(&server);
        let options = AzureOptions {
            credential: AzureCredentialKind::ManagedIdentity,
            managed_identity: Some(UserAssigned::ObjectId("oid-9".into())),
            ..Default::default()
        };
        let source = AzureSource::with_http_client(&options, transport).unwrap();
        assert_eq!(
            source.info().endpoint.as_deref(),
            Some("http://169.254.169.254/metadata/identity/oauth2/token")
        );
        check_result(label, source.fetch().await, &want);
        assert_eq!(
            *original.lock().unwrap(),
            vec!["http://169.254.169.254/metadata/identity/oauth2/token".to_string()]
        );
        let r = &server.requests()[0];
        assert_eq!(r.headers.get("metadata").map(String::as_str), Some("true"));
        assert_eq!(
            r.query.get("api-version").map(String::as_str),
            Some("2018-02-01")
        );
        assert_eq!(r.query.get("object_id").map(String::as_str), Some("oid-9"));
        assert!(!r.headers.contains_key("x-identity-header"));
    }
}

#[tokio::test]
async fn auto_uses_imds_only_when_opted_in() {
    let later = now_secs() + 3600;
    let server = Server::start(vec![reply(
        200,
        format!(
            r#"{{"access_token":"{}","expires_on":"{later}"}}"#,
            mi_jwt(later)
        ),
    )]);
    let (transport, original) = Reroute::to(&server);
    let empty = scratch_dir("auto-imds");
    let env = |opt_in: &str| {
        Env::from_pairs([
            ("PGAUTH_AZURE_MANAGED_IDENTITY", opt_in.to_string()),
            ("PATH", empty.display().to_string()),
        ])
    };
    let refused = AzureSource::with_http_client(
        &AzureOptions::from_env(&env("0")).unwrap(),
        transport.clone(),
    )
    .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("no azure credential is configured"),
        "{refused}"
    );
    let source =
        AzureSource::with_http_client(&AzureOptions::from_env(&env("1")).unwrap(), transport)
            .unwrap();
    assert_eq!(
        source.credential_kind(),
        Some(AzureCredentialKind::ManagedIdentity)
    );
    source.fetch().await.unwrap();
    assert_eq!(original.lock().unwrap().len(), 1);
    let _ = std::fs::remove_dir_all(&empty);
}

// ---------------------------------------------------------------------------------------------
// Entra token endpoint (client secret, workload identity), through an injected transport.

fn entra_ok(expires_in: u64, token: &str) -> Canned {
    reply(
        200,
        serde_json::json!({
            "token_type": "Bearer",
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": token,
        })
        .to_string(),
    )
}

fn sp_jwt(exp: u64) -> String {
    jwt(serde_json::json!({
        "aud": "https://ossrdbms-aad.database.windows.net",
        "appid": "11111111-2222-3333-4444-555555555555",
        "oid": "66666666-7777-8888-9999-000000000000",
        "idtyp": "app",
        "exp": exp,
    }))
}

fn secret_options(cloud: &str) -> AzureOptions {
    AzureOptions::from_env(&Env::from_pairs([
        ("PGAUTH_AZURE_CLOUD", cloud),
        ("AZURE_TENANT_ID", "contoso.onmicrosoft.com"),
        ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
        ("AZURE_CLIENT_SECRET", CLIENT_SECRET),
    ]))
    .unwrap()
}

#[tokio::test]
async fn client_secret_credential() {
    use TokenErrorKind::*;
    let now = now_secs();
    let aadsts = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}"#;
    let cases: Vec<(&str, Canned, Want)> = vec![
        (
            "ok: integer expires_in, the jwt exp is earlier",
            entra_ok(3599, &sp_jwt(now + 1800)),
            Want::Token {
                expires: now + 1800,
                user: None,
            },
        ),
        (
            "401 invalid client secret",
            reply(401, aadsts),
            fails(
                Rejected,
                "entra refused the credential (HTTP 401); check AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET",
            ),
        ),
        (
            "the cause keeps entra's description",
            reply(400, aadsts),
            fails(Rejected, "AADSTS7000215: Invalid client secret provided."),
        ),
        (
            "429 with retry-after",
            reply(
                429,
                r#"{"error":"temporarily_unavailable","error_description":"AADSTS50196"}"#,
            )
            .header("Retry-After", "3"),
            Want::Fails {
                kind: Throttled,
                fragment: "throttling token requests (HTTP 429)",
                retry_after: Some(Duration::from_secs(3)),
            },
        ),
        (
            "500 with a json body",
            reply(
                500,
                r#"{"error":"server_error","error_description":"AADSTS50000"}"#,
            ),
            fails(Transient, "the token endpoint failed (HTTP 500)"),
        ),
        (
            "502 with an html body",
            reply(502, "<html>bad gateway</html>"),
            fails(Transient, "the token endpoint failed (HTTP 502)"),
        ),
        (
            "malformed json",
            reply(200, "{\"token_type\":"),
            fails(Transient, "not a token response"),
        ),
        (
            "missing fields",
            reply(200, r#"{"token_type":"Bearer"}"#),
            fails(Transient, "empty token"),
        ),
        (
            "an expired token",
            entra_ok(3599, &sp_jwt(now - 10)),
            fails(Transient, "expired at"),
        ),
    ];
    for (label, response, want) in cases {
        let server = Server::start(vec![response]);
        let (transport, original) = Reroute::to(&server);
        let source = AzureSource::with_http_client(&secret_options("public"), transport).unwrap();
        check_result(label, source.fetch().await, &want);
        assert_eq!(
            *original.lock().unwrap(),
            vec![
                "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
                    .to_string()
            ],
            "{label}"
        );
        let requests = server.requests();
        assert_eq!(requests.len(), 1, "{label}: no sdk retries");
        let form = requests[0].form();
        assert_eq!(requests[0].method, "POST");
        assert_eq!(form["grant_type"], "client_credentials");
        assert_eq!(form["client_id"], "11111111-2222-3333-4444-555555555555");
        assert_eq!(form["client_secret"], CLIENT_SECRET);
        assert_eq!(
            form["scope"],
            "https://ossrdbms-aad.database.windows.net/.default"
        );
    }
}

#[tokio::test]
async fn sovereign_clouds_use_their_authority_and_scope() {
    for (cloud, authority, scope) in [
        (
            "usgov",
            "https://login.microsoftonline.us",
            "https://ossrdbms-aad.database.usgovcloudapi.net/.default",
        ),
        (
            "china",
            "https://login.chinacloudapi.cn",
            "https://ossrdbms-aad.database.chinacloudapi.cn/.default",
        ),
    ] {
        let token = jwt(serde_json::json!({
            "aud": scope.trim_end_matches("/.default"),
            "exp": now_secs() + 3599,
        }));
        let server = Server::start(vec![entra_ok(3599, &token)]);
        let (transport, original) = Reroute::to(&server);
        let source = AzureSource::with_http_client(&secret_options(cloud), transport).unwrap();
        source.fetch().await.unwrap();
        assert_eq!(
            original.lock().unwrap()[0],
            format!("{authority}/contoso.onmicrosoft.com/oauth2/v2.0/token")
        );
        assert_eq!(server.requests()[0].form()["scope"], scope);
    }
}

#[tokio::test]
async fn workload_identity() {
    let dir = scratch_dir("wi");
    let token_file = dir.join("azure-identity-token");
    std::fs::write(&token_file, "federated.assertion.jwt").unwrap();
    let env = |file: &Path| {
        Env::from_pairs([
            ("AZURE_FEDERATED_TOKEN_FILE", file.display().to_string()),
            ("AZURE_CLIENT_ID", "wi-client".into()),
            ("AZURE_TENANT_ID", "wi-tenant".into()),
            (
                "AZURE_AUTHORITY_HOST",
                "https://login.emulator.test/".into(),
            ),
        ])
    };
    let now = now_secs();
    let server = Server::start(vec![entra_ok(3599, &sp_jwt(now + 3599))]);
    let (transport, original) = Reroute::to(&server);
    let options = AzureOptions::from_env(&env(&token_file)).unwrap();
    let source = AzureSource::with_http_client(&options, transport).unwrap();
    assert_eq!(
        source.credential_kind(),
        Some(AzureCredentialKind::WorkloadIdentity)
    );
    let token = source.fetch().await.unwrap();
    assert_eq!(token.expires_at(), Some(at(now + 3599)));
    assert_eq!(
        token.details().ids,
        vec![
            "11111111-2222-3333-4444-555555555555".to_string(),
            "66666666-7777-8888-9999-000000000000".to_string()
        ]
    );
    assert_eq!(
        original.lock().unwrap()[0],
        "https://login.emulator.test/wi-tenant/oauth2/v2.0/token"
    );
    let form = server.requests()[0].form();
    assert_eq!(form["client_assertion"], "federated.assertion.jwt");
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert_eq!(form["client_id"], "wi-client");
    assert_eq!(form["scope"], AzureCloud::Public.scope());

    // A missing token file is a start-up error that names the variable.
    let missing = AzureOptions::from_env(&env(&dir.join("absent"))).unwrap();
    match AzureSource::new(&missing) {
        Err(Error::Config(e)) => {
            assert_eq!(e.setting(), "AZURE_FEDERATED_TOKEN_FILE");
            assert!(e.message().contains("absent"), "{e}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// The Azure CLI, through a fake `az` on the source's search path (the process PATH is never
// touched). All CLI cases run in this one test, so no other test forks while a script is
// being written.

fn scratch_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "pgauth-azure-{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fake_az(script_body: &str) -> PathBuf {
    let dir = scratch_dir("cli");
    let az = dir.join("az");
    std::fs::write(
        &az,
        format!("#!/bin/sh\necho \"$@\" > \"$(dirname \"$0\")/args\"\n{script_body}\n"),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&az, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

fn cli_options(dir: &Path, credential: &str) -> AzureOptions {
    let path = std::env::join_paths([dir, Path::new("/usr/bin"), Path::new("/bin")]).unwrap();
    AzureOptions::from_env(&Env::from_pairs([
        ("PGAUTH_AZURE_CREDENTIAL", credential.to_string()),
        ("PATH", path.to_string_lossy().into_owned()),
    ]))
    .unwrap()
}

#[tokio::test]
async fn azure_cli() {
    use TokenErrorKind::*;
    let now = now_secs();
    let user_token = jwt(serde_json::json!({
        "aud": "https://ossrdbms-aad.database.windows.net",
        "oid": "ffffffff-0000-1111-2222-333333333333",
        "upn": "ada@contoso.com",
        "idtyp": "user",
        "exp": now + 3000,
    }));
    let output = |expires_on: Option<u64>| {
        let mut v = serde_json::json!({
            "accessToken": user_token,
            "expiresOn": "2030-01-01 00:00:00.000000",
            "subscription": "s",
            "tenant": "t",
            "tokenType": "Bearer",
        });
        if let Some(e) = expires_on {
            v["expires_on"] = e.into();
        }
        format!("cat <<'EOF'\n{v}\nEOF")
    };
    let cases: Vec<(&str, String, &str, Option<Duration>, Want)> = vec![
        (
            "logged in (explicit)",
            output(Some(now + 3599)),
            "cli",
            None,
            Want::Token {
                expires: now + 3000,
                user: Some("ada@contoso.com"),
            },
        ),
        (
            "logged in (auto)",
            output(Some(now + 1000)),
            "auto",
            None,
            Want::Token {
                expires: now + 1000,
                user: Some("ada@contoso.com"),
            },
        ),
        (
            "not logged in",
            "echo \"ERROR: Please run 'az login' to setup account.\" >&2; exit 1".into(),
            "cli",
            None,
            fails(Rejected, "the azure cli has no valid login; run az login"),
        ),
        (
            "malformed output",
            "echo 'this is not json'".into(),
            "cli",
            None,
            fails(Transient, "the azure cli could not give a token"),
        ),
        (
            "an old cli without expires_on",
            output(None),
            "cli",
            None,
            fails(Transient, "expires_on field not found"),
        ),
        (
            "an az whose output passes the 1 MiB limit is stopped there",
            "head -c 3000000 /dev/zero | tr '\\0' x".into(),
            "cli",
            None,
            fails(
                Transient,
                "the azure cli's output is larger than 1 MiB, the most this client reads",
            ),
        ),
        (
            "an az whose error output passes the 1 MiB limit is stopped there",
            "head -c 3000000 /dev/zero | tr '\\0' x >&2; exit 1".into(),
            "cli",
            None,
            fails(
                Transient,
                "the azure cli's error output is larger than 1 MiB",
            ),
        ),
        (
            "a hanging cli",
            "exec sleep 30".into(),
            "cli",
            Some(Duration::from_millis(500)),
            fails(Transient, "no token within 500ms"),
        ),
    ];
    for (label, script, credential, timeout, want) in cases {
        let dir = fake_az(&script);
        let mut options = cli_options(&dir, credential);
        if let Some(t) = timeout {
            options.timeout = t;
        }
        let source = AzureSource::new(&options).unwrap();
        assert_eq!(
            source.credential_kind(),
            Some(AzureCredentialKind::Cli),
            "{label}"
        );
        assert_eq!(
            source.info().endpoint,
            Some(dir.join("az").display().to_string())
        );
        check_result(label, source.fetch().await, &want);
        let args = std::fs::read_to_string(dir.join("args")).unwrap();
        assert!(
            args.contains("account get-access-token -o json --scope https://ossrdbms-aad.database.windows.net/.default"),
            "{label}: {args}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    // `cli` without `az` on the search path fails at start-up; so does `auto` with nothing.
    let empty = scratch_dir("no-az");
    for credential in ["cli", "auto"] {
        let options = AzureOptions {
            cli_search_path: Some(empty.clone().into_os_string()),
            ..cli_options(&empty, credential)
        };
        match AzureSource::new(&options) {
            Err(Error::Config(e)) => {
                assert_eq!(e.setting(), "PGAUTH_AZURE_CREDENTIAL");
                assert!(e.message().contains("az"), "{e}");
            }
            other => panic!("{credential}: unexpected {other:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(&empty);
}

// ---------------------------------------------------------------------------------------------
// Runtimes: a source first used on one runtime keeps working from another, with the first
// idle or gone, and a new source on a new runtime is unaffected by dropped ones. The server
// keeps connections alive, so a pooled connection would be reused (and hang); the source
// opens one connection per request instead.

#[test]
fn sources_survive_runtimes() {
    let later = now_secs() + 3600;
    let body = format!(
        r#"{{"access_token":"{}","expires_on":"{later}"}}"#,
        mi_jwt(later)
    );
    let server = Server::start(vec![reply(200, body)]);
    let options = app_service_options(&server);
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let guarded = |rt: &tokio::runtime::Runtime, source: &AzureSource, label: &str| {
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(20), source.fetch())
                .await
                .unwrap_or_else(|_| panic!("{label}: the fetch hung"))
                .unwrap_or_else(|e| panic!("{label}: {}", e.chain_text()))
        })
    };

    let first_runtime = runtime();
    let first = first_runtime.block_on(async { AzureSource::new(&options).unwrap() });
    guarded(&first_runtime, &first, "first runtime");
    let second_runtime = runtime();
    guarded(&second_runtime, &first, "second runtime, first idle");
    drop(first_runtime);
    guarded(&second_runtime, &first, "second runtime, first gone");
    drop(first);
    drop(second_runtime);

    let third_runtime = runtime();
    let fresh = AzureSource::new(&options).unwrap();
    guarded(&third_runtime, &fresh, "a new source on a third runtime");
    assert_eq!(server.requests().len(), 4);
    assert_eq!(
        server.connections(),
        4,
        "no connection is kept between fetches"
    );
}

// ---------------------------------------------------------------------------------------------
// A caller-supplied credential.

#[derive(Debug)]
struct Fixed {
    token: Option<String>,
    expires_on: u64,
    scopes: Mutex<Vec<String>>,
}

#[async_trait]
impl TokenCredential for Fixed {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        self.scopes
            .lock()
            .unwrap()
            .extend(scopes.iter().map(|s| s.to_string()));
        match &self.token {
            Some(t) => Ok(azure_core::credentials::AccessToken::new(
                t.clone(),
                azure_core::time::OffsetDateTime::from_unix_timestamp(self.expires_on as i64)
                    .unwrap(),
            )),
            None => Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                "vault sealed",
            )),
        }
    }
}

#[tokio::test]
async fn caller_supplied_credentials() {
    let later = now_secs() + 3600;
    let good = Arc::new(Fixed {
        token: Some(mi_jwt(later)),
        expires_on: later + 100,
        scopes: Mutex::default(),
    });
    let source = AzureSource::from_credential(
        good.clone(),
        AzureCloud::Public.scope(),
        SourceInfo::new("azure").credential_kind("custom"),
    );
    let token = source.fetch().await.unwrap();
    assert_eq!(token.expires_at(), Some(at(later)));
    assert_eq!(token.details().username.as_deref(), Some("orders-api"));
    assert_eq!(
        *good.scopes.lock().unwrap(),
        vec![AzureCloud::Public.scope()]
    );
    assert_eq!(source.credential_kind(), None);
    assert_eq!(source.info().credential_kind.as_deref(), Some("custom"));

    let bad = AzureSource::from_credential(
        Arc::new(Fixed {
            token: None,
            expires_on: 0,
            scopes: Mutex::default(),
        }),
        AzureCloud::Public.scope(),
        SourceInfo::new("azure").credential_kind("custom"),
    );
    check_result(
        "a failing credential",
        bad.fetch().await,
        &fails(
            TokenErrorKind::Transient,
            "azure custom: the credential failed: vault sealed",
        ),
    );
}

// ---------------------------------------------------------------------------------------------
// The audience: a token for another service never leaves the source.

const ARM: &str = "https://management.azure.com";
const GRAPH: &str = "https://graph.microsoft.com";

fn jwt_for(aud: Option<&str>, exp: u64) -> String {
    let mut claims = serde_json::json!({
        "appid": "0a1b2c3d-4e5f-6789-abcd-ef0123456789",
        "idtyp": "app",
        "exp": exp,
    });
    if let Some(aud) = aud {
        claims["aud"] = aud.into();
    }
    jwt(claims)
}

#[tokio::test]
async fn tokens_for_other_audiences_are_refused_at_fetch_time() {
    use TokenErrorKind::*;
    let later = now_secs() + 3600;
    let cases: Vec<(&str, String, Want)> = vec![
        (
            "an arm token",
            jwt_for(Some(ARM), later),
            fails(
                Config,
                "the token's audience (aud) is https://management.azure.com, not https://ossrdbms-aad.database.windows.net",
            ),
        ),
        (
            "a graph token",
            jwt_for(Some(GRAPH), later),
            fails(Config, "unset PGAUTH_AZURE_SCOPE"),
        ),
        (
            "another cloud's database token",
            jwt_for(
                Some("https://ossrdbms-aad.database.chinacloudapi.cn"),
                later,
            ),
            fails(Config, "PGAUTH_AZURE_SCOPE"),
        ),
        (
            "a token without aud",
            jwt_for(None, later),
            fails(Config, "no audience (aud) claim"),
        ),
        (
            "a token that is not a jwt",
            "definitely-not-a-jwt".into(),
            fails(Config, "the token is not a jwt"),
        ),
        (
            "the database's own token",
            jwt_for(Some(AzureCloud::Public.audience()), later),
            Want::Token {
                expires: later,
                user: None,
            },
        ),
    ];
    for (label, token, want) in cases {
        let answer = serde_json::json!({ "access_token": token, "expires_on": later });
        let server = Server::start(vec![reply(200, answer.to_string())]);
        let source = AzureSource::new(&app_service_options(&server)).unwrap();
        check_result(
            &format!("managed identity: {label}"),
            source.fetch().await,
            &want,
        );

        // The same token from the entra token endpoint (client secret).
        let server = Server::start(vec![entra_ok(3600, &token)]);
        let (transport, _) = Reroute::to(&server);
        let source = AzureSource::with_http_client(&secret_options("public"), transport).unwrap();
        check_result(
            &format!("client secret: {label}"),
            source.fetch().await,
            &want,
        );
    }
}

/// The source is asked for the database scope and a caller-supplied credential answers with an
/// ARM token: the connector fails with an error naming the setting, and the emulator's
/// PostgreSQL front sees no login attempt at all; the database's own token then logs in
/// through the same path, so the front was reachable.
#[tokio::test]
async fn a_token_for_another_audience_never_reaches_postgres() {
    use cloud_pg_auth::{AuthMethod, AuthOptions, PgConnector, RootCerts, Settings, SslMode};
    use cloud_pg_auth_testkit::{Emulator, EmulatorOptions, MintOptions};

    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let settings = Settings::default()
        .host(emulator.pg_host())
        .port(emulator.pg_port())
        .user(emulator.azure_role())
        .dbname(emulator.database())
        .method(AuthMethod::Custom)
        .ssl_mode(SslMode::VerifyFull)
        .root_certs(RootCerts::File(emulator.ca_path().to_path_buf()));
    let connector = |audience: &str| {
        let token = emulator.mint_entra_token(MintOptions {
            audience: Some(audience.to_string()),
            ..MintOptions::default()
        });
        let credential = Arc::new(Fixed {
            token: Some(token.clone()),
            expires_on: now_secs() + 3600,
            scopes: Mutex::default(),
        });
        let source = AzureSource::from_credential(
            credential.clone(),
            AzureCloud::Public.scope(),
            SourceInfo::new("azure").credential_kind("custom"),
        );
        let settings = settings.clone();
        async move {
            let connector = PgConnector::build(
                &settings,
                Some(Arc::new(source)),
                AuthOptions::default().background_refresh(false),
            )
            .await
            .unwrap();
            (connector, credential, token)
        }
    };

    let (arm, credential, token) = connector(ARM).await;
    let error = match arm.connect().await {
        Ok(_) => panic!("an arm token logged in"),
        Err(e) => e,
    };
    let text = format!("{error} {error:?} {}", cloud_pg_auth::chain_text(&error));
    match &error {
        Error::Token(e) => assert_eq!(e.kind(), TokenErrorKind::Config, "{text}"),
        other => panic!("expected a token error, got {other:?}"),
    }
    assert!(text.contains("PGAUTH_AZURE_SCOPE"), "{text}");
    assert!(text.contains("https://management.azure.com"), "{text}");
    let signature = token.rsplit('.').next().unwrap();
    assert!(!text.contains(signature), "the token was printed: {text}");
    assert_eq!(
        *credential.scopes.lock().unwrap(),
        vec![AzureCloud::Public.scope()]
    );
    let stats = emulator.stats();
    assert_eq!(stats.logins_rejected, Default::default(), "{stats:?}");
    assert_eq!(stats.logins_accepted, 0, "{stats:?}");
    arm.dispose().await;

    let (database, _, _) = connector(AzureCloud::Public.audience()).await;
    let (client, _) = database.connect().await.unwrap();
    let row = client
        .query_one("select current_user::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), emulator.azure_role());
    assert_eq!(emulator.stats().logins_accepted, 1);
    database.dispose().await;
    emulator.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Size limits: what comes from outside is read up to a limit, never whole.

const MIB: usize = 1 << 20;

#[tokio::test]
async fn oversized_answers_are_refused_at_one_mebibyte() {
    use TokenErrorKind::*;
    let later = now_secs() + 3600;
    // Valid json past the limit, so that reading it whole would parse.
    let huge_token = |size: usize| {
        serde_json::json!({
            "access_token": mi_jwt(later),
            "expires_on": later,
            "padding": "x".repeat(size),
        })
        .to_string()
    };
    let too_large = "the response body is larger than 1 MiB, the most this client reads";
    let cases: Vec<(&str, Canned, Want)> = vec![
        (
            "a declared content-length over the limit",
            reply(200, huge_token(2 * MIB)),
            fails(Transient, too_large),
        ),
        (
            "a body without content-length that runs past the limit",
            reply(200, huge_token(16 * MIB)).close_delimited(),
            fails(Transient, too_large),
        ),
        (
            "an error body past the limit",
            reply(500, "x".repeat(16 * MIB)).close_delimited(),
            fails(Transient, too_large),
        ),
        (
            "just under the limit is read",
            reply(200, huge_token(MIB - 4096)).close_delimited(),
            Want::Token {
                expires: later,
                user: Some("orders-api"),
            },
        ),
    ];
    for (label, response, want) in cases {
        let server = Server::start(vec![response.clone()]);
        let source = AzureSource::new(&app_service_options(&server)).unwrap();
        check_result(
            &format!("managed identity: {label}"),
            source.fetch().await,
            &want,
        );
        if let Want::Fails { .. } = want {
            let server = Server::start(vec![response]);
            let (transport, _) = Reroute::to(&server);
            let source =
                AzureSource::with_http_client(&secret_options("public"), transport).unwrap();
            check_result(
                &format!("client secret: {label}"),
                source.fetch().await,
                &want,
            );
        }
    }
}

#[tokio::test]
async fn an_oversized_federated_token_file_is_refused_at_64_kib() {
    let dir = scratch_dir("wi-limit");
    let token_file = dir.join("azure-identity-token");
    let options = || {
        AzureOptions::from_env(&Env::from_pairs([
            (
                "AZURE_FEDERATED_TOKEN_FILE",
                token_file.display().to_string(),
            ),
            ("AZURE_CLIENT_ID", "wi-client".into()),
            ("AZURE_TENANT_ID", "wi-tenant".into()),
        ]))
        .unwrap()
    };
    let limit = 64 << 10;

    // At start-up.
    std::fs::write(&token_file, "a".repeat(limit + 1)).unwrap();
    match AzureSource::new(&options()) {
        Err(Error::Config(e)) => {
            assert_eq!(e.setting(), "AZURE_FEDERATED_TOKEN_FILE");
            assert!(e.message().contains("is larger than 64 KiB"), "{e}");
        }
        other => panic!("unexpected {other:?}"),
    }

    // At a fetch, after the file grew: refused before anything is sent. (Two sources: the
    // credential caches its token, so a second fetch of one source would not read the file.)
    std::fs::write(&token_file, "a".repeat(limit)).unwrap();
    let server = Server::start(vec![entra_ok(3599, &sp_jwt(now_secs() + 3599))]);
    let (transport, _) = Reroute::to(&server);
    let accepted = AzureSource::with_http_client(&options(), transport.clone()).unwrap();
    let grown = AzureSource::with_http_client(&options(), transport).unwrap();
    accepted.fetch().await.unwrap();
    assert_eq!(server.requests()[0].form()["client_assertion"].len(), limit);
    std::fs::write(&token_file, "a".repeat(limit + 1)).unwrap();
    check_result(
        "a grown file",
        grown.fetch().await,
        &fails(
            TokenErrorKind::Transient,
            "the federated token file is larger than 64 KiB, the most this client reads; check AZURE_FEDERATED_TOKEN_FILE",
        ),
    );
    assert_eq!(
        server.requests().len(),
        1,
        "nothing sent for the grown file"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// Start-up errors.

#[test]
fn ca_file_problems_are_config_errors() {
    let dir = scratch_dir("ca");
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    for (path, fragment) in [
        (dir.join("absent.pem"), "cannot read"),
        (not_pem, "holds no PEM certificate"),
    ] {
        let options = AzureOptions {
            ca_file: Some(path.clone()),
            ..secret_options("public")
        };
        match AzureSource::new(&options) {
            Err(Error::Config(e)) => {
                assert_eq!(e.setting(), "PGAUTH_AZURE_CA_FILE");
                assert!(e.message().contains(fragment), "{e}");
            }
            other => panic!("{path:?}: unexpected {other:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn debug_output_hides_secrets() {
    let source = AzureSource::new(&secret_options("public")).unwrap();
    let options = secret_options("public");
    let printed = format!("{source:?} {source:#?} {options:?} {options:#?}");
    assert!(!printed.contains(CLIENT_SECRET), "{printed}");
}

// ---------------------------------------------------------------------------------------------
// End to end against the testkit emulator: each credential kind gets a token from the
// emulator's endpoints (Entra over https with the emulator's CA trusted through `ca_file`),
// and the token logs in to the emulator's token-checking PostgreSQL front.

#[tokio::test]
async fn every_credential_kind_logs_in_through_the_emulator() {
    use cloud_pg_auth_testkit::{Emulator, EmulatorOptions};

    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let app_service = |extra: Vec<(&'static str, String)>| {
        let mut pairs = vec![
            ("IDENTITY_ENDPOINT", emulator.identity_endpoint()),
            ("IDENTITY_HEADER", emulator.identity_header().to_string()),
        ];
        pairs.extend(extra);
        AzureOptions::from_env(&Env::from_pairs(pairs)).unwrap()
    };
    let entra = |extra: Vec<(&'static str, String)>| {
        let mut pairs = vec![
            ("AZURE_AUTHORITY_HOST", emulator.authority_host()),
            ("AZURE_TENANT_ID", emulator.tenant_id().to_string()),
            ("AZURE_CLIENT_ID", emulator.workload_client_id().to_string()),
            (
                "PGAUTH_AZURE_CA_FILE",
                emulator.ca_path().display().to_string(),
            ),
        ];
        pairs.extend(extra);
        AzureOptions::from_env(&Env::from_pairs(pairs)).unwrap()
    };
    let imds = AzureOptions {
        credential: AzureCredentialKind::ManagedIdentity,
        managed_identity: Some(UserAssigned::ClientId(emulator.client_id().to_string())),
        ..Default::default()
    };
    let cases: Vec<(&str, AzureOptions, bool, &str, Option<&str>)> = vec![
        (
            "app service, system-assigned",
            app_service(vec![]),
            false,
            emulator.azure_system_role(),
            Some(emulator.azure_system_role()),
        ),
        (
            "app service, user-assigned by client id (auto)",
            app_service(vec![("AZURE_CLIENT_ID", emulator.client_id().to_string())]),
            false,
            emulator.azure_role(),
            Some(emulator.azure_role()),
        ),
        (
            "app service, user-assigned by object id",
            app_service(vec![
                ("PGAUTH_AZURE_CREDENTIAL", "managed-identity".into()),
                (
                    "PGAUTH_AZURE_MI_OBJECT_ID",
                    emulator.object_id().to_string(),
                ),
            ]),
            false,
            emulator.azure_role(),
            Some(emulator.azure_role()),
        ),
        (
            "imds through an injected transport",
            imds,
            true,
            emulator.azure_role(),
            Some(emulator.azure_role()),
        ),
        (
            "client secret over https",
            entra(vec![(
                "AZURE_CLIENT_SECRET",
                emulator.client_secret().to_string(),
            )]),
            false,
            emulator.azure_workload_role(),
            None,
        ),
        (
            "workload identity over https",
            entra(vec![(
                "AZURE_FEDERATED_TOKEN_FILE",
                emulator.federated_token_file().display().to_string(),
            )]),
            false,
            emulator.azure_workload_role(),
            None,
        ),
    ];
    let identity_port: u16 = emulator
        .imds_endpoint()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    for (label, options, reroute, role, derived) in cases {
        let source = if reroute {
            let (transport, original) = Reroute::to_port(identity_port);
            let source = AzureSource::with_http_client(&options, transport).unwrap();
            let token = source.fetch().await;
            assert_eq!(
                original.lock().unwrap()[0],
                "http://169.254.169.254/metadata/identity/oauth2/token"
            );
            (source, token)
        } else {
            let source = AzureSource::new(&options).unwrap();
            let token = source.fetch().await;
            (source, token)
        };
        let (source, token) = source;
        let token = token.unwrap_or_else(|e| panic!("{label}: {}", e.chain_text()));
        assert_eq!(token.details().username.as_deref(), derived, "{label}");
        let client = emulator
            .connect(role, token.secret().expose())
            .await
            .unwrap_or_else(|e| panic!("{label}: login as {role} failed: {e}"));
        let row = client
            .query_one("select current_user::text", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), role, "{label}");
        assert_eq!(source.info().method, "azure");
    }
    emulator.stop().await.unwrap();
}
