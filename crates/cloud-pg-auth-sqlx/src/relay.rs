//! The engine's local relay: sqlx connects, without TLS, to a private socket of the engine,
//! and the relay opens the real connection with the core's `open_upstream` (dial `hostaddr`
//! or `host`, the loopback check, SSLRequest, rustls with the core's `TlsPolicy`, verifying
//! `host`), then splices the two. sqlx's own TLS cannot be used: it always adds the public
//! roots to `PGSSLROOTCERT` (libpq replaces them), cannot dial one address while verifying
//! another name, and takes neither a rustls config nor a socket.
//!
//! The relay also applies the libpq options sqlx lacks, for every connection sqlx opens:
//! the StartupMessage's `options` become the settings' (`startup`), the server socket gets
//! the TCP keepalives (`server`), and `target_session_attrs` is checked before the client
//! sees ReadyForQuery (`login`). A socket directory host is relayed too, for the same
//! options.
//!
//! The token crosses only the engine's own socket: a Unix socket in a fresh directory only
//! this user can enter (mode 0700), removed with the engine. Targets without Unix sockets use
//! a listener on 127.0.0.1.

mod login;
mod server;
mod startup;

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cloud_pg_auth::net::Endpoint;
use cloud_pg_auth::tls::TlsPolicy;
use cloud_pg_auth::{Settings, TargetSessionAttrs};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::task::JoinHandle;

pub(crate) use server::Keepalive;
use server::Server;

#[cfg(unix)]
type StdListener = std::os::unix::net::UnixListener;
#[cfg(unix)]
type Listener = tokio::net::UnixListener;
#[cfg(not(unix))]
type StdListener = std::net::TcpListener;
#[cfg(not(unix))]
type Listener = tokio::net::TcpListener;

/// SQLSTATE sent to sqlx when the server cannot be reached or verified
/// (sqlclient_unable_to_establish_sqlconnection): sqlx returns it at once.
pub(crate) const UNABLE_TO_CONNECT: &str = "08001";
/// SQLSTATE sent when the server refused the TCP connection (cannot_connect_now): sqlx's pool
/// retries it until its timeout, as it retries a refused connection of its own, so a server
/// that is starting up is waited for as before.
pub(crate) const CANNOT_CONNECT_NOW: &str = "57P03";
/// SQLSTATE sent when sqlx's startup message could not be read (protocol_violation).
const PROTOCOL_VIOLATION: &str = "08P01";

/// One TLS record; the splice's buffer per direction.
const SPLICE_BUFFER: usize = 16 * 1024;

/// The relay could not be started. Each sqlx version's `Error::Relay` carries it (the relay is
/// compiled once, for both).
#[derive(Debug)]
pub(crate) struct RelayError {
    /// The socket path or directory.
    pub(crate) place: String,
    pub(crate) source: io::Error,
}

/// The relay of one engine. Dropping it stops accepting and removes the socket directory.
pub(crate) struct Relay {
    shared: Arc<Upstream>,
    state: Mutex<State>,
    /// Where sqlx connects: the socket directory (Unix) or the loopback port.
    #[cfg(unix)]
    dir: PathBuf,
    #[cfg(not(unix))]
    local_port: u16,
}

/// What every relayed session needs; no secret.
struct Upstream {
    endpoint: Endpoint,
    policy: TlsPolicy,
    connect_timeout: Option<Duration>,
    /// The `options` the StartupMessage carries upstream, replacing whatever sqlx put there.
    options: Option<String>,
    keepalive: Keepalive,
    /// What `target_session_attrs` asks of a session; `None` for `any` (no check).
    wanted: Option<TargetSessionAttrs>,
    /// The last upstream that could not be opened, for the engine's error.
    failure: Mutex<Option<Failure>>,
}

struct Failure {
    /// The message sent to sqlx, to recognise the error it comes back as.
    message: String,
    error: cloud_pg_auth::Error,
}

struct State {
    /// Kept to start the accept task again, on another runtime if need be. `None` once
    /// stopped.
    listener: Option<StdListener>,
    #[cfg(unix)]
    dir: Option<tempfile::TempDir>,
    task: Option<JoinHandle<()>>,
}

