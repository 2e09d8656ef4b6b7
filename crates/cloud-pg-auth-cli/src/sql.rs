//! `pgauth sql create-role`: the SQL an administrator runs. Nothing here connects anywhere.
//!
//! Every name that reaches the SQL goes through postgres-protocol's `escape_identifier` or
//! `escape_literal` (libpq's `PQescapeIdentifier` / `PQescapeLiteral`), so a role called
//! `x"; DROP TABLE t; --` is created under exactly that name and nothing else runs. The
//! output is two transactions: creating the role, then (connected to the target database)
//! the grants, guarded so that they fail instead of landing in another database. Each cloud's
//! statements are in their own file; Google's IAM users are created with gcloud, so its
//! output is that command as a comment, then the grants.

mod aws;
mod azure;
mod gcp;
mod grants;
mod names;
#[cfg(test)]
mod tests;

use postgres_protocol::escape::escape_identifier;

use crate::args::{CreateRole, RoleMethod};
use grants::grants;
use names::check_name;

/// The SQL for `request`, or what is wrong with it.
pub(crate) fn create_role(request: &CreateRole) -> Result<String, String> {
    let name = &request.name;
    check_name("--name", "role name", name)?;
    if request.method == RoleMethod::Aws {
        cloud_pg_auth::aws::validate_username(name)
            .map_err(|e| format!("--name: {}", e.message()))?;
    }
    if let Some(oid) = &request.object_id
        && !cloud_pg_auth::azure::is_guid(oid)
    {
        return Err(format!(
            "--object-id: {oid:?} is not an object id; give the identity's object (principal) id, a GUID such as 6f1b5c1e-1234-4f00-8c4e-0a1b2c3d4e5f"
        ));
    }
    if let Some(arn) = &request.arn {
        aws::check_iam_arn(arn)?;
    }
    let database = request.database.as_deref().unwrap_or("postgres");
    check_name("--database", "database name", database)?;

    let role = escape_identifier(name);
    let mut sql = String::new();
    match request.method {
        RoleMethod::Azure => azure::create(&mut sql, request),
        RoleMethod::Aws => aws::create_rds(&mut sql, name, &role),
        RoleMethod::Dsql => aws::create_dsql(&mut sql, request, &role)?,
        RoleMethod::Gcp => gcp::create(&mut sql, request)?,
    }
    if let Some(grant) = request.grant {
        sql.push('\n');
        grants(&mut sql, &role, database, grant);
    }
    Ok(sql)
}
