//! The whole emulator: a real PostgreSQL server, the identity endpoints, the
//! token-checking PostgreSQL front and the control endpoint, started in-process.

use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac as _};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::NoTls;
use tokio_rustls::TlsAcceptor;

use crate::aws::{SignParams, VerifyParams, sign_rds_token, verify_rds_token};
use crate::azure::{
    self, Cloud, FEDERATED_AUDIENCE, Identity, IdentityKind, MintOptions, RoleMapping, SigningKey,
    Tenant,
};
use crate::identity::{self, Handler};
use crate::pg_tls::MakeRustlsConnect;
use crate::postgres::{PostgresServer, ServerOptions};
use crate::state::{FaultState, Faults, Shared, Stats};
use crate::tls::{self, TestCa};
use crate::util::{ct_eq, random_alnum, shell_quote, unix, uuid};
use crate::{Error, front};

/// How to start an [`Emulator`].
#[derive(Debug, Clone)]
pub struct EmulatorOptions {
    /// Which Azure cloud's audience and authority names to imitate.
    pub cloud: Cloud,
    /// Lifetime of issued Entra tokens (default 3600 s; real managed-identity tokens live
    /// about 24 h). Changeable later with the `token_lifetime` fault.
    pub token_lifetime: Duration,
    /// Clock leeway when checking Entra tokens' `nbf`/`exp` (default none).
    pub token_leeway: Duration,
    /// Extra hosts accepted as the signed host of RDS IAM tokens, besides
    /// `localhost:<port>` and `127.0.0.1:<port>`: `host:port`, or `host` for the front's port.
    pub extra_aws_signing_hosts: Vec<String>,
    /// Extra DNS names in the front's certificate, besides `localhost` and `127.0.0.1`: a
    /// cloud-looking name reached through `hostaddr=127.0.0.1` keeps `verify-full`.
    pub extra_server_names: Vec<String>,
    /// Region of the emulated RDS instance (default `us-east-1`).
    pub aws_region: String,
    /// Faults in force from the start.
    pub faults: Faults,
    /// Port of the PostgreSQL front (default: a free port).
    pub pg_port: Option<u16>,
    /// Port of the managed-identity endpoints (default: a free port).
    pub identity_port: Option<u16>,
    /// Port of the Entra endpoint (default: a free port).
    pub entra_port: Option<u16>,
    /// Port of the control endpoint (default: a free port).
    pub control_port: Option<u16>,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            cloud: Cloud::Public,
            token_lifetime: Duration::from_secs(3600),
            token_leeway: Duration::ZERO,
            extra_aws_signing_hosts: Vec::new(),
            extra_server_names: Vec::new(),
            aws_region: "us-east-1".into(),
            faults: Faults::default(),
            pg_port: None,
            identity_port: None,
            entra_port: None,
            control_port: None,
        }
    }
}

/// Names of the roles the emulator creates.
pub const AZURE_ROLE: &str = azure::UAMI_NAME;
/// Role of the system-assigned managed identity.
pub const AZURE_SYSTEM_ROLE: &str = azure::SYSTEM_NAME;
/// Role of the workload-identity / client-secret app.
pub const AZURE_WORKLOAD_ROLE: &str = azure::WORKLOAD_NAME;
/// Role of the user (UPN).
pub const AZURE_USER_ROLE: &str = azure::USER_UPN;
/// Role granted `rds_iam`.
pub const AWS_ROLE: &str = "pgauth_iam";
/// Role with a plain password.
pub const PASSWORD_ROLE: &str = "pgauth_password";
/// The database clients connect to.
pub const DATABASE: &str = "postgres";

const FEDERATED_SUBJECT: &str = "system:serviceaccount:default:pgauth-workload";

pub(crate) struct AwsSettings {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
    pub allowed_hosts: Vec<String>,
}

/// Why a login was refused.
pub(crate) struct Rejection {
    pub code: &'static str,
    pub message: String,
    pub reason: String,
}

struct RoleInfo {
    rolpassword: Option<String>,
    password_valid: bool,
    iam: bool,
    entra: Option<RoleMapping>,
}

