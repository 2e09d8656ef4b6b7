//! The state shared by the emulator's tasks, and the login checks of the PostgreSQL front
//! (roles, passwords, Entra mappings, `rds_iam`, Aurora DSQL's `dsql_iam`).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::sync::watch;
use tokio_postgres::NoTls;

use super::scram::verify_password;
use crate::Error;
use crate::aws::dsql::{self, DsqlVerifyParams, verify_dsql_token};
use crate::aws::{VerifyParams, verify_rds_token};
use crate::azure::{self, Cloud, Identity, RoleMapping, SigningKey, Tenant};
use crate::gcp::{GcpIdentity, GcpProduct};
use crate::state::{ControlState, FaultState};

pub(crate) struct AwsSettings {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
    pub allowed_hosts: Vec<String>,
    /// The emulated Aurora DSQL cluster endpoints (no port).
    pub dsql_hosts: Vec<String>,
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
    dsql: bool,
    /// Member of `cloudsql_iam` / `alloydb_iam`: an IAM database user of that product.
    cloudsql: bool,
    alloydb: bool,
    entra: Option<RoleMapping>,
}

/// State shared by the tasks of one emulator.
pub(crate) struct EmulatorState {
    pub shared: ControlState,
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
    /// Google's principals and the tokens issued (Cloud SQL and AlloyDB).
    pub gcp: GcpIdentity,
    pub aws: AwsSettings,
    pub socket_path: PathBuf,
    pub entra_port: u16,
    pub(super) admin_config: tokio_postgres::Config,
    pub(super) admin: tokio::sync::Mutex<Option<Arc<tokio_postgres::Client>>>,
    pub identity_up: OnceLock<Vec<watch::Receiver<bool>>>,
    pub env: OnceLock<Vec<(String, String)>>,
}

const ROLE_QUERY: &str = "SELECT a.rolpassword, \
     (a.rolvaliduntil IS NULL OR a.rolvaliduntil > now()) AS valid, \
     EXISTS (SELECT 1 FROM pg_catalog.pg_roles g WHERE g.rolname = 'rds_iam' \
             AND pg_catalog.pg_has_role(a.oid, g.oid, 'MEMBER')) AS iam, \
     EXISTS (SELECT 1 FROM pg_catalog.pg_roles g WHERE g.rolname = 'dsql_iam' \
             AND pg_catalog.pg_has_role(a.oid, g.oid, 'MEMBER')) AS dsql, \
     EXISTS (SELECT 1 FROM pg_catalog.pg_roles g WHERE g.rolname = 'cloudsql_iam' \
             AND pg_catalog.pg_has_role(a.oid, g.oid, 'MEMBER')) AS cloudsql, \
     EXISTS (SELECT 1 FROM pg_catalog.pg_roles g WHERE g.rolname = 'alloydb_iam' \
             AND pg_catalog.pg_has_role(a.oid, g.oid, 'MEMBER')) AS alloydb, \
     p.object_id, p.object_type \
     FROM pg_catalog.pg_authid a LEFT JOIN pgaadauth.principals p ON p.roleid = a.oid \
     WHERE a.rolname = $1";

impl EmulatorState {
    /// An Aurora DSQL login: a token for this cluster (the name the client's TLS named), the
    /// role's action, the region, unexpired. Every refusal reads as DSQL's.
    fn check_dsql(
        &self,
        user: &str,
        password: &str,
        sni: Option<&str>,
    ) -> Result<&'static str, Rejection> {
        let denied = |reason: &str| Rejection {
            code: "28000",
            message: dsql::ACCESS_DENIED.into(),
            reason: format!("dsql_{reason}"),
        };
        // DSQL routes on SNI: without it, or with another cluster's name, no cluster answers.
        let Some(sni) = sni.filter(|s| {
            self.aws
                .dsql_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(s))
        }) else {
            return Err(denied("sni"));
        };
        let params = DsqlVerifyParams {
            access_key_id: self.aws.access_key_id.clone(),
            secret_access_key: self.aws.secret_access_key.clone(),
            region: self.aws.region.clone(),
            user: user.to_string(),
            allowed_hosts: vec![sni.to_string()],
            now: SystemTime::now(),
            max_expires: dsql::MAX_EXPIRES,
            max_future_skew: 900,
        };
        match verify_dsql_token(password, &params) {
            Ok(_) => Ok("dsql"),
            Err(e) => Err(denied(e.label())),
        }
    }

    /// A Cloud SQL or AlloyDB IAM login: a token Google issued (here: this emulator), with
    /// a login scope of a product the role is an IAM user of, for the role's principal. A
    /// role of both products takes either; a refusal reads as the product the token was
    /// asked for (its scope) would word it.
    fn check_gcp(
        &self,
        user: &str,
        password: &str,
        cloudsql: bool,
        alloydb: bool,
    ) -> Result<&'static str, Rejection> {
        let products = [
            (cloudsql, GcpProduct::CloudSql),
            (alloydb, GcpProduct::AlloyDb),
        ];
        let mut refusals = Vec::new();
        for (member, product) in products {
            if !member {
                continue;
            }
            match self.gcp.check(password, user, product) {
                Ok(_) => {
                    return Ok(match product {
                        GcpProduct::AlloyDb => "gcp_alloydb",
                        _ => "gcp_cloudsql",
                    });
                }
                Err(rejection) => refusals.push((product, rejection)),
            }
        }
        // A scope refusal means the token was meant for the other product: report the other.
        let (product, rejection) = refusals
            .iter()
            .find(|(_, r)| !matches!(r, crate::gcp::GcpRejection::Scope { .. }))
            .or(refusals.first())
            .cloned()
            .expect("the role is an iam user of at least one product");
        tracing::debug!("{} login refused: {}", product.as_str(), rejection.detail());
        Err(Rejection {
            code: rejection.code(),
            message: rejection.message(product, user),
            reason: rejection.reason().into(),
        })
    }

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

    pub(super) async fn wait_listeners(&self, down: bool) -> Result<(), Error> {
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
                        let object_id: Option<String> = r.get(6);
                        let object_type: Option<String> = r.get(7);
                        RoleInfo {
                            rolpassword: r.get(0),
                            password_valid: r.get(1),
                            iam: r.get(2),
                            dsql: r.get(3),
                            cloudsql: r.get(4),
                            alloydb: r.get(5),
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

    /// Checks a login; returns the method (`entra`, `aws`, `dsql`, `gcp_cloudsql`,
    /// `gcp_alloydb`, `password`). `sni` is the
    /// TLS server name the client sent, which DSQL routes on.
    pub(crate) async fn authenticate(
        &self,
        user: &str,
        password: &str,
        sni: Option<&str>,
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
        if role.dsql {
            return self.check_dsql(user, password, sni);
        }
        if role.cloudsql || role.alloydb {
            return self.check_gcp(user, password, role.cloudsql, role.alloydb);
        }
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
