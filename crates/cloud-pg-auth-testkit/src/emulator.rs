//! The whole emulator: a real PostgreSQL server, the identity endpoints, the
//! token-checking PostgreSQL front and the control endpoint, started in-process.

use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::aws::{SignParams, sign_rds_token};
use crate::azure::{
    self, Cloud, FEDERATED_AUDIENCE, IdentityKind, MintOptions, SigningKey, Tenant,
};
use crate::gcp::GcpIdentity;
use crate::identity::{self, Handler};
use crate::pg_tls::MakeRustlsConnect;
use crate::postgres::{PostgresServer, ServerOptions};
use crate::state::{ControlState, FaultState, Faults, Stats};
use crate::tls::{self, TestCa};
use crate::util::{random_alnum, shell_quote, unix, uuid};
use crate::{Error, front};

mod bootstrap;
mod core;
mod exports;
mod options;
mod scram;

pub(crate) use self::core::{AwsSettings, EmulatorState};
use bootstrap::bootstrap_sql;
use options::FEDERATED_SUBJECT;
pub use options::{
    AWS_ROLE, AZURE_ROLE, AZURE_SYSTEM_ROLE, AZURE_USER_ROLE, AZURE_WORKLOAD_ROLE, DATABASE,
    DSQL_ADMIN_ROLE, DSQL_CLUSTER_ID, DSQL_ROLE, EmulatorOptions, PASSWORD_ROLE,
};

fn random_kid() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 20]>())
}

fn bind_port(port: Option<u16>) -> Result<tokio::net::TcpListener, Error> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port.unwrap_or(0)));
    identity::bind(addr).map_err(Error::io(format!("bind {addr}")))
}

fn local_port(l: &tokio::net::TcpListener) -> Result<u16, Error> {
    Ok(l.local_addr()
        .map_err(Error::io("read local address"))?
        .port())
}

