//! A minimal HTTP/1.1 client for tests, restricted to loopback addresses.
//!
//! It talks to the emulator's endpoints (plain HTTP, or HTTPS trusting a given CA) without
//! pulling a full HTTP client into every test. Any host other than `127.0.0.1`, `localhost`
//! or `[::1]` is refused, so tests cannot send traffic elsewhere by mistake.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::Error;

/// An HTTP response, fully read.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers (names lower-case).
    pub headers: Vec<(String, String)>,
    /// Body as text.
    pub body: String,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<Value, Error> {
        serde_json::from_str(&self.body)
            .map_err(|e| Error::Http(format!("body is not json ({e}): {}", self.body)))
    }
}

/// `GET url` with the given headers. `ca_pem` is required for `https` URLs.
pub async fn get(
    url: &str,
    headers: &[(&str, &str)],
    ca_pem: Option<&str>,
) -> Result<HttpResponse, Error> {
    request("GET", url, headers, None, ca_pem).await
}

/// `POST url` with a body.
pub async fn post(
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Vec<u8>>,
    ca_pem: Option<&str>,
) -> Result<HttpResponse, Error> {
    request("POST", url, headers, Some(body.into()), ca_pem).await
}

/// `POST url` with an `application/x-www-form-urlencoded` body built from `form`.
pub async fn post_form(
    url: &str,
    form: &[(&str, &str)],
    ca_pem: Option<&str>,
) -> Result<HttpResponse, Error> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    post(
        url,
        &[("content-type", "application/x-www-form-urlencoded")],
        body,
        ca_pem,
    )
    .await
}

/// Sends one request on a new connection and reads the whole response (30 s timeout).
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
    ca_pem: Option<&str>,
) -> Result<HttpResponse, Error> {
    tokio::time::timeout(
        Duration::from_secs(30),
        request_inner(method, url, headers, body, ca_pem),
    )
    .await
    .map_err(|_| Error::Http(format!("{method} {url}: timed out")))?
}

async fn request_inner(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
    ca_pem: Option<&str>,
) -> Result<HttpResponse, Error> {
    let parsed = url::Url::parse(url).map_err(|e| Error::Http(format!("bad url {url}: {e}")))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| Error::Http(format!("no host in {url}")))?
        .to_string();
    let host_bare = host.trim_start_matches('[').trim_end_matches(']');
    if !matches!(host_bare, "127.0.0.1" | "localhost" | "::1") {
        return Err(Error::Http(format!(
            "refusing to send a request to {host}: the testkit client only talks to loopback"
        )));
    }
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| Error::Http(format!("no port in {url}")))?;
    let tcp = TcpStream::connect((host_bare, port))
        .await
        .map_err(|e| Error::Http(format!("connect {host}:{port}: {e}")))?;
    let path = match parsed.query() {
        Some(q) => format!("{}?{}", parsed.path(), q),
        None => parsed.path().to_string(),
    };
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", format!("{host}:{port}"));
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let req = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| Error::Http(e.to_string()))?;

    match parsed.scheme() {
        "http" => send(TokioIo::new(tcp), req).await,
        "https" => {
            let ca = ca_pem.ok_or_else(|| Error::Http("https needs a CA certificate".into()))?;
            let mut config = (*crate::tls::client_config(ca)?).clone();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = rustls_pki_types::ServerName::try_from(host_bare.to_string())
                .map_err(|e| Error::Http(format!("bad server name {host}: {e}")))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| Error::Http(format!("tls handshake with {host}:{port}: {e}")))?;
            send(TokioIo::new(tls), req).await
        }
        other => Err(Error::Http(format!("unsupported scheme {other}"))),
    }
}

async fn send<IO>(io: TokioIo<IO>, req: Request<Full<Bytes>>) -> Result<HttpResponse, Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| Error::Http(e.to_string()))?;
    let conn = tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| Error::Http(e.to_string()))?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| Error::Http(e.to_string()))?
        .to_bytes();
    drop(sender);
    conn.abort();
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
