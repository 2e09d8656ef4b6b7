//! The roles, schema and `pgaadauth_*` shims the emulator creates in the real server. The SQL
//! is in `bootstrap.sql`; only names and identifiers are filled in here.

use super::options::{
    AWS_ROLE, AZURE_ROLE, AZURE_SYSTEM_ROLE, AZURE_USER_ROLE, AZURE_WORKLOAD_ROLE, DSQL_ADMIN_ROLE,
    DSQL_ROLE, PASSWORD_ROLE,
};
use super::scram::scram_verifier;
use crate::azure::{IdentityKind, Tenant};
use crate::gcp::GcpIdentity;

const TEMPLATE: &str = include_str!("bootstrap.sql");

fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn sql_identifier(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub(super) fn bootstrap_sql(tenant: &Tenant, gcp: &GcpIdentity, password: &str) -> String {
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
    let fill = [
        ("@tenant_id@", sql_literal(&tenant.tenant_id)),
        ("@uami@", sql_literal(AZURE_ROLE)),
        ("@system@", sql_literal(AZURE_SYSTEM_ROLE)),
        ("@workload@", sql_literal(AZURE_WORKLOAD_ROLE)),
        ("@user@", sql_literal(AZURE_USER_ROLE)),
        ("@aws_role@", AWS_ROLE.to_string()),
        ("@dsql_admin_role@", DSQL_ADMIN_ROLE.to_string()),
        ("@dsql_role@", DSQL_ROLE.to_string()),
        ("@password_role@", PASSWORD_ROLE.to_string()),
        (
            "@password_verifier@",
            sql_literal(&scram_verifier(password)),
        ),
        // Google's names hold '@' too: after every marker but the directory's.
        (
            "@gcp_vm_role@",
            sql_identifier(&gcp.metadata_account().username()),
        ),
        (
            "@gcp_key_role@",
            sql_identifier(&gcp.key_account().username()),
        ),
        ("@gcp_user_role@", sql_identifier(gcp.user().email())),
        // Last: the directory holds user principal names, whose '@' must not meet a marker.
        ("@directory@", directory.join(",\n    ")),
    ];
    fill.iter()
        .fold(TEMPLATE.to_string(), |sql, (marker, value)| {
            sql.replace(marker, value)
        })
}
