//! The identity endpoints: managed identity (App Service / Container Apps and IMDS
//! protocols, plain HTTP) and the Entra v2 token endpoint (HTTPS), plus the HTTP plumbing
//! shared with the control endpoint: listeners that really close when the emulator is
//! "down" and come back on the same port.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::azure::{FEDERATED_AUDIENCE, FederatedClaims, Identity, IdentityKind};
use crate::emulator::Core;
use crate::state::Endpoint;
use crate::util::{ct_eq, now_unix, rfc3339, uuid};

pub(crate) type Body = Full<Bytes>;
pub(crate) type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send + Sync,
>;

pub(crate) fn json_response(status: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// Reads a request body (at most 1 MiB).
pub(crate) async fn read_body(req: Request<Incoming>) -> Result<Bytes, String> {
    Limited::new(req.into_body(), 1 << 20)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| e.to_string())
}

pub(crate) fn query_pairs(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// Binds `addr` with SO_REUSEADDR (so a listener can come back on the same port).
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn serve_conn<S>(io: S, handler: Handler)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let h = handler.clone();
        async move { Ok::<_, Infallible>(h(req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

/// Serves HTTP(S) on `listener`. While `down` is true the listener is closed and open
/// connections are dropped; when it turns false the same address is bound again. `up`
/// reports the actual state. Returns when `shutdown` turns true or is dropped.
pub(crate) async fn supervise(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Handler,
    mut down: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
    up: watch::Sender<bool>,
) {
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let mut listener = Some(listener);
    loop {
        let l = match listener.take() {
            Some(l) => l,
            None => loop {
                match bind(addr) {
                    Ok(l) => break l,
                    Err(e) => {
                        tracing::warn!("rebinding {addr}: {e}; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                            _ = shutdown.changed() => return,
                        }
                    }
                }
            },
        };
        if *down.borrow_and_update() {
            drop(l);
        } else {
            up.send_replace(true);
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    r = shutdown.changed() => {
                        if r.is_err() || *shutdown.borrow() {
                            return;
                        }
                    }
                    r = down.changed() => {
                        if r.is_err() || *down.borrow_and_update() {
                            break;
                        }
                    }
                    acc = l.accept() => {
                        if acc.is_err() {
                            // E.g. out of file descriptors: do not spin.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        if let Ok((stream, _)) = acc {
                            let h = handler.clone();
                            let tls = tls.clone();
                            conns.spawn(async move {
                                let _ = stream.set_nodelay(true);
                                match tls {
                                    Some(acceptor) => {
                                        if let Ok(s) = acceptor.accept(stream).await {
                                            serve_conn(s, h).await;
                                        }
                                    }
                                    None => serve_conn(stream, h).await,
                                }
                            });
                        }
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
            drop(l);
            conns.shutdown().await;
        }
        up.send_replace(false);
        // Down: wait to come back up.
        loop {
            tokio::select! {
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
                r = down.changed() => {
                    if r.is_err() {
                        return;
                    }
                    if !*down.borrow_and_update() {
                        break;
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- managed identity

fn imds_error(status: u16, error: &str, description: &str) -> Response<Body> {
    json_response(
        status,
        &json!({"error": error, "error_description": description}),
    )
}

fn fault_response(endpoint: Endpoint, status: u16, retry_after: Option<u64>) -> Response<Body> {
    let note = "(fault injected by pgauth-emulator)";
    let mut resp = match endpoint {
        Endpoint::AppService | Endpoint::Imds => {
            let (error, desc) = match status {
                400 => ("invalid_request", "Identity not found".to_string()),
                404 => ("not_found", format!("IMDS is updating {note}")),
                410 => (
                    "gone",
                    format!("IMDS is updating; retry within 70 seconds {note}"),
                ),
                429 => ("too_many_requests", format!("Too many requests {note}")),
                503 => ("service_unavailable", format!("Service unavailable {note}")),
                _ => ("unknown_error", format!("Internal server error {note}")),
            };
            imds_error(status, error, &desc)
        }
        Endpoint::Entra => {
            let (error, code, desc) = match status {
                400 => ("invalid_request", 90014, "The request is invalid."),
                404 => ("invalid_request", 90002, "Tenant not found."),
                410 => (
                    "temporarily_unavailable",
                    90033,
                    "A transient error has occurred.",
                ),
                429 => (
                    "temporarily_unavailable",
                    50196,
                    "The server terminated an operation because it encountered a client request loop or too many requests.",
                ),
                503 => (
                    "temporarily_unavailable",
                    90033,
                    "A transient error has occurred. Please try again.",
                ),
                _ => (
                    "server_error",
                    90033,
                    "A transient error has occurred. Please try again.",
                ),
            };
            entra_error(status, error, code, &format!("{desc} {note}"))
        }
    };
    if let Some(secs) = retry_after
        && (status == 429 || status == 503)
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(RETRY_AFTER, v);
    }
    resp
}

pub(crate) async fn handle_managed_identity(
    core: Arc<Core>,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().trim_end_matches('/');
    let endpoint = match path {
        "/msi/token" => Some(Endpoint::AppService),
        "/metadata/identity/oauth2/token" => Some(Endpoint::Imds),
        _ => None,
    };
    // Counted on arrival, before any added latency.
    if let Some(e) = endpoint {
        core.shared.count_request(e);
    }
    let latency = core.shared.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let Some(endpoint) = endpoint else {
        return imds_error(404, "not_found", "The requested path was not found");
    };
    if let Some((status, retry)) = core.shared.take_fault() {
        return fault_response(endpoint, status, retry);
    }
    if req.method() != Method::GET {
        return imds_error(
            405,
            "invalid_request",
            "The requested method is not allowed",
        );
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match endpoint {
        Endpoint::Imds => {
            if !header("metadata").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
                return imds_error(
                    400,
                    "invalid_request",
                    "Required metadata header not specified",
                );
            }
            if header("x-forwarded-for").is_some() {
                return imds_error(
                    400,
                    "invalid_request",
                    "Request contains X-Forwarded-For header",
                );
            }
        }
        _ => {
            let ok = header("x-identity-header")
                .is_some_and(|v| ct_eq(v.as_bytes(), core.identity_header.as_bytes()));
            if !ok {
                return imds_error(
                    401,
                    "invalid_request",
                    "The X-IDENTITY-HEADER header is missing or does not match IDENTITY_HEADER",
                );
            }
        }
    }
    let q = query_pairs(&req);
    let get = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if get("api-version").is_none_or(str::is_empty) {
        return imds_error(
            400,
            "invalid_request",
            "Bad request. api-version was not specified in the request",
        );
    }
    let Some(resource) = get("resource").filter(|r| !r.is_empty()) else {
        return imds_error(
            400,
            "invalid_request",
            "Required query variable 'resource' is missing",
        );
    };
    let selectors: Vec<(&str, &str)> = [
        "client_id",
        "object_id",
        "principal_id",
        "msi_res_id",
        "mi_res_id",
    ]
    .iter()
    .filter_map(|k| get(k).filter(|v| !v.is_empty()).map(|v| (*k, v)))
    .collect();
    if selectors.len() > 1 {
        return imds_error(
            400,
            "invalid_request",
            "Only one of client_id, object_id and msi_res_id can be specified",
        );
    }
    let identity: Option<&Identity> = match selectors.first() {
        None => Some(core.tenant.get(IdentityKind::SystemAssigned)),
        Some((k, v)) => core.tenant.managed_identities().find(|i| match *k {
            "client_id" => i.client_id.eq_ignore_ascii_case(v),
            "object_id" | "principal_id" => i.object_id.eq_ignore_ascii_case(v),
            _ => i
                .resource_id
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(v)),
        }),
    };
    let Some(identity) = identity else {
        return imds_error(400, "invalid_request", "Identity not found");
    };
    let audience = resource.strip_suffix("/.default").unwrap_or(resource);
    let lifetime = core.shared.token_lifetime();
    let now = SystemTime::now();
    let (token, exp) = match core.mint_for(identity, audience, now, now, lifetime) {
        Ok(t) => t,
        Err(e) => return imds_error(500, "unknown_error", &e.to_string()),
    };
    core.shared.count_issued(endpoint);
    let nbf = crate::util::unix(now);
    let expires_in = (exp - now_unix()).max(0).to_string();
    json_response(
        200,
        &json!({
            "access_token": token,
            "client_id": identity.client_id,
            "expires_in": expires_in,
            "expires_on": exp.to_string(),
            "ext_expires_in": expires_in,
            "not_before": nbf.to_string(),
            "resource": resource,
            "token_type": "Bearer",
        }),
    )
}

// ---------------------------------------------------------------- Entra

fn entra_error(status: u16, error: &str, code: u32, description: &str) -> Response<Body> {
    let trace = uuid();
    let correlation = uuid();
    let now = now_unix();
    let ts = rfc3339(now).replace('T', " ");
    json_response(
        status,
        &json!({
            "error": error,
            "error_description": format!(
                "AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {ts}"
            ),
            "error_codes": [code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": correlation,
        }),
    )
}

pub(crate) async fn handle_entra(core: Arc<Core>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let is_token = req.method() == Method::POST
        && matches!(segments.as_slice(), [_, "oauth2", "v2.0", "token"]);
    // Counted on arrival, before any added latency.
    if is_token {
        core.shared.count_request(Endpoint::Entra);
    }
    let latency = core.shared.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let base = core.authority_base();
    match (req.method().clone(), segments.as_slice()) {
        (Method::POST, [tenant, "oauth2", "v2.0", "token"]) => {
            if let Some((status, retry)) = core.shared.take_fault() {
                return fault_response(Endpoint::Entra, status, retry);
            }
            let tenant = tenant.to_string();
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(e) => return entra_error(400, "invalid_request", 900144, &e),
            };
            token_endpoint(&core, &tenant, &body)
        }
        (Method::GET, [tenant, "v2.0", ".well-known", "openid-configuration"]) => {
            if !core.known_tenant(tenant) && !matches!(*tenant, "common" | "organizations") {
                return entra_error(
                    400,
                    "invalid_tenant",
                    90002,
                    &format!("Tenant '{tenant}' not found."),
                );
            }
            let t = if core.known_tenant(tenant) {
                core.tenant.tenant_id.clone()
            } else {
                tenant.to_string()
            };
            json_response(
                200,
                &json!({
                    "token_endpoint": format!("{base}/{t}/oauth2/v2.0/token"),
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                    "jwks_uri": format!("{base}/{t}/discovery/v2.0/keys"),
                    "response_modes_supported": ["query", "fragment", "form_post"],
                    "subject_types_supported": ["pairwise"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                    "scopes_supported": ["openid", "profile", "email", "offline_access"],
                    "issuer": format!("{base}/{t}/v2.0"),
                    "request_uri_parameter_supported": false,
                    "authorization_endpoint": format!("{base}/{t}/oauth2/v2.0/authorize"),
                    "device_authorization_endpoint": format!("{base}/{t}/oauth2/v2.0/devicecode"),
                    "end_session_endpoint": format!("{base}/{t}/oauth2/v2.0/logout"),
                    "tenant_region_scope": "NA",
                    "cloud_instance_name": "pgauth-emulator",
                }),
            )
        }
        (Method::GET, ["common", "discovery", "instance"]) => {
            let host = base.trim_start_matches("https://").to_string();
            json_response(
                200,
                &json!({
                    "tenant_discovery_endpoint": format!("{base}/{}/v2.0/.well-known/openid-configuration", core.tenant.tenant_id),
                    "api-version": "1.1",
                    "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
                }),
            )
        }
        (Method::GET, [_, "discovery", "v2.0", "keys"])
        | (Method::GET, [_, "discovery", "keys"]) => {
            json_response(200, &json!({"keys": [core.key.jwk()]}))
        }
        _ => entra_error(
            404,
            "invalid_request",
            900561,
            "The endpoint only accepts POST requests.",
        ),
    }
}

fn token_endpoint(core: &Core, tenant: &str, body: &[u8]) -> Response<Body> {
    if !core.known_tenant(tenant) {
        return entra_error(
            400,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let missing = |p: &str| {
        entra_error(
            400,
            "invalid_request",
            900144,
            &format!("The request body must contain the following parameter: '{p}'."),
        )
    };
    let Some(grant_type) = get("grant_type") else {
        return missing("grant_type");
    };
    if grant_type != "client_credentials" {
        return entra_error(
            400,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{grant_type}'."),
        );
    }
    let Some(client_id) = get("client_id") else {
        return missing("client_id");
    };
    let Some(scope) = get("scope") else {
        return missing("scope");
    };
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    let resource = match scopes.as_slice() {
        [s] if s.ends_with("/.default") => s.trim_end_matches("/.default").to_string(),
        _ => {
            return entra_error(
                400,
                "invalid_scope",
                1002012,
                &format!(
                    "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                ),
            );
        }
    };
    let app = core.tenant.identities.iter().find(|i| {
        matches!(i.kind, IdentityKind::Workload | IdentityKind::UserAssigned)
            && i.client_id.eq_ignore_ascii_case(client_id)
    });
    let Some(app) = app else {
        return entra_error(
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                core.tenant.tenant_id
            ),
        );
    };
    if let Some(secret) = get("client_secret") {
        let ok = app.kind == IdentityKind::Workload
            && ct_eq(secret.as_bytes(), core.client_secret.as_bytes());
        if !ok {
            return entra_error(
                401,
                "invalid_client",
                7000215,
                &format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                ),
            );
        }
    } else if let Some(assertion) = get("client_assertion") {
        if get("client_assertion_type")
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return entra_error(
                400,
                "invalid_request",
                90058,
                "The request body must contain the following parameter: 'client_assertion_type' set to 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.",
            );
        }
        if let Err(resp) = check_assertion(core, assertion) {
            return *resp;
        }
    } else {
        return entra_error(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    }
    let lifetime = core.shared.token_lifetime();
    let now = SystemTime::now();
    match core.mint_for(app, &resource, now, now, lifetime) {
        Ok((token, exp)) => {
            core.shared.count_issued(Endpoint::Entra);
            let expires_in = (exp - now_unix()).max(0);
            json_response(
                200,
                &json!({
                    "token_type": "Bearer",
                    "expires_in": expires_in,
                    "ext_expires_in": expires_in,
                    "access_token": token,
                }),
            )
        }
        Err(e) => entra_error(500, "server_error", 90033, &e.to_string()),
    }
}

fn check_assertion(core: &Core, assertion: &str) -> Result<(), Box<Response<Body>>> {
    use jsonwebtoken::errors::ErrorKind;
    let invalid =
        |code: u32, desc: String| Box::new(entra_error(400, "invalid_client", code, &desc));
    let unverified: FederatedClaims =
        jsonwebtoken::dangerous::insecure_decode::<FederatedClaims>(assertion)
            .map(|d| d.claims)
            .map_err(|_| invalid(50027, "JWT token is invalid or malformed.".into()))?;
    if unverified.iss != core.federated_issuer {
        return Err(invalid(
            700211,
            format!(
                "No matching federated identity record found for presented assertion issuer '{}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion.",
                unverified.iss
            ),
        ));
    }
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.leeway = 0;
    validation.validate_aud = false;
    validation.validate_nbf = true;
    let decoded = jsonwebtoken::decode::<FederatedClaims>(
        assertion,
        core.federation_key.decoding_key(),
        &validation,
    );
    let claims = match decoded {
        Ok(d) => d.claims,
        Err(e) => {
            return Err(match e.kind() {
                ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => invalid(
                    700024,
                    format!(
                        "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}.",
                        rfc3339(now_unix()),
                        rfc3339(unverified.nbf),
                        rfc3339(unverified.exp)
                    ),
                ),
                _ => invalid(
                    700027,
                    "Client assertion failed signature validation.".into(),
                ),
            });
        }
    };
    if !claims.aud.iter().any(|a| a == FEDERATED_AUDIENCE) {
        return Err(invalid(
            700212,
            format!(
                "No matching federated identity record found for presented assertion audience '{}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion.",
                claims.aud.join(",")
            ),
        ));
    }
    if claims.sub != core.federated_subject {
        return Err(invalid(
            70021,
            format!(
                "No matching federated identity record found for presented assertion. Assertion Issuer: '{}'. Assertion Subject: '{}'. Assertion Audience: '{}'.",
                claims.iss,
                claims.sub,
                claims.aud.join(",")
            ),
        ));
    }
    Ok(())
}
