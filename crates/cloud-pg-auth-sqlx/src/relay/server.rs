//! The relay's server connection: the core's `open_upstream` (dial, TLS) with the settings'
//! TCP keepalives on its socket, or the server's Unix socket when the host is a socket
//! directory (no TLS there, as in libpq).

use std::io;
use std::time::Duration;

use cloud_pg_auth::Settings;
use cloud_pg_auth::net::{Endpoint, Upstream, open_upstream};
use cloud_pg_auth::tls::TlsPolicy;
use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

/// libpq's `keepalives`, `keepalives_idle`, `keepalives_interval`, `keepalives_count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Keepalive {
    on: bool,
    idle: Option<Duration>,
    interval: Option<Duration>,
    count: Option<u32>,
}

impl Keepalive {
    /// The settings' keepalives (their getters already read a zero as the system's value, as
    /// libpq documents).
    pub(crate) fn from_settings(settings: &Settings) -> Self {
        Self {
            on: settings.get_keepalives(),
            idle: settings.get_keepalives_idle(),
            interval: settings.get_keepalives_interval(),
            count: settings.get_keepalives_count(),
        }
    }

    /// Applies them as libpq does: `keepalives=0` leaves SO_KEEPALIVE off; otherwise it is
    /// turned on and each of idle, interval and count is set when given (the system's value
    /// otherwise). Interval and count are skipped where the system has no such option, as
    /// in tokio-postgres.
    pub(super) fn apply(&self, tcp: &TcpStream) -> io::Result<()> {
        let socket = SockRef::from(tcp);
        if !self.on {
            return socket.set_keepalive(false);
        }
        let mut params = TcpKeepalive::new();
        if let Some(idle) = self.idle {
            params = params.with_time(idle);
        }
        #[cfg(not(any(
            target_os = "aix",
            target_os = "redox",
            target_os = "solaris",
            target_os = "openbsd"
        )))]
        if let Some(interval) = self.interval {
            params = params.with_interval(interval);
        }
        #[cfg(not(any(
            target_os = "aix",
            target_os = "redox",
            target_os = "solaris",
            target_os = "windows",
            target_os = "openbsd"
        )))]
        if let Some(count) = self.count {
            params = params.with_retries(count);
        }
        socket.set_tcp_keepalive(&params)
    }
}

/// An opened server connection.
pub(super) enum Server {
    /// TCP, with TLS when the policy asks for it.
    Net(Upstream),
    /// The server's Unix socket.
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

/// Opens the server connection for one relayed session.
pub(super) async fn open(
    endpoint: &Endpoint,
    policy: &TlsPolicy,
    connect_timeout: Option<Duration>,
    keepalive: &Keepalive,
) -> Result<Server, cloud_pg_auth::Error> {
    if let Some(dir) = endpoint.unix_socket_dir() {
        return open_unix(endpoint, dir, connect_timeout).await;
    }
    let upstream = open_upstream(endpoint, policy, connect_timeout).await?;
    keepalive.apply(tcp(&upstream)).map_err(|e| {
        connect_error(
            endpoint,
            "could not set the tcp keepalives (keepalives*)",
            e,
        )
    })?;
    Ok(Server::Net(upstream))
}

/// The TCP socket under `upstream`.
pub(super) fn tcp(upstream: &Upstream) -> &TcpStream {
    match upstream {
        Upstream::Plain(tcp) => tcp,
        Upstream::Tls(tls) => tls.get_ref().0,
    }
}

#[cfg(unix)]
async fn open_unix(
    endpoint: &Endpoint,
    dir: &std::path::Path,
    connect_timeout: Option<Duration>,
) -> Result<Server, cloud_pg_auth::Error> {
    let path = dir.join(format!(".s.PGSQL.{}", endpoint.port()));
    let connect = tokio::net::UnixStream::connect(&path);
    let opened = match connect_timeout {
        Some(limit) => tokio::time::timeout(limit, connect)
            .await
            .unwrap_or_else(|_| Err(io::Error::from(io::ErrorKind::TimedOut))),
        None => connect.await,
    };
    opened
        .map(Server::Unix)
        .map_err(|e| connect_error(endpoint, &path.display().to_string(), e))
}

#[cfg(not(unix))]
async fn open_unix(
    endpoint: &Endpoint,
    _dir: &std::path::Path,
    _connect_timeout: Option<Duration>,
) -> Result<Server, cloud_pg_auth::Error> {
    Err(connect_error(
        endpoint,
        "a socket directory as the host",
        io::Error::from(io::ErrorKind::Unsupported),
    ))
}

fn connect_error(endpoint: &Endpoint, what: &str, error: io::Error) -> cloud_pg_auth::Error {
    cloud_pg_auth::Error::Connect {
        target: endpoint.label(),
        message: format!("{what}: {error}"),
        sqlstate: None,
        source: Box::new(error),
    }
}

#[cfg(test)]
mod tests {
    use cloud_pg_auth::login::LoginTarget;
    use cloud_pg_auth::testing::offline_password_settings;

