//! Where the proxy listens and what a client connection is: TCP on a loopback address (or
//! elsewhere only when allowed, with local TLS and a local password), or a Unix socket in a
//! directory, as PostgreSQL names it (`DIR/.s.PGSQL.PORT`).

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::ProxyError;

/// The default port: not 5432 (a local server), 5433 and up (further clusters on Debian
/// and Ubuntu, which count up from 5432; 5433 is also YugabyteDB's), 5439 (Redshift) nor
/// 6432 (PgBouncer); one below 5432, where no packaging tool puts a cluster.
pub(crate) const DEFAULT_PORT: u16 = 5431;

/// Where the proxy accepts clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket `dir/.s.PGSQL.port`, as libpq looks for it with `host=dir port=port`.
    Unix {
        /// The directory (libpq's `host`).
        dir: PathBuf,
        /// The number in the socket's name (libpq's `port`).
        port: u16,
    },
}

impl Default for Listen {
    fn default() -> Self {
        Self::Tcp(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            DEFAULT_PORT,
        ))
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix { dir, port } => write!(f, "{}", socket_path(dir, *port).display()),
        }
    }
}

/// `--listen`: `IP:PORT`, `[IPv6]:PORT` or a bare port (on 127.0.0.1). Names are refused:
/// what a name resolves to can change, and the loopback check is on the address.
pub(crate) fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    value.parse::<SocketAddr>().map_err(|_| {
        format!("--listen {value:?}: give IP:PORT (such as 127.0.0.1:{DEFAULT_PORT} or [::1]:{DEFAULT_PORT}) or a port")
    })
}

/// The socket file libpq opens for `host=dir port=port`.
#[must_use]
pub(crate) fn socket_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

/// The bound listener.
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// Who connected.
#[derive(Debug, Clone)]
pub(crate) enum Peer {
    Tcp(SocketAddr),
    Unix,
}

impl Peer {
    /// Whether the client is on this machine (loopback address or Unix socket).
    pub(crate) fn is_local(&self) -> bool {
        match self {
            Self::Tcp(addr) => addr.ip().is_loopback(),
            Self::Unix => true,
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(addr) => write!(f, "{addr}"),
            Self::Unix => f.write_str("unix socket"),
        }
    }
}

impl Listener {
    /// Binds `listen`. A leftover socket file nobody answers on is replaced; one a live
    /// process listens on is not.
    pub(crate) async fn bind(listen: &Listen) -> Result<Self, ProxyError> {
        match listen {
            Listen::Tcp(addr) => TcpListener::bind(addr)
                .await
                .map(Self::Tcp)
                .map_err(|source| ProxyError::Bind {
                    target: addr.to_string(),
                    source,
                }),
            Listen::Unix { dir, port } => {
                let path = socket_path(dir, *port);
                if path.exists() && UnixStream::connect(&path).await.is_err() {
                    let _ = std::fs::remove_file(&path);
                }
                let listener = UnixListener::bind(&path).map_err(|source| ProxyError::Bind {
                    target: path.display().to_string(),
                    source,
                })?;
                // Only this user may connect: a local client gets a login without a password.
                set_owner_only(&path).map_err(|source| ProxyError::Bind {
                    target: path.display().to_string(),
                    source,
                })?;
                Ok(Self::Unix(listener, path))
            }
        }
    }

    /// The TCP address bound (port 0 resolved), if TCP.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(l) => l.local_addr().ok(),
            Self::Unix(..) => None,
        }
    }

    pub(crate) async fn accept(&self) -> io::Result<(ClientStream, Peer)> {
        match self {
            Self::Tcp(l) => {
                let (tcp, addr) = l.accept().await?;
                // Small protocol messages must not wait for delayed ACKs, as libpq sets too.
                let _ = tcp.set_nodelay(true);
                Ok((ClientStream::Tcp(tcp), Peer::Tcp(addr)))
            }
            Self::Unix(l, _) => {
                let (unix, _) = l.accept().await?;
                Ok((ClientStream::Unix(unix), Peer::Unix))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Self::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(unix)]
fn set_owner_only(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

#[cfg(not(unix))]
fn set_owner_only(_: &Path) -> io::Result<()> {
    Ok(())
}

/// Local TLS from a PEM certificate chain and key, with the core's crypto provider.
pub(crate) fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ProxyError> {
    let bad = |what: &str, path: &Path, e: &dyn fmt::Display| ProxyError::LocalTls {
        message: format!("cannot use {what} {}: {e}", path.display()),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| bad("--tls-cert", cert, &e))?;
    if chain.is_empty() {
        return Err(bad("--tls-cert", cert, &"no PEM certificate in it"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("--tls-key", key, &e))?;
    let config = ServerConfig::builder_with_provider(cloud_pg_auth::tls::crypto_provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key_der))
        .map_err(|e| bad("--tls-key", key, &e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// One client connection: TCP, TCP with local TLS, or a Unix socket.
pub(crate) enum ClientStream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Unix(UnixStream),
}

impl ClientStream {
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: &str, expected: Result<&str, &str>) {
        match (parse_listen(value), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got.to_string(), want, "{value}"),
            (Err(got), Err(fragment)) => assert!(got.contains(fragment), "{value}: {got}"),
            (got, _) => panic!("{value}: unexpected {got:?}"),
        }
    }

    #[test]
    fn listen_addresses() {
        check("5431", Ok("127.0.0.1:5431"));
        check("127.0.0.1:6000", Ok("127.0.0.1:6000"));
        check("[::1]:6000", Ok("[::1]:6000"));
        check("0.0.0.0:5431", Ok("0.0.0.0:5431"));
        check("localhost:5431", Err("give IP:PORT"));
        check("", Err("give IP:PORT"));
        assert_eq!(Listen::default().to_string(), "127.0.0.1:5431");
    }
}
