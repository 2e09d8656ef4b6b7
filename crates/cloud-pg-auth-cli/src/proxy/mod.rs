//! `pgauth proxy`: a local PostgreSQL endpoint for tools that are not Rust (psql, pg_dump,
//! GUI clients, libpq drivers, services in other languages). It speaks the PostgreSQL
//! protocol itself: it ends the client's login (user and database checked against what it
//! serves, a local password when set), opens the configured server with a fresh token from
//! its own credential over the core's verified TLS, then relays the session unchanged.
//!
//! One module per job: [`listener`] (where clients connect), `client` (their startup),
//! `connection` (one connection start to end: limit, upstream, status line), `upstream`
//! (the login with the token), `cancel` (CancelRequest forwarding), `relay` (the session),
//! `env` (`--print-env`); this file holds the options, the accept loop with its shutdown,
//! and the counters tests synchronise on.

mod cancel;
mod client;
mod connection;
mod env;
pub(crate) mod listener;
mod relay;
mod upstream;
mod wire;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cloud_pg_auth::engine::CredentialConfig;
use cloud_pg_auth::net::Endpoint;
use cloud_pg_auth::tls::TlsPolicy;
use cloud_pg_auth::{Auth, AuthOptions, Secret, Settings};
use serde::Serialize;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

pub(crate) use env::{client_env, served};
pub use listener::Listen;
use listener::Listener;
pub(crate) use listener::{DEFAULT_PORT, parse_listen};

/// The environment variable holding the local password clients must give.
pub(crate) const PASSWORD_VAR: &str = "PGAUTH_PROXY_PASSWORD";

/// How the proxy runs: public fields and `Default` (no setters), filled in by `pgauth proxy`
/// or a test.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// Where clients connect (default `127.0.0.1:5431`).
    pub listen: Listen,
    /// Allow a TCP address that is not loopback (`--allow-remote`); then local TLS and a
    /// local password are required, and clients from other machines must use TLS.
    pub allow_remote: bool,
    /// Local TLS certificate chain (PEM), with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// Local TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// The password clients give the proxy (`PGAUTH_PROXY_PASSWORD`); never sent upstream.
    pub local_password: Option<Secret>,
    /// Client sessions at once; one more gets SQLSTATE 53300 (default 100).
    pub max_connections: usize,
    /// Upstream login limit, token included (default `PGCONNECT_TIMEOUT`, else 10 s).
    pub connect_timeout: Option<Duration>,
    /// A client's startup (TLS, startup packet, local password) must end within this
    /// (default 60 s, PostgreSQL's `authentication_timeout`).
    pub startup_timeout: Duration,
    /// On shutdown, how long open sessions may go on before they are closed (default 30 s).
    pub shutdown_timeout: Duration,
    /// Databases served besides the configured one (`--database`).
    pub databases: Vec<String>,
    /// The credential's options (tests pass a clock).
    pub auth: AuthOptions,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            listen: Listen::default(),
            allow_remote: false,
            tls_cert: None,
            tls_key: None,
            local_password: None,
            max_connections: 100,
            connect_timeout: None,
            startup_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(30),
            databases: Vec::new(),
            auth: AuthOptions::default(),
        }
    }
}

/// Why the proxy does not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The options ask for something unsafe or contradictory.
    #[error("{0}")]
    Options(String),
    /// Settings, credential or first token.
    #[error(transparent)]
    Core(#[from] cloud_pg_auth::Error),
    /// The listen address or socket cannot be bound.
    #[error(
        "cannot listen on {target}: {source}; choose another address with --listen or --socket"
    )]
    Bind {
        /// The address or socket path.
        target: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The local certificate or key cannot be used.
    #[error("{message}; give a PEM certificate chain in --tls-cert and its key in --tls-key")]
    LocalTls {
        /// What is wrong.
        message: String,
    },
}

/// Counters of a proxy, for tests and the shutdown line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Whether the proxy accepts connections now (false before `run` and once shutting down).
    pub accepting: bool,
    /// Connections accepted (cancel requests included).
    pub accepted: u64,
    /// Sessions relayed, total.
    pub sessions_opened: u64,
    /// Sessions relaying now.
    pub active_sessions: u64,
    /// Refused: the connection limit (53300).
    pub refused_limit: u64,
    /// Refused: a user or database not served (28000).
    pub refused_not_served: u64,
    /// Refused: a wrong local password (28P01).
    pub refused_password: u64,
    /// Refused: a malformed or unsupported startup.
    pub refused_protocol: u64,
    /// Upstream logins that failed (the client got the server's error or 08001).
    pub upstream_failures: u64,
    /// Logins retried after the server refused a token.
    pub auth_retries: u64,
    /// Cancel requests forwarded upstream.
    pub cancels_forwarded: u64,
    /// Cancel requests for a key this proxy did not hand out, dropped.
    pub cancels_ignored: u64,
    /// Cancel requests that could not be forwarded.
    pub cancels_failed: u64,
}

