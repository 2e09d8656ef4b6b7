//! A real PostgreSQL server in a fresh temporary directory.
//!
//! The binaries are found through `PGAUTH_EMULATOR_PG_BINDIR`, on `PATH`, through
//! `pg_config --bindir`, or under `/usr/lib/postgresql/*/bin` (newest version first). When
//! the process runs as root, the cluster is created and run as the unprivileged user
//! `postgres` (initdb and postgres refuse root), and the temporary directory is owned by it.
//!
//! The server listens on a Unix socket in a private directory (mode 0700) with `trust`
//! authentication, and optionally on `127.0.0.1` with TLS and `password` authentication.
//! Dropping a [`PostgresServer`] kills the server and removes the directory, also when a
//! test panics.

use std::fmt;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio_postgres::NoTls;

use crate::Error;

/// The unprivileged OS user PostgreSQL runs as when the process is root.
pub const RUN_AS_USER: &str = "postgres";

/// TLS material for the optional TCP listener.
#[derive(Clone, Default)]
pub struct TcpTls {
    /// Server certificate chain, PEM.
    pub cert_pem: String,
    /// Server private key, PEM.
    pub key_pem: String,
}

impl fmt::Debug for TcpTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpTls")
            .field("cert_pem", &self.cert_pem.len())
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// How to start a [`PostgresServer`].
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Also listen on `127.0.0.1:<port>` with `ssl=on` and
    /// `hostssl all all 127.0.0.1/32 password`.
    pub tcp: Option<TcpTls>,
    /// Extra `pg_hba.conf` lines, placed after `local all all trust` and before the
    /// `hostssl` line (first match wins).
    pub extra_hba: Vec<String>,
    /// Port (socket name and TCP port); a free port when `None`.
    pub port: Option<u16>,
}

/// A running PostgreSQL server owned by this process.
pub struct PostgresServer {
    dir: Option<tempfile::TempDir>,
    base: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    bin_dir: PathBuf,
    port: u16,
    superuser: String,
    run_as: Option<(u32, u32)>,
    tcp: bool,
    child: Mutex<Option<Child>>,
}

impl fmt::Debug for PostgresServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresServer")
            .field("base", &self.base)
            .field("port", &self.port)
            .field("tcp", &self.tcp)
            .field("pid", &self.pid())
            .finish_non_exhaustive()
    }
}

fn has_binaries(dir: &Path) -> bool {
    dir.join("initdb").is_file() && dir.join("postgres").is_file()
}

/// Finds the directory holding `initdb` and `postgres`.
pub fn find_bin_dir() -> Result<PathBuf, Error> {
    let canonical = |dir: &Path| -> PathBuf {
        fs::canonicalize(dir.join("postgres"))
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .filter(|d| has_binaries(d))
            .unwrap_or_else(|| dir.to_path_buf())
    };
    if let Some(dir) = std::env::var_os("PGAUTH_EMULATOR_PG_BINDIR") {
        let dir = PathBuf::from(dir);
        if has_binaries(&dir) {
            return Ok(canonical(&dir));
        }
        return Err(Error::BinariesNotFound(format!(
            "PGAUTH_EMULATOR_PG_BINDIR={} has no initdb and postgres",
            dir.display()
        )));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_binaries(&dir) {
                return Ok(canonical(&dir));
            }
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_binaries(&dir) {
            return Ok(canonical(&dir));
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.split('.').next()?.parse().ok()?;
            let bin = e.path().join("bin");
            has_binaries(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Ok(dir);
    }
    Err(Error::BinariesNotFound(
        "looked on PATH, in `pg_config --bindir` and under /usr/lib/postgresql/*/bin; install PostgreSQL (e.g. apt-get install postgresql)".into(),
    ))
}

/// The uid/gid to run PostgreSQL as: `postgres` when we are root, else ourselves.
fn run_as() -> Result<Option<(u32, u32)>, Error> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name(RUN_AS_USER)
        .map_err(|e| Error::Io {
            context: format!("look up user {RUN_AS_USER}"),
            source: std::io::Error::from(e),
        })?
        .ok_or_else(|| Error::UserNotFound(RUN_AS_USER.into()))?;
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub(crate) fn free_port() -> Result<u16, Error> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::io("bind a free port"))?;
    Ok(l.local_addr()
        .map_err(Error::io("read local address"))?
        .port())
}

