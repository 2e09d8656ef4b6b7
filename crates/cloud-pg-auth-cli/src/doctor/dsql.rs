//! `pgauth doctor` for Aurora DSQL: the token's host, action and region against the login.

use cloud_pg_auth::Settings;
use cloud_pg_auth::aws::dsql::{action_for, is_dsql_host};
use serde_json::json;

use super::{Failure, State, StepFinding, failure};

/// Checks what the DSQL token is signed for: the endpoint name in PGHOST (no port), the action
/// fitting the role (`admin` → `DbConnectAdmin`) and the region.
pub(super) fn step_audience(
    state: &State<'_>,
    settings: &Settings,
    host: &str,
) -> Result<StepFinding, Failure> {
    let expected_host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let expected_region = settings.get_aws().resolve_region(host).unwrap_or_default();
    let user = state.user.clone().unwrap_or_default();
    let expected_action = action_for(&user);
    let summary = &state.summary;
    let action = summary
        .fields
        .iter()
        .find(|(k, _)| *k == "action")
        .map(|(_, v)| v.as_str());
    let data = json!({
        "signed_for": summary.signed_target,
        "signed_action": action,
        "signed_region": summary.signed_region,
        "expected_host": expected_host,
        "expected_action": expected_action,
        "expected_region": expected_region,
    });
    let checks = [
        (
            "host",
            summary.signed_target.as_deref(),
            expected_host.as_str(),
            "check PGHOST: it must be the cluster endpoint name (the IP goes in PGHOSTADDR)",
        ),
        (
            "action",
            action,
            expected_action,
            "the admin role needs DbConnectAdmin and every other role DbConnect: check PGUSER",
        ),
        (
            "region",
            summary.signed_region.as_deref(),
            expected_region.as_str(),
            "check AWS_REGION: it must be the cluster's region (or unset, to read it from the endpoint name)",
        ),
    ];
    if let Some((what, got, want, fix)) = checks
        .into_iter()
        .find(|(_, got, want, _)| !got.is_some_and(|g| g.eq_ignore_ascii_case(want)))
    {
        return Err(failure(
            format!(
                "the token is signed for {what} {}, but the login is for {want}",
                got.unwrap_or("(none)")
            ),
            fix,
        )
        .data(data));
    }
    let mut outcome = StepFinding::ok(format!(
        "signed for {expected_host} ({expected_action}, user {user}) in {expected_region}, the cluster and role of this login"
    ))
    .data(data);
    if !is_dsql_host(&expected_host) {
        outcome = outcome.detail(format!(
            "{expected_host} is not an aurora dsql endpoint name: dsql routes on the tls server name and checks the token against its endpoint, so keep <cluster-id>.dsql.<region>.on.aws in PGHOST and put the address to dial in PGHOSTADDR"
        ));
    }
    Ok(outcome)
}
