//! What an emulator tells its users: the exported settings, names, endpoints and keys, and
//! tokens minted the way the clouds would.

use std::path::Path;

use super::*;
use crate::aws::dsql::{DsqlSignParams, action_for, sign_dsql_token};
use crate::gcp::GcpIdentity;

/// The emulated Aurora DSQL cluster endpoint in `region`: `<cluster-id>.dsql.<region>.on.aws`.
/// Its name is in the front's certificate; dial it with `hostaddr=127.0.0.1`.
pub(super) fn dsql_host(region: &str) -> String {
    format!("{DSQL_CLUSTER_ID}.dsql.{region}.on.aws")
}

impl Emulator {
    pub(super) fn build_env(&self) -> Vec<(String, String)> {
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
            v("PGAUTH_EMULATOR_DSQL_HOST", self.dsql_host()),
            v("PGAUTH_EMULATOR_DSQL_ROLE", DSQL_ROLE.into()),
            v("PGAUTH_EMULATOR_DSQL_ADMIN_ROLE", DSQL_ADMIN_ROLE.into()),
            // Google: the metadata server only. GOOGLE_APPLICATION_CREDENTIALS is not exported,
            // since it would win over the metadata server; the files are named instead.
            v("GCE_METADATA_HOST", self.gcp_metadata_host()),
            v("PGAUTH_EMULATOR_GCP_ROLE", self.gcp_role()),
            v(
                "PGAUTH_EMULATOR_GCP_KEY_FILE",
                self.gcp_key_file.display().to_string(),
            ),
            v("PGAUTH_EMULATOR_GCP_KEY_ROLE", self.gcp_key_role()),
            v(
                "PGAUTH_EMULATOR_GCP_USER_FILE",
                self.gcp_user_file.display().to_string(),
            ),
            v("PGAUTH_EMULATOR_GCP_USER", self.gcp_user().into()),
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
    /// The Aurora DSQL cluster endpoint the front answers for
    /// (`PGAUTH_EMULATOR_DSQL_HOST`, `<cluster-id>.dsql.<region>.on.aws`): put it in `host`
    /// and `127.0.0.1` in `hostaddr`; the certificate names it, so `verify-full` holds.
    pub fn dsql_host(&self) -> String {
        dsql_host(&self.core.aws.region)
    }
    /// Role mapped for DSQL tokens with `DbConnect` (`PGAUTH_EMULATOR_DSQL_ROLE`).
    pub fn dsql_role(&self) -> &str {
        DSQL_ROLE
    }
    /// DSQL's `admin` role, whose tokens use `DbConnectAdmin`.
    pub fn dsql_admin_role(&self) -> &str {
        DSQL_ADMIN_ROLE
    }
    /// The parameters of a DSQL token for `user` (the action fitting the role), signed for
    /// [`Emulator::dsql_host`] with the emulator's credentials now, valid 900 s (tweak them to
    /// craft bad tokens).
    pub fn dsql_sign_params(&self, user: &str) -> DsqlSignParams {
        DsqlSignParams {
            access_key_id: self.core.aws.access_key_id.clone(),
            secret_access_key: self.core.aws.secret_access_key.clone(),
            session_token: None,
            region: self.core.aws.region.clone(),
            host: self.dsql_host(),
            action: action_for(user).into(),
            time: SystemTime::now(),
            expires_in: 900,
        }
    }
    /// A valid DSQL token for `user`.
    pub fn dsql_token(&self, user: &str) -> String {
        sign_dsql_token(&self.dsql_sign_params(user))
    }
    /// Google's principals and the tokens issued (the metadata server's and the token
    /// endpoint's state; [`GcpIdentity::check`] applies the front's check).
    pub fn gcp(&self) -> &GcpIdentity {
        &self.core.gcp
    }
    /// `GCE_METADATA_HOST`: `127.0.0.1:<identity port>`, where the metadata server and the
    /// token endpoint (`/token`) are served.
    pub fn gcp_metadata_host(&self) -> String {
        format!("127.0.0.1:{}", self.identity_port)
    }
    /// The IAM database user of the metadata server's service account
    /// (`PGAUTH_EMULATOR_GCP_ROLE`, `emulator-vm@pgauth-emulator.iam`): a Cloud SQL and
    /// AlloyDB user.
    pub fn gcp_role(&self) -> String {
        self.core.gcp.metadata_account().username()
    }
    /// A service account key file (`PGAUTH_EMULATOR_GCP_KEY_FILE`) whose `token_uri` is the
    /// emulator's: the value for `GOOGLE_APPLICATION_CREDENTIALS`.
    pub fn gcp_key_file(&self) -> &Path {
        &self.gcp_key_file
    }
    /// The IAM database user of the key file's service account
    /// (`PGAUTH_EMULATOR_GCP_KEY_ROLE`).
    pub fn gcp_key_role(&self) -> String {
        self.core.gcp.key_account().username()
    }
    /// A user credentials file (`authorized_user`, `PGAUTH_EMULATOR_GCP_USER_FILE`), as gcloud
    /// writes it, with the emulator's `token_uri`.
    pub fn gcp_user_file(&self) -> &Path {
        &self.gcp_user_file
    }
    /// The user of [`Emulator::gcp_user_file`], also its database user
    /// (`PGAUTH_EMULATOR_GCP_USER`).
    pub fn gcp_user(&self) -> &str {
        self.core.gcp.user().email()
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
}