impl PostgresServer {
    /// Creates a cluster in a new temporary directory and starts it.
    pub async fn start(opts: ServerOptions) -> Result<PostgresServer, Error> {
        let bin_dir = find_bin_dir()?;
        let run_as = run_as()?;
        let dir = tempfile::Builder::new()
            .prefix("pgauth-pg-")
            .tempdir()
            .map_err(Error::io("create temporary directory"))?;
        let base = dir.path().to_path_buf();
        let own = |p: &Path| -> Result<(), Error> {
            if let Some((uid, gid)) = run_as {
                std::os::unix::fs::chown(p, Some(uid), Some(gid))
                    .map_err(Error::io(format!("chown {}", p.display())))?;
            }
            Ok(())
        };
        own(&base)?;
        let socket_dir = base.join("socket");
        fs::create_dir(&socket_dir).map_err(Error::io("create socket directory"))?;
        fs::set_permissions(&socket_dir, fs::Permissions::from_mode(0o700))
            .map_err(Error::io("chmod socket directory"))?;
        own(&socket_dir)?;
        let data_dir = base.join("data");
        let log_path = base.join("postgres.log");
        let superuser = "postgres".to_string();
        let port = match opts.port {
            Some(p) => p,
            None => free_port()?,
        };

        let server = PostgresServer {
            dir: Some(dir),
            base: base.clone(),
            data_dir: data_dir.clone(),
            socket_dir: socket_dir.clone(),
            log_path,
            bin_dir,
            port,
            superuser,
            run_as,
            tcp: opts.tcp.is_some(),
            child: Mutex::new(None),
        };

        // initdb
        let mut cmd = tokio::process::Command::new(server.bin_dir.join("initdb"));
        cmd.arg("-D")
            .arg(&data_dir)
            .args(["-U", &server.superuser, "-A", "trust", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"])
            .current_dir(&base)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        server.prepare_env(cmd.as_std_mut());
        if let Some((uid, gid)) = run_as {
            cmd.uid(uid).gid(gid);
        }
        let started = Instant::now();
        let out = cmd.output().await.map_err(Error::io("run initdb"))?;
        tracing::debug!("initdb took {:?}", started.elapsed());
        if !out.status.success() {
            return Err(Error::Initdb(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }

        // configuration
        let mut conf = format!(
            "\n# pgauth-emulator\nlisten_addresses = '{}'\nport = {}\nunix_socket_directories = '{}'\n\
             unix_socket_permissions = 0700\nfsync = off\nsynchronous_commit = off\n\
             full_page_writes = off\nshared_buffers = 16MB\nmax_connections = 150\n\
             max_wal_senders = 0\nwal_level = minimal\nlog_min_messages = warning\n\
             password_encryption = 'scram-sha-256'\n",
            if opts.tcp.is_some() { "127.0.0.1" } else { "" },
            port,
            socket_dir.display()
        );
        let mut hba = String::from("# pgauth-emulator\nlocal all all trust\n");
        for line in &opts.extra_hba {
            hba.push_str(line);
            hba.push('\n');
        }
        if let Some(tls) = &opts.tcp {
            let cert = data_dir.join("server.crt");
            let key = data_dir.join("server.key");
            fs::write(&cert, &tls.cert_pem).map_err(Error::io("write server.crt"))?;
            fs::write(&key, &tls.key_pem).map_err(Error::io("write server.key"))?;
            fs::set_permissions(&key, fs::Permissions::from_mode(0o600))
                .map_err(Error::io("chmod server.key"))?;
            own(&cert)?;
            own(&key)?;
            conf.push_str(&format!(
                "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                cert.display(),
                key.display()
            ));
            hba.push_str("hostssl all all 127.0.0.1/32 password\n");
        }
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(data_dir.join("postgresql.conf"))
            .map_err(Error::io("open postgresql.conf"))?;
        f.write_all(conf.as_bytes())
            .map_err(Error::io("write postgresql.conf"))?;
        fs::write(data_dir.join("pg_hba.conf"), hba).map_err(Error::io("write pg_hba.conf"))?;

        let started = Instant::now();
        server.spawn_and_wait().await?;
        tracing::debug!(
            "postgres accepted connections after {:?}",
            started.elapsed()
        );
        Ok(server)
    }

    fn prepare_env(&self, cmd: &mut Command) {
        for var in [
            "PGDATA",
            "PGPORT",
            "PGHOST",
            "PGUSER",
            "PGDATABASE",
            "PGOPTIONS",
            "PGPASSWORD",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("LC_ALL", "C").env("LANG", "C");
        if self.run_as.is_some() {
            cmd.env("HOME", &self.base);
        }
    }

    async fn spawn_and_wait(&self) -> Result<(), Error> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(Error::io("open postgres.log"))?;
        let log2 = log.try_clone().map_err(Error::io("dup log file"))?;
        let mut cmd = Command::new(self.bin_dir.join("postgres"));
        cmd.arg("-D")
            .arg(&self.data_dir)
            .current_dir(&self.base)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        self.prepare_env(&mut cmd);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        let child = cmd.spawn().map_err(Error::io("spawn postgres"))?;
        *self.lock_child() = Some(child);

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self
                .lock_child()
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.lock_child().take();
                return Err(Error::Server(format!(
                    "postgres exited with {status} during startup: {}",
                    self.log_tail()
                )));
            }
            match self.admin_config().connect(NoTls).await {
                Ok((client, conn)) => {
                    drop(client);
                    let _ = conn.await;
                    return Ok(());
                }
                Err(e) if Instant::now() > deadline => {
                    return Err(Error::Server(format!(
                        "postgres did not accept connections within 30 s ({e}): {}",
                        self.log_tail()
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        }
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    fn lock_child(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Signals the postmaster and waits for it (and so its children) to exit.
    fn shutdown_child_blocking(&self, signal: Signal, grace: Duration) {
        let Some(mut child) = self.lock_child().take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, signal);
        let deadline = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }

    async fn shutdown_child(&self, signal: Signal, grace: Duration) {
        let Some(mut child) = self.lock_child().take() else {
            return;
        };
        let pid = Pid::from_raw(child.id() as i32);
        let _ = kill(pid, signal);
        let deadline = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                Ok(None) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    /// The private directory holding the Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The path of the Unix socket (`<socket_dir>/.s.PGSQL.<port>`).
    pub fn socket_path(&self) -> PathBuf {
        self.socket_dir.join(format!(".s.PGSQL.{}", self.port))
    }

    /// The port: the socket's name and, with [`ServerOptions::tcp`], the TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the server also listens on 127.0.0.1 with TLS.
    pub fn has_tcp(&self) -> bool {
        self.tcp
    }

    /// The superuser (trusted on the Unix socket).
    pub fn superuser(&self) -> &str {
        &self.superuser
    }

    /// The temporary directory holding everything of this server.
    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server log.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The directory of the PostgreSQL binaries in use.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The postmaster's process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.lock_child().as_ref().map(Child::id)
    }

    /// Connection settings for the superuser over the Unix socket.
    pub fn admin_config(&self) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host_path(&self.socket_dir)
            .port(self.port)
            .user(&self.superuser)
            .dbname("postgres")
            .application_name("pgauth-emulator-admin")
            .connect_timeout(Duration::from_secs(10));
        c
    }

    /// A superuser connection over the Unix socket (its connection task is spawned).
    pub async fn admin_client(&self) -> Result<tokio_postgres::Client, Error> {
        let (client, conn) = self.admin_config().connect(NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Runs SQL (one or more statements) as the superuser.
    pub async fn execute_admin(&self, sql: &str) -> Result<(), Error> {
        let client = self.admin_client().await?;
        client.batch_execute(sql).await?;
        Ok(())
    }

    /// Stops the server (fast shutdown: sessions are terminated) and starts it again on the
    /// same directory and port.
    pub async fn restart(&self) -> Result<(), Error> {
        self.shutdown_child(Signal::SIGINT, Duration::from_secs(20))
            .await;
        self.spawn_and_wait().await
    }

    /// Stops the server and removes its directory.
    pub async fn stop(mut self) -> Result<(), Error> {
        self.shutdown_child(Signal::SIGINT, Duration::from_secs(20))
            .await;
        if let Some(dir) = self.dir.take() {
            dir.close()
                .map_err(Error::io("remove the temporary directory"))?;
        }
        Ok(())
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // Immediate shutdown: the postmaster stops its children before exiting.
        self.shutdown_child_blocking(Signal::SIGQUIT, Duration::from_secs(5));
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}
