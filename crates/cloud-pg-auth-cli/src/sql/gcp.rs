//! Google Cloud SQL and AlloyDB: IAM database users are created with gcloud, not SQL, so the
//! output says what to run, as comments; the grants that follow are SQL.

use std::fmt::Write as _;

use cloud_pg_auth::gcp::{GcpProduct, SERVICE_ACCOUNT_SUFFIX, strip_service_account_suffix};

use super::names::shown;
use crate::args::CreateRole;

/// Appends the gcloud lines (as comments) that create `request.name` as an IAM user and give
/// its principal the permission to log in.
pub(super) fn create(sql: &mut String, request: &CreateRole) -> Result<(), String> {
    let name = request.name.as_str();
    if let Some(stem) = strip_service_account_suffix(name).filter(|stem| !stem.is_empty()) {
        return Err(format!(
            "--name: {} keeps {SERVICE_ACCOUNT_SUFFIX}, but a service account's database user is its email without it: --name {}",
            shown(name),
            shown(stem)
        ));
    }
    if !name.contains('@') || name.chars().any(char::is_whitespace) {
        return Err(format!(
            "--name: {} is not a google principal's database user; give a service account's email without {SERVICE_ACCOUNT_SUFFIX} (app@my-project.iam) or a user's email",
            shown(name)
        ));
    }
    // A service account's user name ends in `.iam` (app@project.iam).
    let service_account = name.ends_with(".iam");
    let quoted = format!("'{}'", name.replace('\'', "'\\''"));
    let member = if service_account {
        format!("serviceAccount:{name}{SERVICE_ACCOUNT_SUFFIX}")
    } else {
        format!("user:{name}")
    };
    let member = format!("'{}'", member.replace('\'', "'\\''"));
    match request.gcp_product.unwrap_or_default() {
        GcpProduct::AlloyDb => {
            sql.push_str(
                "-- AlloyDB: the IAM database user is created with gcloud, not SQL (the instance\n\
                 -- needs the flag alloydb.iam_authentication=on; docs/gcp.md). Run:\n",
            );
            let _ = writeln!(
                sql,
                "--   gcloud alloydb users create {quoted} --cluster=CLUSTER --region=REGION --type=IAM_BASED"
            );
            sql.push_str(
                "-- The principal needs roles/alloydb.databaseUser and\n\
                 -- roles/serviceusage.serviceUsageConsumer:\n",
            );
            for role in [
                "roles/alloydb.databaseUser",
                "roles/serviceusage.serviceUsageConsumer",
            ] {
                let _ = writeln!(
                    sql,
                    "--   gcloud projects add-iam-policy-binding PROJECT --member={member} --role={role}"
                );
            }
        }
        _ => {
            let kind = if service_account {
                "cloud_iam_service_account"
            } else {
                "cloud_iam_user"
            };
            sql.push_str(
                "-- Google Cloud SQL for PostgreSQL: the IAM database user is created with gcloud, not\n\
                 -- SQL (the instance needs the flag cloudsql.iam_authentication=on; docs/gcp.md). Run:\n",
            );
            let _ = writeln!(
                sql,
                "--   gcloud sql users create {quoted} --instance=INSTANCE --type={kind}"
            );
            sql.push_str(
                "-- The principal needs roles/cloudsql.instanceUser (and roles/cloudsql.client through\n\
                 -- the Cloud SQL Auth Proxy):\n",
            );
            let _ = writeln!(
                sql,
                "--   gcloud projects add-iam-policy-binding PROJECT --member={member} --role=roles/cloudsql.instanceUser"
            );
        }
    }
    if request.grant.is_none() {
        sql.push_str(
            "-- A new IAM user may log in but owns nothing: add --grant read, write or owner for\n\
             -- the GRANT statements, run as postgres (or another role holding the privileges).\n",
        );
    }
    Ok(())
}