/// A running emulator. Dropping it stops everything and removes every file it created.
pub struct Emulator {
    core: Arc<EmulatorState>,
    postgres: Option<PostgresServer>,
    dir: Option<tempfile::TempDir>,
    ca_pem: String,
    ca_path: PathBuf,
    federated_token_file: PathBuf,
    gcp_key_file: PathBuf,
    gcp_user_file: PathBuf,
    pg_port: u16,
    identity_port: u16,
    entra_port: u16,
    control_port: u16,
    password: String,
    env: Vec<(String, String)>,
    connector: MakeRustlsConnect,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Emulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Emulator")
            .field("pg_port", &self.pg_port)
            .field("identity_port", &self.identity_port)
            .field("entra_port", &self.entra_port)
            .field("control_port", &self.control_port)
            .field("cloud", &self.core.cloud)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// Starts PostgreSQL, the identity endpoints, the front and the control endpoint.
    pub async fn start(opts: EmulatorOptions) -> Result<Emulator, Error> {
        let started = std::time::Instant::now();
        let keys = tokio::task::spawn_blocking(|| -> Result<_, Error> {
            let kid = random_kid();
            Ok((
                SigningKey::generate(kid.clone())?,
                SigningKey::generate(kid)?,
                SigningKey::generate(random_kid())?,
                GcpIdentity::new()?,
            ))
        });
        let (pg, keys) = tokio::join!(PostgresServer::start(ServerOptions::default()), keys);
        let pg = pg?;
        let (key, wrong_key, federation_key, gcp) =
            keys.map_err(|e| Error::Tls(format!("key generation task failed: {e}")))??;

        tracing::debug!("postgres and keys ready after {:?}", started.elapsed());
        let tenant = Tenant::generate();
        let password = random_alnum(24);
        pg.execute_admin(&bootstrap_sql(&tenant, &gcp, &password))
            .await?;
        tracing::debug!("roles created after {:?}", started.elapsed());

        let ca = TestCa::generate();
        // The DSQL endpoint name is reached with hostaddr=127.0.0.1 and verify-full, as RDS
        // names are through extra_server_names.
        let dsql_host = exports::dsql_host(&opts.aws_region);
        let mut names = vec!["localhost", "127.0.0.1", dsql_host.as_str()];
        names.extend(opts.extra_server_names.iter().map(String::as_str));
        let (cert_pem, key_pem) = ca.try_issue(&names)?;
        let pg_tls = TlsAcceptor::from(tls::server_config(&cert_pem, &key_pem, &[b"postgresql"])?);
        let https = TlsAcceptor::from(tls::server_config(&cert_pem, &key_pem, &[b"http/1.1"])?);

        let front_l = bind_port(opts.pg_port)?;
        let identity_l = bind_port(opts.identity_port)?;
        let entra_l = bind_port(opts.entra_port)?;
        let control_l = bind_port(opts.control_port)?;
        let pg_port = local_port(&front_l)?;
        let identity_port = local_port(&identity_l)?;
        let entra_port = local_port(&entra_l)?;
        let control_port = local_port(&control_l)?;

        let dir = tempfile::Builder::new()
            .prefix("pgauth-emulator-")
            .tempdir()
            .map_err(Error::io("create temporary directory"))?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .map_err(Error::io("chmod temporary directory"))?;
        let ca_pem = ca.cert_pem();
        let ca_path = dir.path().join("ca.pem");
        fs::write(&ca_path, &ca_pem).map_err(Error::io("write ca.pem"))?;
        fs::set_permissions(&ca_path, fs::Permissions::from_mode(0o644))
            .map_err(Error::io("chmod ca.pem"))?;
        // Google's endpoints share the identity port (GCE_METADATA_HOST); the key and user
        // files name its token endpoint.
        gcp.set_base_url(format!("http://127.0.0.1:{identity_port}"));
        let gcp_key_file = gcp.write_service_account_key(dir.path())?;
        let gcp_user_file = gcp.write_authorized_user_file(dir.path())?;

        let mut allowed_hosts = vec![
            format!("localhost:{pg_port}"),
            format!("127.0.0.1:{pg_port}"),
        ];
        for h in &opts.extra_aws_signing_hosts {
            if h.rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            {
                allowed_hosts.push(h.clone());
            } else {
                allowed_hosts.push(format!("{h}:{pg_port}"));
            }
        }

        let core = Arc::new(EmulatorState {
            shared: ControlState::new(opts.token_lifetime),
            cloud: opts.cloud,
            federated_issuer: format!("https://oidc.pgauth-emulator.invalid/{}/", uuid()),
            federated_subject: FEDERATED_SUBJECT.to_string(),
            tenant,
            key,
            wrong_key,
            federation_key,
            identity_header: uuid(),
            client_secret: format!("{}~{}", random_alnum(3), random_alnum(36)),
            leeway: opts.token_leeway.as_secs(),
            gcp,
            aws: AwsSettings {
                access_key_id: format!("AKIA{}", random_alnum(16).to_ascii_uppercase()),
                secret_access_key: random_alnum(40),
                region: opts.aws_region.clone(),
                allowed_hosts,
                dsql_hosts: vec![dsql_host.clone()],
            },
            socket_path: pg.socket_path(),
            entra_port,
            admin_config: pg.admin_config(),
            admin: tokio::sync::Mutex::new(None),
            identity_up: OnceLock::new(),
            env: OnceLock::new(),
        });

        let federated_token_file = dir.path().join("azure-identity-token");
        let fed_token = mint_federated(&core, SystemTime::now(), Duration::from_secs(86_400))?;
        fs::write(&federated_token_file, &fed_token).map_err(Error::io("write federated token"))?;
        fs::set_permissions(&federated_token_file, fs::Permissions::from_mode(0o600))
            .map_err(Error::io("chmod federated token"))?;

        let connector = MakeRustlsConnect::new(&ca_pem)?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut ups = Vec::new();
        let mi_handler: Handler = {
            let core = core.clone();
            Arc::new(move |req| Box::pin(identity::handle_identity(core.clone(), req)))
        };
        let entra_handler: Handler = {
            let core = core.clone();
            Arc::new(move |req| Box::pin(identity::handle_entra(core.clone(), req)))
        };
        let control_handler: Handler = {
            let core = core.clone();
            Arc::new(move |req| Box::pin(crate::control::handle(core.clone(), req)))
        };
        for (listener, tls, h) in [
            (identity_l, None, mi_handler),
            (entra_l, Some(https), entra_handler),
        ] {
            let (up_tx, up_rx) = watch::channel(false);
            ups.push(up_rx);
            tasks.push(tokio::spawn(identity::supervise(
                listener,
                tls,
                h,
                core.shared.down_tx.subscribe(),
                shutdown_rx.clone(),
                up_tx,
            )));
        }
        let _ = core.identity_up.set(ups);
        {
            // The control endpoint never goes down.
            let (never_tx, never_rx) = watch::channel(false);
            let (up_tx, _) = watch::channel(false);
            let shutdown_rx = shutdown_rx.clone();
            tasks.push(tokio::spawn(async move {
                let _keep = never_tx;
                identity::supervise(
                    control_l,
                    None,
                    control_handler,
                    never_rx,
                    shutdown_rx,
                    up_tx,
                )
                .await;
            }));
        }
        tasks.push(tokio::spawn(front::serve(
            front_l,
            core.clone(),
            pg_tls,
            shutdown_rx.clone(),
        )));

        let mut emulator = Emulator {
            core: core.clone(),
            postgres: Some(pg),
            dir: Some(dir),
            ca_pem,
            ca_path,
            federated_token_file,
            gcp_key_file,
            gcp_user_file,
            pg_port,
            identity_port,
            entra_port,
            control_port,
            password,
            env: Vec::new(),
            connector,
            shutdown,
            tasks,
        };
        emulator.env = emulator.build_env();
        let _ = core.env.set(emulator.env.clone());
        core.wait_listeners(false).await?;
        if opts.faults != Faults::default() {
            emulator.set_faults(opts.faults.clone()).await?;
        }
        tracing::debug!("emulator ready after {:?}", started.elapsed());
        Ok(emulator)
    }

    /// Changes faults on the identity endpoints (`None` fields are left alone). With
    /// `down`, returns once the listeners are actually closed or open again.
    pub async fn set_faults(&self, faults: Faults) -> Result<FaultState, Error> {
        let state = self.core.shared.apply(&faults)?;
        if faults.down.is_some() {
            self.core.wait_listeners(state.down).await?;
        }
        Ok(state)
    }

