//! Where a login goes: libpq's `host` and `hostaddr`, the loopback check for unverified
//! TLS, and an upstream connection opened the PostgreSQL way (SSLRequest, then rustls).
//!
//! `host` is the name the certificate is verified against and the name tokens are made for;
//! `hostaddr` only changes the address dialled. That is how a private endpoint reached by
//! IP, an SSH tunnel or a port-forward keeps `verify-full`.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::{ConfigError, Error};
use crate::settings::{Settings, SslMode};
use crate::tls::{CertCheck, TlsPolicy};

/// The server one engine logs in to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    host: String,
    port: u16,
    hostaddr: Option<IpAddr>,
    loopback_only: bool,
}

impl Endpoint {
    /// The endpoint of validated `settings`.
    pub fn from_settings(settings: &Settings) -> Result<Self, Error> {
        let host = settings.host.clone().ok_or_else(|| {
            ConfigError::new(
                "PGHOST",
                "no server host; set PGHOST or give a host in DATABASE_URL",
            )
        })?;
        let policy = TlsPolicy::from_settings(settings)?;
        // A token sent without a verified certificate may only go to this machine.
        let loopback_only =
            settings.resolved_method()?.is_token() && policy.check() == CertCheck::None;
        Ok(Self {
            host,
            port: settings.port,
            hostaddr: settings.hostaddr,
            loopback_only,
        })
    }

    /// The name the certificate is verified against and tokens are made for.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The server port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address dialled instead of resolving `host` (libpq's `hostaddr`).
    #[must_use]
    pub fn hostaddr(&self) -> Option<IpAddr> {
        self.hostaddr
    }

    /// The socket directory when `host` is one (an absolute path, as in libpq).
    #[must_use]
    pub fn unix_socket_dir(&self) -> Option<&Path> {
        is_unix_socket_dir(&self.host).then(|| Path::new(&self.host))
    }

    /// `host:port`, with the dialled address when it differs, for messages.
    #[must_use]
    pub fn label(&self) -> String {
        let host = if self.host.contains(':') && !self.host.starts_with('/') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.hostaddr {
            Some(addr) => format!("{host}:{} (dialled at {addr})", self.port),
            None => format!("{host}:{}", self.port),
        }
    }

    /// The addresses to dial, in order: `hostaddr`, or what `host` resolves to. When a token
    /// would travel without a verified certificate, every address must be a loopback one,
    /// checked here on the very addresses that are dialled (a name such as `localhost` can
    /// resolve anywhere).
    pub async fn resolve(&self) -> Result<Vec<SocketAddr>, Error> {
        if self.unix_socket_dir().is_some() {
            return Err(ConfigError::new(
                "PGHOST",
                "is a Unix socket directory; connect through the socket, not TCP",
            )
            .into());
        }
        let addrs: Vec<SocketAddr> = match self.hostaddr {
            Some(ip) => vec![SocketAddr::new(ip, self.port)],
            None => {
                let name = self.host.trim_start_matches('[').trim_end_matches(']');
                tokio::net::lookup_host((name, self.port))
                    .await
                    .map_err(|e| Error::Connect {
                        sqlstate: None,
                        target: self.label(),
                        message: format!("cannot resolve {name:?}"),
                        source: Box::new(e),
                    })?
                    .collect()
            }
        };
        if addrs.is_empty() {
            return Err(Error::Connect {
                sqlstate: None,
                target: self.label(),
                message: "the host name resolves to no address".into(),
                source: Box::new(io::Error::from(io::ErrorKind::NotFound)),
            });
        }
        if self.loopback_only {
            only_loopback(&self.host, &addrs)?;
        }
        Ok(addrs)
    }
}

/// Refuses any address off this machine: for a token that travels without a verified
/// certificate.
fn only_loopback(host: &str, addrs: &[SocketAddr]) -> Result<(), ConfigError> {
    match addrs.iter().find(|a| !a.ip().is_loopback()) {
        Some(outside) => Err(ConfigError::new(
            "PGAUTH_INSECURE_LOOPBACK",
            format!(
                "{host:?} resolves to {}, which is not a loopback address; a token is sent without a verified certificate only to this machine, so use 127.0.0.1 or ::1, or sslmode=verify-full",
                outside.ip()
            ),
        )),
        None => Ok(()),
    }
}

/// Whether `host` names a Unix socket directory rather than a network host.
#[must_use]
pub(crate) fn is_unix_socket_dir(host: &str) -> bool {
    host.starts_with('/')
}

/// PostgreSQL's SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// A connection to the server, ready for the startup message: TLS when the policy asks for
/// it, plaintext otherwise.
pub enum Upstream {
    /// Without TLS (`sslmode=disable`, or a server that declined under `prefer`).
    Plain(TcpStream),
    /// Over rustls, the certificate checked as the policy says.
    Tls(Box<TlsStream<TcpStream>>),
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Plain(_) => "Upstream::Plain",
            Self::Tls(_) => "Upstream::Tls",
        })
    }
}