impl Relay {
    /// Binds the relay's listener; accepting starts with [`Relay::ensure_running`]. The
    /// connect timeout, keepalives and `target_session_attrs` are the settings'; `options`
    /// is sent to the server in place of sqlx's (see the `startup` module).
    pub(crate) fn bind(
        endpoint: Endpoint,
        policy: TlsPolicy,
        settings: &Settings,
        options: Option<String>,
    ) -> Result<Self, RelayError> {
        let shared = Arc::new(Upstream {
            endpoint,
            policy,
            connect_timeout: settings.get_connect_timeout(),
            options,
            keepalive: Keepalive::from_settings(settings),
            wanted: Some(settings.get_target_session_attrs())
                .filter(|attrs| *attrs != TargetSessionAttrs::Any),
            failure: Mutex::new(None),
        });
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let dir = tempfile::Builder::new()
                .prefix("pgauth-sqlx-")
                .permissions(std::fs::Permissions::from_mode(0o700))
                .tempdir()
                .map_err(|e| relay_error(&std::env::temp_dir(), e))?;
            // sqlx connects to `<socket dir>/.s.PGSQL.<port>`, libpq's name.
            let path = dir
                .path()
                .join(format!(".s.PGSQL.{}", shared.endpoint.port()));
            let listener = StdListener::bind(&path)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|e| relay_error(&path, e))?;
            Ok(Self {
                shared,
                dir: dir.path().to_path_buf(),
                state: Mutex::new(State {
                    listener: Some(listener),
                    dir: Some(dir),
                    task: None,
                }),
            })
        }
        #[cfg(not(unix))]
        {
            let addr = std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
            let listener = StdListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|e| relay_error(std::path::Path::new("127.0.0.1"), e))?;
            let local_port = listener
                .local_addr()
                .map_err(|e| relay_error(std::path::Path::new("127.0.0.1"), e))?
                .port();
            Ok(Self {
                shared,
                local_port,
                state: Mutex::new(State {
                    listener: Some(listener),
                    task: None,
                }),
            })
        }
    }

    /// Where sqlx connects: the socket directory, with the server's port in the socket's
    /// name (`.s.PGSQL.<port>`).
    #[cfg(unix)]
    pub(crate) fn socket_dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Where sqlx connects: this port on 127.0.0.1.
    #[cfg(not(unix))]
    pub(crate) fn local_port(&self) -> u16 {
        self.local_port
    }

    /// Starts accepting on the current runtime unless the relay runs already (again after
    /// the runtime that ran it is gone) or was stopped.
    pub(crate) fn ensure_running(&self) -> Result<(), RelayError> {
        let mut state = self.state.lock().unwrap();
        if state.task.as_ref().is_some_and(|task| !task.is_finished()) {
            return Ok(());
        }
        let Some(listener) = &state.listener else {
            return Ok(());
        };
        let listener = listener
            .try_clone()
            .and_then(Listener::from_std)
            .map_err(|e| relay_error(&self.place(), e))?;
        state.task = Some(tokio::spawn(serve(listener, Arc::clone(&self.shared))));
        Ok(())
    }

    /// Stops accepting, waits until the accept task has ended and removes the socket
    /// directory. Sessions already spliced run on; they hold no credential. Idempotent.
    pub(crate) async fn stop(&self) {
        let (task, _dir) = {
            let mut state = self.state.lock().unwrap();
            state.listener = None;
            #[cfg(unix)]
            let dir = state.dir.take();
            #[cfg(not(unix))]
            let dir = ();
            (state.task.take(), dir)
        };
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        #[cfg(unix)]
        if let Some(dir) = _dir
            && let Err(error) = dir.close()
        {
            tracing::warn!(%error, "could not remove the relay's socket directory");
        }
    }

    /// The typed error of the upstream that could not be opened, when sqlx's error is the
    /// relay's answer for it (`message` is that answer's text).
    pub(crate) fn take_failure(&self, message: &str) -> Option<cloud_pg_auth::Error> {
        let mut failure = self.shared.failure.lock().unwrap();
        if failure.as_ref().is_some_and(|f| f.message == message) {
            return failure.take().map(|f| f.error);
        }
        None
    }

    /// The socket directory or loopback address, for messages.
    fn place(&self) -> PathBuf {
        #[cfg(unix)]
        {
            self.dir.clone()
        }
        #[cfg(not(unix))]
        {
            PathBuf::from(format!("127.0.0.1:{}", self.local_port))
        }
    }

    #[cfg(test)]
    pub(crate) fn policy(&self) -> &TlsPolicy {
        &self.shared.policy
    }

    /// The socket directory, while it exists.
    #[cfg(all(test, unix))]
    pub(crate) fn dir(&self) -> Option<PathBuf> {
        let state = self.state.lock().unwrap();
        state.dir.as_ref().map(|d| d.path().to_path_buf())
    }

    /// Watches whether the accept task (or a session being opened) still holds the relay's
    /// shared state.
    #[cfg(test)]
    pub(crate) fn probe(&self) -> RelayProbe {
        RelayProbe(Arc::downgrade(&self.shared))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Without waiting: the directory goes with `State`, the task at its next poll.
        if let Some(task) = self.state.lock().unwrap().task.take() {
            task.abort();
        }
    }
}

/// Watches a relay's shared state from a test.
#[cfg(test)]
pub(crate) struct RelayProbe(std::sync::Weak<Upstream>);

#[cfg(test)]
impl RelayProbe {
    /// Whether nothing but the relay itself (if it still exists) holds the shared state.
    pub(crate) fn ended(&self) -> bool {
        self.0.strong_count() <= 1
    }
}

fn relay_error(place: &std::path::Path, source: io::Error) -> RelayError {
    RelayError {
        place: place.display().to_string(),
        source,
    }
}