    /// The fault settings in force.
    pub fn faults(&self) -> FaultState {
        self.core.shared.faults()
    }

    /// Clears counters and faults.
    pub async fn reset(&self) {
        self.core.reset().await;
    }

    /// Counters and fault settings (what `GET /stats` returns).
    pub fn stats(&self) -> Stats {
        self.core.shared.stats()
    }

    /// Restarts the real PostgreSQL server (sessions are terminated; same socket and port).
    pub async fn restart_postgres(&self) -> Result<(), Error> {
        self.postgres().restart().await
    }

    /// Mints an Entra access token signed like the emulator's tokens (or, with
    /// `wrong_key`, by a key it does not trust).
    pub fn mint_entra_token(&self, opts: MintOptions) -> String {
        self.try_mint_entra_token(opts)
            .expect("mint an entra token")
    }

    /// Like [`Emulator::mint_entra_token`], returning errors.
    pub fn try_mint_entra_token(&self, opts: MintOptions) -> Result<String, Error> {
        let core = &self.core;
        let identity = core.tenant.get(opts.identity);
        let iat = opts.issued_at.unwrap_or_else(SystemTime::now);
        let nbf = opts.not_before.unwrap_or(iat);
        let lifetime = opts
            .lifetime
            .unwrap_or_else(|| core.shared.token_lifetime());
        let audience = opts
            .audience
            .unwrap_or_else(|| core.cloud.audience().to_string());
        let key = if opts.wrong_key {
            &core.wrong_key
        } else {
            &core.key
        };
        Ok(azure::mint(
            &core.tenant,
            core.cloud,
            key,
            &azure::TokenSpec {
                identity,
                audience: &audience,
                issued_at: iat,
                not_before: nbf,
                lifetime,
                tenant_override: opts.tenant_id.as_deref(),
                oid_override: opts.object_id.as_deref(),
            },
        )?
        .0)
    }

    /// Mints a federated (service account) token the Entra endpoint accepts as
    /// `client_assertion`, valid from `issued_at` for `lifetime`.
    pub fn mint_federated_token(&self, issued_at: SystemTime, lifetime: Duration) -> String {
        mint_federated(&self.core, issued_at, lifetime).expect("mint a federated token")
    }

    /// The parameters of an RDS IAM token for `user`, signed for `127.0.0.1:<front port>`
    /// with the emulator's credentials now (tweak them to craft bad tokens).
    pub fn rds_sign_params(&self, user: &str) -> SignParams {
        SignParams {
            access_key_id: self.core.aws.access_key_id.clone(),
            secret_access_key: self.core.aws.secret_access_key.clone(),
            session_token: None,
            region: self.core.aws.region.clone(),
            host: "127.0.0.1".into(),
            port: self.pg_port,
            user: user.into(),
            time: SystemTime::now(),
            expires_in: 900,
        }
    }

    /// A valid RDS IAM token for `user`.
    pub fn rds_token(&self, user: &str) -> String {
        sign_rds_token(&self.rds_sign_params(user))
    }

    /// A `tokio_postgres` configuration for the front: `127.0.0.1`, TLS required.
    pub fn pg_config(&self, user: &str, password: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host("127.0.0.1")
            .port(self.pg_port)
            .user(user)
            .password(password)
            .dbname(DATABASE)
            .ssl_mode(tokio_postgres::config::SslMode::Require)
            .connect_timeout(Duration::from_secs(10));
        c
    }

    /// A TLS connector verifying the front against the emulator's CA (verify-full).
    pub fn tls_connector(&self) -> MakeRustlsConnect {
        self.connector.clone()
    }

    /// Logs in through the front with TLS (verify-full); the connection task is spawned.
    pub async fn connect(
        &self,
        user: &str,
        password: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) = self
            .pg_config(user, password)
            .connect(self.tls_connector())
            .await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// Stops everything and removes the temporary directories.
    pub async fn stop(mut self) -> Result<(), Error> {
        self.shutdown.send_replace(true);
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
        if let Some(pg) = self.postgres.take() {
            pg.stop().await?;
        }
        if let Some(dir) = self.dir.take() {
            dir.close()
                .map_err(Error::io("remove the temporary directory"))?;
        }
        Ok(())
    }
}

fn mint_federated(
    core: &EmulatorState,
    issued_at: SystemTime,
    lifetime: Duration,
) -> Result<String, Error> {
    let iat = unix(issued_at);
    let claims = json!({
        "aud": [FEDERATED_AUDIENCE],
        "exp": iat + lifetime.as_secs() as i64,
        "iat": iat,
        "nbf": iat,
        "iss": core.federated_issuer,
        "sub": core.federated_subject,
        "kubernetes.io": {
            "namespace": "default",
            "serviceaccount": {"name": "pgauth-workload", "uid": uuid()},
        },
    });
    core.federation_key.sign(&claims)
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        for t in &self.tasks {
            t.abort();
        }
        // `postgres` and `dir` clean up in their own Drop.
    }
}