/// What every connection task shares.
pub(crate) struct ProxyState {
    pub endpoint: Endpoint,
    pub policy: TlsPolicy,
    pub auth: Auth,
    /// The role the proxy logs in as, and the only one clients may ask for.
    pub user: String,
    pub databases: Vec<String>,
    pub method: &'static str,
    pub application_name: Option<String>,
    pub connect_timeout: Duration,
    pub startup_timeout: Duration,
    pub local_tls: Option<TlsAcceptor>,
    pub local_password: Option<Secret>,
    /// Clients from other machines must use TLS.
    pub require_tls: bool,
    pub sessions: Arc<Semaphore>,
    pub keys: cancel::Keys,
    stats: watch::Sender<ProxyStats>,
}

impl ProxyState {
    pub(crate) fn count(&self, change: impl FnOnce(&mut ProxyStats)) {
        self.stats.send_modify(change);
    }
}

/// A bound proxy, not yet accepting: [`Proxy::run`] serves it.
pub struct Proxy {
    shared: Arc<ProxyState>,
    listener: Listener,
    shutdown_timeout: Duration,
    shutdown: watch::Receiver<bool>,
    shutdown_tx: Arc<watch::Sender<bool>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("upstream", &self.shared.endpoint.label())
            .field("user", &self.shared.user)
            .field("databases", &self.shared.databases)
            .finish_non_exhaustive()
    }
}

/// Controls a running proxy from elsewhere: shutdown and counters.
#[derive(Clone)]
pub struct ProxyHandle {
    shutdown: Arc<watch::Sender<bool>>,
    stats: watch::Receiver<ProxyStats>,
}

impl std::fmt::Debug for ProxyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyHandle")
            .field("stats", &*self.stats.borrow())
            .finish()
    }
}

impl ProxyHandle {
    /// Stops accepting; open sessions get the shutdown timeout to end.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// The counters now.
    #[must_use]
    pub fn stats(&self) -> ProxyStats {
        self.stats.borrow().clone()
    }

    /// Waits until the counters satisfy `done` (each change is an event; nothing polls).
    pub async fn wait_for(&self, mut done: impl FnMut(&ProxyStats) -> bool) -> ProxyStats {
        let mut stats = self.stats.clone();
        match stats.wait_for(|s| done(s)).await {
            Ok(s) => s.clone(),
            // The proxy is gone: its last counters are final.
            Err(_) => self.stats(),
        }
    }
}

/// Checks where the proxy may listen: loopback or a Unix socket; elsewhere only with
/// `allow_remote`, local TLS and a local password.
fn check_listen(options: &ProxyOptions) -> Result<(), ProxyError> {
    if options.tls_cert.is_some() != options.tls_key.is_some() {
        return Err(ProxyError::Options(
            "--tls-cert and --tls-key go together; give both for local tls".into(),
        ));
    }
    if options.max_connections == 0 {
        return Err(ProxyError::Options(
            "--max-connections must be at least 1".into(),
        ));
    }
    let Listen::Tcp(addr) = &options.listen else {
        return Ok(());
    };
    if addr.ip().is_loopback() {
        return Ok(());
    }
    if !options.allow_remote {
        return Err(ProxyError::Options(format!(
            "{addr} is not a loopback address: other machines could log in to the database as the proxy's role; listen on 127.0.0.1 or ::1, or add --allow-remote together with --tls-cert, --tls-key and {PASSWORD_VAR}"
        )));
    }
    if options.tls_cert.is_none() {
        return Err(ProxyError::Options(format!(
            "--allow-remote needs local tls: give --tls-cert and --tls-key, so the local password never crosses the network in clear (listening on {addr})"
        )));
    }
    if options.local_password.as_ref().is_none_or(Secret::is_empty) {
        return Err(ProxyError::Options(format!(
            "--allow-remote needs a local password: set {PASSWORD_VAR}, which every client gives as its password (listening on {addr})"
        )));
    }
    Ok(())
}

