//! How an emulator is started, and the names of the roles and database it creates.

use std::time::Duration;

use crate::azure::{self, Cloud};
use crate::state::Faults;

/// How to start an [`Emulator`](crate::Emulator).
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
/// Role mapped for Aurora DSQL tokens (`DbConnect`), as `AWS IAM GRANT` would map it.
pub const DSQL_ROLE: &str = "pgauth_dsql";
/// DSQL's built-in role, whose tokens use `DbConnectAdmin`.
pub const DSQL_ADMIN_ROLE: &str = crate::aws::dsql::ADMIN_ROLE;
/// The emulated DSQL cluster's id (26 characters, as real ids).
pub const DSQL_CLUSTER_ID: &str = "pgauthemulatorcluster00001";
/// Role with a plain password.
pub const PASSWORD_ROLE: &str = "pgauth_password";
/// The database clients connect to.
pub const DATABASE: &str = "postgres";

pub(crate) const FEDERATED_SUBJECT: &str = "system:serviceaccount:default:pgauth-workload";