/// State shared by the tasks of one emulator.
pub(crate) struct Core {
    pub shared: Shared,
    pub cloud: Cloud,
    pub tenant: Tenant,
    pub key: SigningKey,
    pub wrong_key: SigningKey,
    pub federation_key: SigningKey,
    pub federated_issuer: String,
    pub federated_subject: String,
    pub identity_header: String,
    pub client_secret: String,
    pub leeway: u64,
    pub aws: AwsSettings,
    pub socket_path: PathBuf,
    pub entra_port: u16,
    admin_config: tokio_postgres::Config,
    admin: tokio::sync::Mutex<Option<Arc<tokio_postgres::Client>>>,
    pub identity_up: OnceLock<Vec<watch::Receiver<bool>>>,
    pub env: OnceLock<Vec<(String, String)>>,
}

const ROLE_QUERY: &str = "SELECT a.rolpassword, \
     (a.rolvaliduntil IS NULL OR a.rolvaliduntil > now()) AS valid, \
     EXISTS (SELECT 1 FROM pg_catalog.pg_roles g WHERE g.rolname = 'rds_iam' \
             AND pg_catalog.pg_has_role(a.oid, g.oid, 'MEMBER')) AS iam, \
     p.object_id, p.object_type \
     FROM pg_catalog.pg_authid a LEFT JOIN pgaadauth.principals p ON p.roleid = a.oid \
     WHERE a.rolname = $1";

impl Core {
    pub(crate) fn authority_base(&self) -> String {
        format!("https://127.0.0.1:{}", self.entra_port)
    }

    pub(crate) fn known_tenant(&self, t: &str) -> bool {
        t.eq_ignore_ascii_case(&self.tenant.tenant_id) || t.eq_ignore_ascii_case("contoso.example")
    }

    pub(crate) fn mint_for(
        &self,
        identity: &Identity,
        audience: &str,
        iat: SystemTime,
        nbf: SystemTime,
        lifetime: Duration,
    ) -> Result<(String, i64), Error> {
        azure::mint(
            &self.tenant,
            self.cloud,
            &self.key,
            &azure::TokenSpec {
                identity,
                audience,
                issued_at: iat,
                not_before: nbf,
                lifetime,
                tenant_override: None,
                oid_override: None,
            },
        )
    }