async fn serve(listener: Listener, shared: Arc<Upstream>) {
    loop {
        match listener.accept().await {
            Ok((local, _)) => {
                tokio::spawn(session(local, Arc::clone(&shared)));
            }
            Err(error) => {
                // Out of file descriptors, typically: give the process a moment to free some.
                tracing::warn!(%error, "the relay could not accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn session<S>(mut local: S, shared: Arc<Upstream>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // sqlx connects with sslmode=disable: its first packet is the StartupMessage.
    let startup = match startup::read(&mut local).await {
        Ok(packet) => startup::rewrite(&packet, shared.options.as_deref()),
        // Hung up before a whole packet: nobody to answer.
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return,
        Err(error) => Err(error),
    };
    let startup = match startup {
        Ok(startup) => startup,
        Err(error) => {
            tracing::debug!(%error, "the relay could not read sqlx's startup message");
            drop(shared);
            refuse(&mut local, PROTOCOL_VIOLATION, &error.to_string()).await;
            return;
        }
    };
    let opened = server::open(
        &shared.endpoint,
        &shared.policy,
        shared.connect_timeout,
        &shared.keepalive,
    )
    .await;
    match opened {
        Ok(Server::Net(upstream)) => relay(local, upstream, &startup, shared).await,
        #[cfg(unix)]
        Ok(Server::Unix(upstream)) => relay(local, upstream, &startup, shared).await,
        Err(error) => {
            let code = if refused(&error) {
                CANNOT_CONNECT_NOW
            } else {
                UNABLE_TO_CONNECT
            };
            fail(local, shared, error, code).await;
        }
    }
}

/// Sends the StartupMessage, checks the session when the settings ask for it, then splices.
async fn relay<S, U>(mut local: S, mut upstream: U, startup: &[u8], shared: Arc<Upstream>)
where
    S: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    if upstream.write_all(startup).await.is_err() || upstream.flush().await.is_err() {
        return;
    }
    if let Some(wanted) = shared.wanted {
        // Bounded like libpq's connect_timeout: a server that goes quiet mid-login must not keep
        // this task (and the credential it holds) after sqlx has given up.
        let limit = shared
            .connect_timeout
            .unwrap_or(cloud_pg_auth::engine::DEFAULT_CONNECTION_TIMEOUT);
        let login = login::through_login(&mut local, &mut upstream, wanted);
        match tokio::time::timeout(limit, login)
            .await
            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
        {
            Ok(login::Outcome::Splice) => {}
            Ok(login::Outcome::Refused(message)) => {
                // Terminate: the server ends the session cleanly.
                let _ = upstream.write_all(&[b'X', 0, 0, 0, 4]).await;
                let _ = upstream.shutdown().await;
                drop(upstream);
                let error = cloud_pg_auth::Error::Connect {
                    target: shared.endpoint.label(),
                    message,
                    sqlstate: None,
                    source: Box::new(io::Error::from(io::ErrorKind::PermissionDenied)),
                };
                fail(local, shared, error, UNABLE_TO_CONNECT).await;
                return;
            }
            // Either side hung up, broke the protocol or took too long: both close.
            Err(_) => return,
        }
    }
    drop(shared);
    // Ends when either side closes; each side's close reaches the other.
    let _ = tokio::io::copy_bidirectional_with_sizes(
        &mut local,
        &mut upstream,
        SPLICE_BUFFER,
        SPLICE_BUFFER,
    )
    .await;
}

/// Records `error` for the engine, then answers sqlx with it.
async fn fail<S>(mut local: S, shared: Arc<Upstream>, error: cloud_pg_auth::Error, code: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // As sqlx will read it back (a C string).
    let message = error.to_string().replace('\0', "");
    tracing::debug!(target_db = %shared.endpoint.label(), %message, "the relay refused the session");
    // Recorded before sqlx can read the answer, so the engine finds it.
    *shared.failure.lock().unwrap() = Some(Failure {
        message: message.clone(),
        error,
    });
    drop(shared);
    refuse(&mut local, code, &message).await;
}

/// Whether the server's address refused the TCP connection.
fn refused(error: &cloud_pg_auth::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = next {
        if cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        next = cause.source();
    }
    false
}

/// Answers the local client with a FATAL ErrorResponse, then reads until it hangs up, so
/// that nothing it still sends is left unread (which could reset the connection before the
/// answer is read).
async fn refuse<S>(local: &mut S, code: &str, message: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if local
        .write_all(&error_response(code, message))
        .await
        .is_err()
    {
        return;
    }
    let _ = local.shutdown().await;
    let mut scratch = [0u8; 512];
    while matches!(local.read(&mut scratch).await, Ok(n) if n > 0) {}
}

/// A PostgreSQL ErrorResponse: 'E', length, fields (type byte, C string), terminator.
pub(crate) fn error_response(code: &str, message: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(message.len() + 32);
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        body.push(field);
        body.extend(value.bytes().filter(|&b| b != 0));
        body.push(0);
    }
    body.push(0);
    let length = u32::try_from(body.len() + 4).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(b'E');
    out.extend(length.to_be_bytes());
    out.extend(body);
    out
}