/// The role the proxy serves: `PGUSER`, else the one the token names (Azure).
pub(crate) async fn served_user(
    settings: &Settings,
    auth: &Auth,
) -> Result<String, cloud_pg_auth::Error> {
    // One token now: a broken credential fails at start, not at the first client.
    let token = auth.token().await?;
    crate::session::login_user(settings, &token)
}

/// The databases served: the configured one (libpq's default, the user name, when unset)
/// and `extra`.
pub(crate) fn served_databases(settings: &Settings, user: &str, extra: &[String]) -> Vec<String> {
    let mut databases = vec![settings.get_dbname().unwrap_or(user).to_string()];
    for d in extra {
        if !databases.contains(d) {
            databases.push(d.clone());
        }
    }
    databases
}

impl Proxy {
    /// Checks the options and settings, builds the credential, fetches a first token and
    /// binds the listener. Nothing is accepted until [`Proxy::run`].
    pub async fn bind(settings: &Settings, options: ProxyOptions) -> Result<Self, ProxyError> {
        check_listen(&options)?;
        settings.validate().map_err(cloud_pg_auth::Error::from)?;
        if settings.host_is_unix_socket() {
            return Err(ProxyError::Options(
                "PGHOST is a Unix socket directory; pgauth proxy connects to the server over tcp (set PGHOST to the server's name)".into(),
            ));
        }
        let local_tls = match (&options.tls_cert, &options.tls_key) {
            (Some(cert), Some(key)) => Some(listener::tls_acceptor(cert, key)?),
            _ => None,
        };
        let endpoint = Endpoint::from_settings(settings)?;
        let policy = TlsPolicy::from_settings(settings)?;
        let method = settings
            .resolved_method()
            .map_err(cloud_pg_auth::Error::from)?;
        let mut credential = CredentialConfig::new(settings.clone());
        credential.set_auth_options(options.auth.clone());
        let auth = credential.build_auth().await?;
        let user = match served_user(settings, &auth).await {
            Ok(user) => user,
            Err(e) => {
                auth.dispose().await;
                return Err(e.into());
            }
        };
        let listener = match Listener::bind(&options.listen).await {
            Ok(l) => l,
            Err(e) => {
                auth.dispose().await;
                return Err(e);
            }
        };
        let databases = served_databases(settings, &user, &options.databases);
        let (stats, _) = watch::channel(ProxyStats::default());
        let (shutdown_tx, shutdown) = watch::channel(false);
        let shared = ProxyState {
            endpoint,
            policy,
            auth,
            user,
            databases,
            method: method.as_str(),
            application_name: settings.get_application_name().map(str::to_string),
            connect_timeout: options
                .connect_timeout
                .or(settings.get_connect_timeout())
                .unwrap_or(Duration::from_secs(10)),
            startup_timeout: options.startup_timeout,
            local_tls,
            local_password: options.local_password.filter(|p| !p.is_empty()),
            require_tls: options.allow_remote,
            sessions: Arc::new(Semaphore::new(options.max_connections)),
            keys: cancel::Keys::default(),
            stats,
        };
        Ok(Self {
            shared: Arc::new(shared),
            listener,
            shutdown_timeout: options.shutdown_timeout,
            shutdown,
            shutdown_tx: Arc::new(shutdown_tx),
        })
    }

