//! AWS: RDS and Aurora (`GRANT rds_iam`) and Aurora DSQL (`AWS IAM GRANT`).

use std::fmt::Write as _;

use postgres_protocol::escape::escape_literal;

use super::names::shown;
use crate::args::CreateRole;

/// Appends the RDS statements: the user, granted `rds_iam`.
pub(super) fn create_rds(sql: &mut String, name: &str, role: &str) {
    sql.push_str(
        "-- AWS RDS / Aurora PostgreSQL: run as the master user (or a role with CREATEROLE),\n\
         -- with psql -v ON_ERROR_STOP=1 so that it stops at the first error.\n\
         -- The IAM policy of the application needs rds-db:connect on\n",
    );
    let _ = writeln!(
        sql,
        "-- arn:aws:rds-db:REGION:ACCOUNT:dbuser:DB-RESOURCE-ID/{name}"
    );
    sql.push_str("BEGIN;\n");
    let _ = writeln!(sql, "CREATE USER {role};");
    let _ = writeln!(sql, "GRANT rds_iam TO {role};");
    sql.push_str("COMMIT;\n");
}

/// Appends the Aurora DSQL statements: the role, mapped to `request.arn`.
pub(super) fn create_dsql(
    sql: &mut String,
    request: &CreateRole,
    role: &str,
) -> Result<(), String> {
    let arn = request
        .arn
        .as_deref()
        .ok_or("--arn: the iam arn is required")?;
    sql.push_str(
        "-- Amazon Aurora DSQL: run as admin (psql -v ON_ERROR_STOP=1). DSQL runs one DDL\n\
         -- statement per transaction, so each statement below commits on its own.\n\
         -- The IAM policy of the principal needs dsql:DbConnect on the cluster's ARN.\n",
    );
    let _ = writeln!(sql, "CREATE ROLE {role} WITH LOGIN;");
    let _ = writeln!(sql, "AWS IAM GRANT {role} TO {};", escape_literal(arn));
    sql.push_str("-- Check: SELECT * FROM sys.iam_pg_role_mappings;\n");
    Ok(())
}

/// Checks an IAM principal ARN for `AWS IAM GRANT`:
/// `arn:<partition>:iam::<12-digit account>:role/<name>` (or `user/<name>`).
pub(super) fn check_iam_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let valid = matches!(
        parts[..],
        ["arn", partition, "iam", "", account, resource]
            if partition.starts_with("aws")
                && account.len() == 12
                && account.chars().all(|c| c.is_ascii_digit())
                && (resource.starts_with("role/") || resource.starts_with("user/"))
                && resource.len() > 5
                && !resource.chars().any(|c| c.is_control() || c.is_whitespace())
    );
    if valid {
        Ok(())
    } else {
        Err(format!(
            "--arn: {} is not an iam role or user arn; give one such as arn:aws:iam::123456789012:role/app",
            shown(arn)
        ))
    }
}