    async fn wait_listeners(&self, down: bool) -> Result<(), Error> {
        let Some(rxs) = self.identity_up.get() else {
            return Ok(());
        };
        for rx in rxs {
            let mut rx = rx.clone();
            tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|up| *up != down))
                .await
                .map_err(|_| {
                    Error::InvalidFaults(
                        "identity listeners did not change state within 10 s".into(),
                    )
                })?
                .map_err(|_| Error::InvalidFaults("identity listener stopped".into()))?;
        }
        Ok(())
    }

    pub(crate) async fn set_faults_json(&self, v: &Value) -> Result<FaultState, Error> {
        let state = self.shared.apply_json(v)?;
        if v.get("down").is_some() {
            self.wait_listeners(state.down).await?;
        }
        Ok(state)
    }

    pub(crate) async fn reset(&self) {
        self.shared.reset();
        let _ = self.wait_listeners(false).await;
    }

    async fn admin(&self) -> Result<Arc<tokio_postgres::Client>, Error> {
        let mut g = self.admin.lock().await;
        if let Some(c) = g.as_ref()
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        let (client, conn) = self.admin_config.connect(NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let client = Arc::new(client);
        *g = Some(client.clone());
        Ok(client)
    }

    async fn lookup_role(&self, user: &str) -> Result<Option<RoleInfo>, Error> {
        let mut last = None;
        for _ in 0..2 {
            let client = self.admin().await?;
            match client.query_opt(ROLE_QUERY, &[&user]).await {
                Ok(row) => {
                    return Ok(row.map(|r| {
                        let object_id: Option<String> = r.get(3);
                        let object_type: Option<String> = r.get(4);
                        RoleInfo {
                            rolpassword: r.get(0),
                            password_valid: r.get(1),
                            iam: r.get(2),
                            entra: object_id.map(|object_id| RoleMapping {
                                object_id,
                                object_type: object_type.unwrap_or_else(|| "service".into()),
                            }),
                        }
                    }));
                }
                Err(e) => {
                    let closed = client.is_closed();
                    last = Some(e);
                    if !closed {
                        break;
                    }
                    self.admin.lock().await.take();
                }
            }
        }
        Err(last
            .map(Error::from)
            .unwrap_or_else(|| Error::Server("role lookup failed".into())))
    }

    /// Checks a login; returns the method (`entra`, `aws`, `password`).
    pub(crate) async fn authenticate(
        &self,
        user: &str,
        password: &str,
    ) -> Result<&'static str, Rejection> {
        let role = match self.lookup_role(user).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("role lookup for {user:?} failed: {e}");
                return Err(Rejection {
                    code: "57P03",
                    message: "the database system is not accepting connections".into(),
                    reason: "unavailable".into(),
                });
            }
        };
        let password_failed = |reason: &str| Rejection {
            code: "28P01",
            message: format!("password authentication failed for user \"{user}\""),
            reason: reason.into(),
        };
        let Some(role) = role else {
            return Err(password_failed("unknown_role"));
        };
        if role.iam {
            let pam = |reason: String| Rejection {
                code: "28000",
                message: format!("PAM authentication failed for user \"{user}\""),
                reason,
            };
            if password.is_empty() {
                return Err(pam("aws_malformed".into()));
            }
            let params = VerifyParams {
                access_key_id: self.aws.access_key_id.clone(),
                secret_access_key: self.aws.secret_access_key.clone(),
                region: self.aws.region.clone(),
                user: user.to_string(),
                allowed_hosts: self.aws.allowed_hosts.clone(),
                now: SystemTime::now(),
                max_expires: crate::aws::MAX_EXPIRES,
                max_future_skew: 900,
            };
            return match verify_rds_token(password, &params) {
                Ok(_) => Ok("aws"),
                Err(e) => Err(pam(format!("aws_{}", e.label()))),
            };
        }
        if password.is_empty() {
            return Err(password_failed("password"));
        }
        if let Some(mapping) = role.entra {
            return match azure::check_token(
                password,
                &[&self.key],
                &self.tenant.tenant_id,
                self.cloud,
                self.leeway,
                &mapping,
            ) {
                Ok(_) => Ok("entra"),
                Err(rej) => Err(Rejection {
                    code: "28000",
                    message: rej.message(self.cloud, user),
                    reason: rej.reason().into(),
                }),
            };
        }
        let ok = role.password_valid
            && role
                .rolpassword
                .as_deref()
                .is_some_and(|v| verify_password(v, password));
        if ok {
            Ok("password")
        } else {
            Err(password_failed("password"))
        }
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut salt1 = salt.to_vec();
    salt1.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac_sha256(password, &salt1);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac_sha256(password, &u);
        for (o, b) in out.iter_mut().zip(u.iter()) {
            *o ^= b;
        }
    }
    out
}

/// Checks a cleartext password against a `pg_authid.rolpassword` SCRAM-SHA-256 verifier.
fn verify_password(verifier: &str, password: &str) -> bool {
    let parse = || -> Option<bool> {
        let rest = verifier.strip_prefix("SCRAM-SHA-256$")?;
        let (iter_salt, keys) = rest.split_once('$')?;
        let (iterations, salt) = iter_salt.split_once(':')?;
        let (stored_key, _server_key) = keys.split_once(':')?;
        let iterations: u32 = iterations
            .parse()
            .ok()
            .filter(|i| (1..=10_000_000).contains(i))?;
        let salt = STANDARD.decode(salt).ok()?;
        let stored_key = STANDARD.decode(stored_key).ok()?;
        let salted = pbkdf2_sha256(password.as_bytes(), &salt, iterations);
        let client_key = hmac_sha256(&salted, b"Client Key");
        Some(ct_eq(&Sha256::digest(client_key), &stored_key))
    };
    parse().unwrap_or(false)
}

fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn bootstrap_sql(tenant: &Tenant, password: &str) -> String {
    let mut directory = Vec::new();
    for i in &tenant.identities {
        let upn = if i.kind == IdentityKind::User {
            sql_literal(&i.name)
        } else {
            "NULL".into()
        };
        directory.push(format!(
            "({}, {}, {}, {})",
            sql_literal(&i.object_id),
            sql_literal(&i.name),
            sql_literal(i.principal_type.as_str()),
            upn
        ));
    }
    format!(
        r#"
CREATE ROLE rds_iam NOLOGIN;
CREATE ROLE azure_pg_admin NOLOGIN;
GRANT CREATE ON SCHEMA public TO PUBLIC;
CREATE SCHEMA pgaadauth;
REVOKE ALL ON SCHEMA pgaadauth FROM PUBLIC;
CREATE TABLE pgaadauth.settings (tenant_id text NOT NULL);
INSERT INTO pgaadauth.settings VALUES ({tenant_id});
CREATE TABLE pgaadauth.directory (
    object_id text PRIMARY KEY,
    display_name text NOT NULL,
    object_type text NOT NULL CHECK (object_type IN ('user', 'group', 'service')),
    upn text
);
CREATE TABLE pgaadauth.principals (
    roleid oid PRIMARY KEY,
    rolname name NOT NULL,
    object_id text NOT NULL,
    object_type text NOT NULL,
    tenant_id text NOT NULL,
    is_admin boolean NOT NULL,
    is_mfa boolean NOT NULL
);
INSERT INTO pgaadauth.directory VALUES {directory};

CREATE FUNCTION public.pgaadauth_create_principal_with_oid(roleName text, objectId text, objectType text, isAdmin boolean, isMfa boolean)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pgaadauth AS $fn$
BEGIN
    IF objectType NOT IN ('user', 'group', 'service') THEN
        RAISE EXCEPTION 'objectType must be user, group or service, not "%"', objectType
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = roleName) THEN
        RAISE EXCEPTION 'role "%" already exists', roleName USING ERRCODE = 'duplicate_object';
    END IF;
    EXECUTE format('CREATE ROLE %I LOGIN', roleName);
    IF isAdmin THEN
        EXECUTE format('GRANT azure_pg_admin TO %I', roleName);
        EXECUTE format('ALTER ROLE %I CREATEROLE CREATEDB', roleName);
    END IF;
    INSERT INTO pgaadauth.principals (roleid, rolname, object_id, object_type, tenant_id, is_admin, is_mfa)
    SELECT r.oid, r.rolname, objectId, objectType, (SELECT s.tenant_id FROM pgaadauth.settings s LIMIT 1), isAdmin, isMfa
    FROM pg_catalog.pg_roles r WHERE r.rolname = roleName;
    RETURN format('Created role for "%s"', roleName);
END
$fn$;

CREATE FUNCTION public.pgaadauth_create_principal(roleName text, isAdmin boolean, isMfa boolean)
RETURNS text LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pgaadauth AS $fn$
DECLARE
    found_oid text;
    found_type text;
BEGIN
    SELECT d.object_id, d.object_type INTO found_oid, found_type
    FROM pgaadauth.directory d
    WHERE d.display_name = roleName OR d.upn = roleName
    LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'Could not find principal "%" in the tenant.', roleName
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN public.pgaadauth_create_principal_with_oid(roleName, found_oid, found_type, isAdmin, isMfa);
END
$fn$;

CREATE FUNCTION public.pgaadauth_list_principals(isAdmin boolean)
RETURNS TABLE (rolname name, principalType text, objectId text, tenantId text, isMfa integer, isAdmin integer)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pgaadauth AS $fn$
    SELECT r.rolname, p.object_type, p.object_id, p.tenant_id, p.is_mfa::integer, p.is_admin::integer
    FROM pgaadauth.principals p JOIN pg_catalog.pg_roles r ON r.oid = p.roleid
    WHERE NOT $1 OR p.is_admin
    ORDER BY r.rolname
$fn$;

REVOKE ALL ON FUNCTION public.pgaadauth_create_principal_with_oid(text, text, text, boolean, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION public.pgaadauth_create_principal(text, boolean, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.pgaadauth_create_principal_with_oid(text, text, text, boolean, boolean) TO azure_pg_admin;
GRANT EXECUTE ON FUNCTION public.pgaadauth_create_principal(text, boolean, boolean) TO azure_pg_admin;

SELECT public.pgaadauth_create_principal({uami}, false, false);
SELECT public.pgaadauth_create_principal({system}, false, false);
SELECT public.pgaadauth_create_principal({workload}, false, false);
SELECT public.pgaadauth_create_principal({user}, true, false);

CREATE ROLE {aws_role} LOGIN;
GRANT rds_iam TO {aws_role};
CREATE ROLE {password_role} LOGIN PASSWORD {password};
"#,
        tenant_id = sql_literal(&tenant.tenant_id),
        directory = directory.join(",\n    "),
        uami = sql_literal(AZURE_ROLE),
        system = sql_literal(AZURE_SYSTEM_ROLE),
        workload = sql_literal(AZURE_WORKLOAD_ROLE),
        user = sql_literal(AZURE_USER_ROLE),
        aws_role = AWS_ROLE,
        password_role = PASSWORD_ROLE,
        password = sql_literal(password),
    )
}

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
    core: Arc<Core>,
    postgres: Option<PostgresServer>,
    dir: Option<tempfile::TempDir>,
    ca_pem: String,
    ca_path: PathBuf,
    federated_token_file: PathBuf,
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
            ))
        });
        let (pg, keys) = tokio::join!(PostgresServer::start(ServerOptions::default()), keys);
        let pg = pg?;
        let (key, wrong_key, federation_key) =
            keys.map_err(|e| Error::Tls(format!("key generation task failed: {e}")))??;

        tracing::debug!("postgres and keys ready after {:?}", started.elapsed());
        let tenant = Tenant::generate();
        let password = random_alnum(24);
        pg.execute_admin(&bootstrap_sql(&tenant, &password)).await?;
        tracing::debug!("roles created after {:?}", started.elapsed());

        let ca = TestCa::generate();
        let mut names = vec!["localhost", "127.0.0.1"];
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

        let core = Arc::new(Core {
            shared: Shared::new(opts.token_lifetime),
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
            aws: AwsSettings {
                access_key_id: format!("AKIA{}", random_alnum(16).to_ascii_uppercase()),
                secret_access_key: random_alnum(40),
                region: opts.aws_region.clone(),
                allowed_hosts,
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
            Arc::new(move |req| Box::pin(identity::handle_managed_identity(core.clone(), req)))
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

    fn build_env(&self) -> Vec<(String, String)> {
        let uami = self.core.tenant.get(IdentityKind::UserAssigned);
        let workload = self.core.tenant.get(IdentityKind::Workload);
        let v = |k: &str, v: String| (k.to_string(), v);
        vec![
            v("PGHOST", "127.0.0.1".into()),
            v("PGPORT", self.pg_port.to_string()),
            v("PGDATABASE", DATABASE.into()),
            v("PGSSLMODE", "verify-full".into()),
            v("PGSSLROOTCERT", self.ca_path.display().to_string()),
            v("IDENTITY_ENDPOINT", self.identity_endpoint()),
            v("IDENTITY_HEADER", self.core.identity_header.clone()),
            v("AZURE_CLIENT_ID", uami.client_id.clone()),
            v("AZURE_TENANT_ID", self.core.tenant.tenant_id.clone()),
            v("AZURE_AUTHORITY_HOST", self.authority_host()),
            v(
                "AZURE_FEDERATED_TOKEN_FILE",
                self.federated_token_file.display().to_string(),
            ),
            // The Entra endpoint is served over TLS with the emulator's CA: tell the
            // library's Azure client to trust it (a corporate proxy CA goes the same way).
            v("PGAUTH_AZURE_CA_FILE", self.ca_path.display().to_string()),
            v("PGAUTH_EMULATOR_AZURE_CLOUD", self.core.cloud.name().into()),
            v("PGAUTH_EMULATOR_AZURE_ROLE", AZURE_ROLE.into()),
            v("PGAUTH_EMULATOR_AZURE_OBJECT_ID", uami.object_id.clone()),
            v(
                "PGAUTH_EMULATOR_AZURE_RESOURCE_ID",
                uami.resource_id.clone().unwrap_or_default(),
            ),
            v(
                "PGAUTH_EMULATOR_AZURE_SYSTEM_ROLE",
                AZURE_SYSTEM_ROLE.into(),
            ),
            v("PGAUTH_EMULATOR_AZURE_USER_ROLE", AZURE_USER_ROLE.into()),
            v(
                "PGAUTH_EMULATOR_AZURE_WORKLOAD_ROLE",
                AZURE_WORKLOAD_ROLE.into(),
            ),
            v(
                "PGAUTH_EMULATOR_AZURE_WORKLOAD_CLIENT_ID",
                workload.client_id.clone(),
            ),
            v(
                "PGAUTH_EMULATOR_AZURE_CLIENT_SECRET",
                self.core.client_secret.clone(),
            ),
            v("AWS_ACCESS_KEY_ID", self.core.aws.access_key_id.clone()),
            v(
                "AWS_SECRET_ACCESS_KEY",
                self.core.aws.secret_access_key.clone(),
            ),
            v("AWS_REGION", self.core.aws.region.clone()),
            v("AWS_DEFAULT_REGION", self.core.aws.region.clone()),
            v("PGAUTH_EMULATOR_AWS_ROLE", AWS_ROLE.into()),
            v("PGAUTH_EMULATOR_PASSWORD_ROLE", PASSWORD_ROLE.into()),
            v("PGAUTH_EMULATOR_PASSWORD", self.password.clone()),
            v("PGAUTH_EMULATOR_CONTROL", self.control_url()),
            v("PGAUTH_EMULATOR_IMDS_ENDPOINT", self.imds_endpoint()),
        ]
    }

    /// The exported settings, in order (what the binary prints as `export` lines).
    pub fn env(&self) -> Vec<(String, String)> {
        self.env.clone()
    }

    /// The exports as shell lines: `export NAME='value'`.
    pub fn export_lines(&self) -> Vec<String> {
        self.env
            .iter()
            .map(|(k, v)| format!("export {k}={}", shell_quote(v)))
            .collect()
    }

    /// One exported setting by name.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The CA certificate (PEM) that signed the front's and the Entra endpoint's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
    /// The file holding [`Emulator::ca_pem`] (`PGSSLROOTCERT`).
    pub fn ca_path(&self) -> &Path {
        &self.ca_path
    }
    /// The emulator's temporary directory (CA file, federated token).
    pub fn dir(&self) -> &Path {
        self.ca_path.parent().unwrap_or(Path::new("/"))
    }
    /// `127.0.0.1`.
    pub fn pg_host(&self) -> &str {
        "127.0.0.1"
    }
    /// Port of the token-checking PostgreSQL front.
    pub fn pg_port(&self) -> u16 {
        self.pg_port
    }
    /// The database (`postgres`).
    pub fn database(&self) -> &str {
        DATABASE
    }
    /// Role of the user-assigned managed identity (`AZURE_CLIENT_ID`).
    pub fn azure_role(&self) -> &str {
        AZURE_ROLE
    }
    /// Role of the system-assigned managed identity (the endpoints' default identity).
    pub fn azure_system_role(&self) -> &str {
        AZURE_SYSTEM_ROLE
    }
    /// Role of the user (`alice@contoso.example`).
    pub fn azure_user_role(&self) -> &str {
        AZURE_USER_ROLE
    }
    /// Role of the workload-identity / client-secret app.
    pub fn azure_workload_role(&self) -> &str {
        AZURE_WORKLOAD_ROLE
    }
    /// Role granted `rds_iam`.
    pub fn aws_role(&self) -> &str {
        AWS_ROLE
    }
    /// Role with a plain password.
    pub fn password_role(&self) -> &str {
        PASSWORD_ROLE
    }
    /// Password of [`Emulator::password_role`].
    pub fn password(&self) -> &str {
        &self.password
    }
    /// `IDENTITY_ENDPOINT`: `http://127.0.0.1:PORT/msi/token`.
    pub fn identity_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/msi/token", self.identity_port)
    }
    /// `IDENTITY_HEADER`.
    pub fn identity_header(&self) -> &str {
        &self.core.identity_header
    }
    /// Base URL of the IMDS protocol (`/metadata/identity/oauth2/token` below it).
    pub fn imds_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.identity_port)
    }
    /// Full URL of the IMDS token path.
    pub fn imds_token_url(&self) -> String {
        format!("{}/metadata/identity/oauth2/token", self.imds_endpoint())
    }
    /// `AZURE_AUTHORITY_HOST`: `https://127.0.0.1:PORT/`.
    pub fn authority_host(&self) -> String {
        format!("https://127.0.0.1:{}/", self.entra_port)
    }
    /// The Entra v2 token URL of the tenant.
    pub fn entra_token_url(&self) -> String {
        format!(
            "https://127.0.0.1:{}/{}/oauth2/v2.0/token",
            self.entra_port, self.core.tenant.tenant_id
        )
    }
    /// `AZURE_TENANT_ID`.
    pub fn tenant_id(&self) -> &str {
        &self.core.tenant.tenant_id
    }
    /// `AZURE_CLIENT_ID`: client id of the user-assigned managed identity.
    pub fn client_id(&self) -> &str {
        &self.core.tenant.get(IdentityKind::UserAssigned).client_id
    }
    /// Object (principal) id of the user-assigned managed identity.
    pub fn object_id(&self) -> &str {
        &self.core.tenant.get(IdentityKind::UserAssigned).object_id
    }
    /// Resource id (`msi_res_id`) of the user-assigned managed identity.
    pub fn resource_id(&self) -> &str {
        self.core
            .tenant
            .get(IdentityKind::UserAssigned)
            .resource_id
            .as_deref()
            .unwrap_or_default()
    }
    /// Client id of any identity of the tenant.
    pub fn client_id_of(&self, kind: IdentityKind) -> &str {
        &self.core.tenant.get(kind).client_id
    }
    /// Object id of any identity of the tenant.
    pub fn object_id_of(&self, kind: IdentityKind) -> &str {
        &self.core.tenant.get(kind).object_id
    }
    /// Client id of the workload-identity / client-secret app.
    pub fn workload_client_id(&self) -> &str {
        self.client_id_of(IdentityKind::Workload)
    }
    /// `AZURE_FEDERATED_TOKEN_FILE`.
    pub fn federated_token_file(&self) -> &Path {
        &self.federated_token_file
    }
    /// Client secret of the workload app (not exported as `AZURE_CLIENT_SECRET`).
    pub fn client_secret(&self) -> &str {
        &self.core.client_secret
    }
    /// `AWS_ACCESS_KEY_ID`.
    pub fn aws_access_key_id(&self) -> &str {
        &self.core.aws.access_key_id
    }
    /// `AWS_SECRET_ACCESS_KEY`.
    pub fn aws_secret_access_key(&self) -> &str {
        &self.core.aws.secret_access_key
    }
    /// `AWS_REGION`.
    pub fn aws_region(&self) -> &str {
        &self.core.aws.region
    }
    /// Signed `host:port` values accepted in RDS tokens.
    pub fn aws_signing_hosts(&self) -> &[String] {
        &self.core.aws.allowed_hosts
    }
    /// Base URL of the control endpoint.
    pub fn control_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.control_port)
    }
    /// The cloud imitated.
    pub fn cloud(&self) -> Cloud {
        self.core.cloud
    }
    /// The real PostgreSQL server behind the front.
    pub fn postgres(&self) -> &PostgresServer {
        self.postgres.as_ref().expect("postgres runs until stop")
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

fn mint_federated(core: &Core, issued_at: SystemTime, lifetime: Duration) -> Result<String, Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scram_verifier_checks_password() {
        // Verifier for password "secret" (salt "c2FsdA==", 4096 iterations), computed here.
        let salt = b"salt";
        let salted = pbkdf2_sha256(b"secret", salt, 4096);
        let stored = Sha256::digest(hmac_sha256(&salted, b"Client Key"));
        let server = hmac_sha256(&salted, b"Server Key");
        let verifier = format!(
            "SCRAM-SHA-256$4096:{}${}:{}",
            STANDARD.encode(salt),
            STANDARD.encode(stored),
            STANDARD.encode(server)
        );
        assert!(verify_password(&verifier, "secret"));
        assert!(!verify_password(&verifier, "Secret"));
        assert!(!verify_password("md5abc", "secret"));
    }

    #[test]
    fn pbkdf2_matches_rfc7914_vector() {
        // RFC 7914 section 11: PBKDF2-HMAC-SHA256("passwd", "salt", 1), first 32 bytes.
        let out = pbkdf2_sha256(b"passwd", b"salt", 1);
        assert_eq!(
            hex::encode(out),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
    }
}
