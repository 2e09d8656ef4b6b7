//! `pgauth doctor` for Google Cloud SQL and AlloyDB: the token's principal and scope against
//! the login, and what the servers' refusals mean.

use cloud_pg_auth::Settings;
use serde_json::json;

use super::hints::Refusal;
use super::{Failure, State, StepFinding, failure};

/// Checks what the token is for: the product's login scope, and the principal's database
/// user against the login's (Google's tokens are opaque: the source says whose it is).
pub(super) fn step_audience(
    state: &State<'_>,
    settings: &Settings,
) -> Result<StepFinding, Failure> {
    let product = settings.get_gcp().get_product();
    let user = state.user.clone().unwrap_or_default();
    let details = state.token.as_ref().map(|t| t.details());
    let principal = details.and_then(|d| d.get_identity());
    let derived = details.and_then(|d| d.get_username());
    let data = json!({
        "product": product.as_str(),
        "scope": product.login_scope(),
        "principal": principal,
        "derived_user": derived,
        "expected_user": user,
    });
    if let Some(derived) = derived.filter(|d| *d != user) {
        return Err(failure(
            format!(
                "the token is {}'s, whose database user is {derived}, but the login is for {user}",
                principal.unwrap_or("the principal")
            ),
            format!(
                "set PGUSER={derived} (or unset PGUSER to derive it), or use the credentials of the principal of {user}"
            ),
        )
        .data(data));
    }
    let mut outcome = StepFinding::ok(format!(
        "asked with the {} login scope for {user}{}",
        product.display_name(),
        principal
            .map(|p| format!(", the database user of {p}"))
            .unwrap_or_default()
    ))
    .detail(format!(
        "scope {} (PGAUTH_GCP_PRODUCT={})",
        product.login_scope(),
        product.as_str()
    ))
    .data(data);
    if principal.is_none() {
        outcome = outcome.detail(
            "the credentials did not name their principal (PGUSER set with the metadata server, or user credentials): the server checks that PGUSER is the principal's database user",
        );
    }
    Ok(outcome)
}

/// Cloud SQL's or AlloyDB's refusal of an IAM token: what to check, in order.
pub(super) fn iam_rejected_fix(r: &Refusal<'_>) -> String {
    let user = r.user;
    let other = r
        .derived
        .filter(|d| *d != user)
        .map(|d| format!(" (this token's principal logs in as {d:?})"))
        .unwrap_or_default();
    if r.message.contains("AlloyDB") {
        format!(
            "AlloyDB refused the token; check in this order: {user:?} is an IAM database user of the cluster (pgauth sql create-role --method gcp --gcp-product alloydb --name {user} prints the gcloud line), the principal has roles/alloydb.databaseUser and roles/serviceusage.serviceUsageConsumer, the instance has alloydb.iam_authentication=on, PGAUTH_GCP_PRODUCT=alloydb (a Cloud SQL token is refused), and the token is the principal's of {user:?}{other}"
        )
    } else {
        format!(
            "Cloud SQL refused the token; check in this order: {user:?} is an IAM database user of the instance (pgauth sql create-role --method gcp --name {user} prints the gcloud line), the principal has roles/cloudsql.instanceUser (without it the server's log says \"The caller does not have permission\"), the instance has cloudsql.iam_authentication=on, PGAUTH_GCP_PRODUCT=cloudsql (an AlloyDB token is refused), and the token is the principal's of {user:?}{other}"
        )
    }
}

/// A Google token checked as a password: the user is no IAM user. (A user that keeps
/// `.gserviceaccount.com` is refused before, at the settings step.)
pub(super) fn not_iam_user_fix(r: &Refusal<'_>) -> String {
    let user = r.user;
    format!(
        "{user:?} is not an IAM database user (a built-in user checks the token as a password and fails this way); create it with gcloud: pgauth sql create-role --method gcp --name {user} prints the line"
    )
}