    use super::*;

    /// The socket options of the server connection the relay opens, read back with socket2
    /// (whose getters exist on these systems).
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    #[tokio::test]
    async fn the_server_socket_gets_the_settings_keepalives() {
        use cloud_pg_auth::SslMode;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = offline_password_settings("pw")
            .ssl_mode(SslMode::Disable)
            .port(port);
        let secs = Duration::from_secs;
        for (label, settings, on, idle, interval, count) in [
            (
                "all given",
                base.clone()
                    .keepalives_idle(secs(30))
                    .keepalives_interval(secs(5))
                    .keepalives_count(3),
                true,
                Some(secs(30)),
                Some(secs(5)),
                Some(3),
            ),
            (
                "idle only",
                base.clone().keepalives_idle(secs(45)),
                true,
                Some(secs(45)),
                None,
                None,
            ),
            ("the default: on", base.clone(), true, None, None, None),
            (
                "zeros: the system's values",
                base.clone()
                    .keepalives_idle(secs(0))
                    .keepalives_interval(secs(0))
                    .keepalives_count(0),
                true,
                None,
                None,
                None,
            ),
            (
                "keepalives=0",
                base.clone().keepalives(false).keepalives_idle(secs(30)),
                false,
                None,
                None,
                None,
            ),
        ] {
            let login = LoginTarget::from_settings(&settings).unwrap();
            let server = open(
                login.endpoint(),
                login.tls(),
                None,
                &Keepalive::from_settings(&settings),
            )
            .await
            .unwrap();
            let (_accepted, _) = listener.accept().await.unwrap();
            let Server::Net(upstream) = server else {
                panic!("{label}: a TCP host gives a TCP connection");
            };
            let socket = SockRef::from(tcp(&upstream));
            assert_eq!(socket.keepalive().unwrap(), on, "{label}");
            if let Some(idle) = idle {
                assert_eq!(socket.tcp_keepalive_time().unwrap(), idle, "{label}");
            }
            if let Some(interval) = interval {
                assert_eq!(
                    socket.tcp_keepalive_interval().unwrap(),
                    interval,
                    "{label}"
                );
            }
            if let Some(count) = count {
                assert_eq!(socket.tcp_keepalive_retries().unwrap(), count, "{label}");
            }
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_socket_directory_host_is_dialled_at_its_socket() {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::UnixListener::bind(dir.path().join(".s.PGSQL.6543")).unwrap();
        let settings = offline_password_settings("pw")
            .host(dir.path().to_str().unwrap())
            .port(6543);
        let login = LoginTarget::from_settings(&settings).unwrap();
        let keepalive = Keepalive::from_settings(&settings);
        let server = open(login.endpoint(), login.tls(), None, &keepalive)
            .await
            .unwrap();
        assert!(matches!(server, Server::Unix(_)));
        listener.accept().await.unwrap();
        drop(listener);
        let missing = offline_password_settings("pw")
            .host(dir.path().to_str().unwrap())
            .port(6544);
        let login = LoginTarget::from_settings(&missing).unwrap();
        let Err(error) = open(login.endpoint(), login.tls(), None, &keepalive).await else {
            panic!("nothing listens there");
        };
        assert!(error.to_string().contains(".s.PGSQL.6544"), "{error}");
    }
}