/// Dials `endpoint` (each resolved address in turn) and negotiates TLS per `policy`: the
/// SSLRequest, then a rustls handshake verifying `endpoint.host()`. TCP_NODELAY is set, as
/// libpq does, so small protocol messages are not held back by delayed ACKs.
pub async fn open_upstream(
    endpoint: &Endpoint,
    policy: &TlsPolicy,
    connect_timeout: Option<Duration>,
) -> Result<Upstream, Error> {
    let open = async {
        let tcp = dial(endpoint).await?;
        negotiate(endpoint, policy, tcp).await
    };
    match connect_timeout {
        Some(limit) => {
            tokio::time::timeout(limit, open)
                .await
                .map_err(|elapsed| Error::Connect {
                    sqlstate: None,
                    target: endpoint.label(),
                    message: format!(
                        "no connection within {} s (PGCONNECT_TIMEOUT)",
                        limit.as_secs()
                    ),
                    source: Box::new(elapsed),
                })?
        }
        None => open.await,
    }
}

async fn dial(endpoint: &Endpoint) -> Result<TcpStream, Error> {
    let mut last = None;
    for addr in endpoint.resolve().await? {
        match TcpStream::connect(addr).await {
            Ok(tcp) => {
                tcp.set_nodelay(true)
                    .map_err(|e| connect_error(endpoint, e))?;
                return Ok(tcp);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(connect_error(
        endpoint,
        last.unwrap_or_else(|| io::Error::from(io::ErrorKind::NotFound)),
    ))
}

async fn negotiate(
    endpoint: &Endpoint,
    policy: &TlsPolicy,
    mut tcp: TcpStream,
) -> Result<Upstream, Error> {
    let Some(config) = policy.client_config() else {
        return Ok(Upstream::Plain(tcp));
    };
    tcp.write_all(&SSL_REQUEST)
        .await
        .map_err(|e| connect_error(endpoint, e))?;
    let answer = tcp
        .read_u8()
        .await
        .map_err(|e| connect_error(endpoint, e))?;
    match answer {
        b'S' => {}
        b'N' if policy.mode() == SslMode::Prefer && policy.check() == CertCheck::None => {
            return Ok(Upstream::Plain(tcp));
        }
        b'N' => {
            return Err(Error::Connect {
                sqlstate: None,
                target: endpoint.label(),
                message: format!(
                    "the server does not offer TLS, which sslmode={} requires",
                    policy.mode().as_str()
                ),
                source: Box::new(io::Error::from(io::ErrorKind::Unsupported)),
            });
        }
        other => {
            return Err(Error::Connect {
                sqlstate: None,
                target: endpoint.label(),
                message: format!(
                    "the server answered the TLS request with {other:#04x}, not 'S' or 'N'; is this a PostgreSQL server?"
                ),
                source: Box::new(io::Error::from(io::ErrorKind::InvalidData)),
            });
        }
    }
    let name = crate::tls::server_name(endpoint.host())?;
    let tls = TlsConnector::from(std::sync::Arc::clone(config))
        .connect(name, tcp)
        .await
        .map_err(|e| {
            let message = crate::tls::certificate_hint(&e)
                .unwrap_or_else(|| format!("tls handshake failed: {e}"));
            Error::Connect {
                sqlstate: None,
                target: endpoint.label(),
                message,
                source: Box::new(e),
            }
        })?;
    Ok(Upstream::Tls(Box::new(tls)))
}

fn connect_error(endpoint: &Endpoint, error: io::Error) -> Error {
    Error::Connect {
        sqlstate: None,
        target: endpoint.label(),
        message: error.to_string(),
        source: Box::new(error),
    }
}

impl AsyncRead for Upstream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Upstream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_resolving_off_this_machine_is_refused_for_an_unverified_token() {
        let loopback: SocketAddr = "127.0.0.1:5432".parse().unwrap();
        let v6: SocketAddr = "[::1]:5432".parse().unwrap();
        let outside: SocketAddr = "10.0.0.5:5432".parse().unwrap();
        only_loopback("localhost", &[loopback, v6]).unwrap();
        for addrs in [vec![outside], vec![loopback, outside]] {
            let error = only_loopback("localhost", &addrs).unwrap_err();
            assert_eq!(error.setting(), "PGAUTH_INSECURE_LOOPBACK");
            assert!(error.message().contains("10.0.0.5"), "{error}");
        }
    }

    #[tokio::test]
    async fn localhost_is_resolved_and_checked_before_an_unverified_token_goes() {
        let settings = Settings::default()
            .host("localhost")
            .user("app")
            .method(crate::AuthMethod::Custom)
            .ssl_mode(SslMode::Disable);
        let mut settings = settings;
        settings.insecure_loopback = true;
        settings.validate().unwrap();
        let endpoint = Endpoint::from_settings(&settings).unwrap();
        assert!(endpoint.loopback_only);
        let addrs = endpoint.resolve().await.unwrap();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        // Verified TLS: the name is what matters, any address may be dialled.
        let verified = Settings::default()
            .host("db.example.com")
            .user("app")
            .method(crate::AuthMethod::Custom);
        assert!(!Endpoint::from_settings(&verified).unwrap().loopback_only);
    }
}