    /// The TCP address clients connect to (the real port when 0 was asked for).
    #[must_use]
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr()
    }

    /// The role served.
    #[must_use]
    pub fn user(&self) -> &str {
        &self.shared.user
    }

    /// The databases served.
    #[must_use]
    pub fn databases(&self) -> &[String] {
        &self.shared.databases
    }

    /// `host:port` of the server.
    #[must_use]
    pub fn upstream(&self) -> String {
        self.shared.endpoint.label()
    }

    /// The credential's status (expiry, fetches; never the token).
    #[must_use]
    pub fn auth_status(&self) -> cloud_pg_auth::AuthStatus {
        self.shared.auth.status()
    }

    /// A handle to stop the proxy and read its counters.
    #[must_use]
    pub fn handle(&self) -> ProxyHandle {
        ProxyHandle {
            shutdown: Arc::clone(&self.shutdown_tx),
            stats: self.shared.stats.subscribe(),
        }
    }

    /// Serves until `stop` completes or [`ProxyHandle::shutdown`] is called, then stops
    /// accepting, lets open sessions go on for the shutdown timeout, closes the rest and
    /// disposes of the credential.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> ProxyStats {
        let Self {
            shared,
            listener,
            shutdown_timeout,
            mut shutdown,
            shutdown_tx: _keep_open,
        } = self;
        let mut connections = JoinSet::new();
        tokio::pin!(stop);
        shared.count(|s| s.accepting = true);
        loop {
            tokio::select! {
                () = &mut stop => break,
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        shared.count(|s| s.accepted += 1);
                        let shared = Arc::clone(&shared);
                        connections.spawn(connection::serve(shared, stream, peer));
                    }
                    Err(e) => {
                        // Out of file descriptors, say: wait for a session to end rather
                        // than spin.
                        tracing::warn!("accept failed: {e}");
                        if connections.join_next().await.is_none() {
                            tokio::task::yield_now().await;
                        }
                    }
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        shared.count(|s| s.accepting = false);
        let open = connections.len();
        tracing::info!(
            "shutting down: no new connections; {open} open, waiting up to {} s for them",
            shutdown_timeout.as_secs()
        );
        let drained = tokio::time::timeout(shutdown_timeout, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::info!(
                "closing {} sessions still open after {} s",
                connections.len(),
                shutdown_timeout.as_secs()
            );
            connections.shutdown().await;
        }
        shared.auth.dispose().await;
        let stats = shared.stats.borrow().clone();
        tracing::info!(
            sessions = stats.sessions_opened,
            refused = stats.refused_limit
                + stats.refused_not_served
                + stats.refused_password
                + stats.refused_protocol,
            upstream_failures = stats.upstream_failures,
            "proxy stopped"
        );
        stats
    }

    /// Serves until [`ProxyHandle::shutdown`].
    pub async fn run(self) -> ProxyStats {
        self.run_until(std::future::pending()).await
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;

    fn check(options: ProxyOptions, expected: Result<(), &str>) {
        match (check_listen(&options), expected) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(fragment)) => assert!(e.to_string().contains(fragment), "{e}"),
            (got, _) => panic!("{:?}: unexpected {got:?}", options.listen),
        }
    }

    #[test]
    fn only_loopback_without_the_flag_and_then_tls_and_a_password() {
        let remote = Listen::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5431));
        let tls = ProxyOptions {
            tls_cert: Some("cert.pem".into()),
            tls_key: Some("key.pem".into()),
            ..ProxyOptions::default()
        };
        check(ProxyOptions::default(), Ok(()));
        check(
            ProxyOptions {
                listen: Listen::Tcp("[::1]:5431".parse().unwrap()),
                ..ProxyOptions::default()
            },
            Ok(()),
        );
        check(
            ProxyOptions {
                listen: Listen::Unix {
                    dir: "/run/pgauth".into(),
                    port: 5431,
                },
                ..ProxyOptions::default()
            },
            Ok(()),
        );
        check(
            ProxyOptions {
                listen: remote.clone(),
                ..ProxyOptions::default()
            },
            Err("is not a loopback address"),
        );
        check(
            ProxyOptions {
                listen: remote.clone(),
                allow_remote: true,
                ..ProxyOptions::default()
            },
            Err("needs local tls"),
        );
        check(
            ProxyOptions {
                listen: remote.clone(),
                allow_remote: true,
                ..tls.clone()
            },
            Err("needs a local password"),
        );
        check(
            ProxyOptions {
                listen: remote,
                allow_remote: true,
                local_password: Some(Secret::new("local-pw")),
                ..tls
            },
            Ok(()),
        );
        check(
            ProxyOptions {
                tls_cert: Some("cert.pem".into()),
                ..ProxyOptions::default()
            },
            Err("go together"),
        );
        check(
            ProxyOptions {
                max_connections: 0,
                ..ProxyOptions::default()
            },
            Err("at least 1"),
        );
    }

    #[test]
    fn client_env_points_at_the_proxy() {
        let env = client_env(&Listen::default(), "app", "db", false);
        assert_eq!(
            env,
            vec![
                ("PGHOST", "127.0.0.1".to_string()),
                ("PGPORT", "5431".to_string()),
                ("PGUSER", "app".to_string()),
                ("PGDATABASE", "db".to_string()),
                ("PGSSLMODE", "disable".to_string()),
            ]
        );
        let unix = Listen::Unix {
            dir: "/run/pgauth".into(),
            port: 6000,
        };
        let env = client_env(&unix, "app", "db", true);
        assert_eq!(env[0], ("PGHOST", "/run/pgauth".to_string()));
        assert_eq!(env[4], ("PGSSLMODE", "disable".to_string()));
        let any = Listen::Tcp("0.0.0.0:5431".parse().unwrap());
        assert_eq!(client_env(&any, "a", "d", true)[0].1, "127.0.0.1");
        assert_eq!(client_env(&any, "a", "d", true)[4].1, "require");
    }
}
