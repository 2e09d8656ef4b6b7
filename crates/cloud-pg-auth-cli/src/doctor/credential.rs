//! The credential, token and audience steps: the cloud credential, the token it gives, and
//! whether that token is made for this server and login.

use cloud_pg_auth::azure::{AzureCloud, cloud_for_host};
use cloud_pg_auth::engine::chain_text;
use cloud_pg_auth::{AuthMethod, Error, TokenErrorKind};
use serde_json::json;

use super::{Failure, State, StepFinding, error_failure, failure, resolved_settings};
use crate::session;

pub(super) async fn step_credential(state: &mut State<'_>) -> Result<StepFinding, Failure> {
    let settings = resolved_settings(state).clone();
    let source = session::source(&settings)
        .await
        .map_err(|e| error_failure(&e, "check the credential settings named above"))?;
    let info = source.info();
    let mut summary = info.label();
    if let Some(identity) = info.get_identity() {
        summary.push_str(&format!(", identity {identity}"));
    }
    let mut outcome = StepFinding::ok(summary).data(json!({
        "method": info.get_method(),
        "credential_kind": info.get_credential_kind(),
        "identity": info.get_identity(),
        "endpoint": info.get_endpoint(),
        "cloud": info.get_cloud(),
    }));
    if state.method == AuthMethod::Azure
        && settings.get_azure().get_credential() == cloud_pg_auth::azure::AzureCredentialKind::Auto
    {
        outcome = outcome.detail(
            "picked by PGAUTH_AZURE_CREDENTIAL=auto (workload identity, then managed identity, client secret, azure cli); set it to pin one",
        );
    }
    let auth = session::auth(&settings, source)
        .await
        .map_err(|e| error_failure(&e, "check the credential settings named above"))?;
    state.auth = Some(auth);
    Ok(outcome)
}

pub(super) async fn step_token(state: &mut State<'_>) -> Result<StepFinding, Failure> {
    let auth = state.auth.clone().expect("credential step passed");
    let token = auth
        .token()
        .await
        .map_err(|e| token_failure(&e, state.method))?;
    let summary = session::summarize(state.method, &token, state.now);
    let settings = resolved_settings(state);
    let mut outcome = StepFinding::ok(summary.line()).data(summary.to_json());
    let user = match session::login_user(settings, &token) {
        Ok(user) => user,
        Err(e) => {
            // A service principal's token carries ids but no name: only the settings can say.
            return Err(failure(
                chain_text(&e),
                "set PGUSER to the role name of this identity: for a service principal (client secret, workload identity app), its display name in Entra, the name given to pgaadauth_create_principal",
            )
            .detail(summary.line())
            .data(json!({"setting": "PGUSER"})));
        }
    };
    if let Some(warning) = cloud_pg_auth::azure::guid_username_warning(&user, token.details()) {
        outcome = outcome.detail(format!("warning: {warning}"));
    }
    if settings.get_user().is_none() {
        outcome = outcome.detail(format!(
            "login role {user:?}, derived from the token (PGUSER is not set)"
        ));
    } else if let Some(derived) = token.details().get_username()
        && derived != user
    {
        outcome = outcome.detail(format!(
            "note: PGUSER is {user:?} but the token's identity is named {derived:?}; the role must be mapped to this identity"
        ));
    }
    state.user = Some(user);
    state.token = Some(token);
    state.summary = summary;
    Ok(outcome)
}

pub(super) fn step_audience(state: &mut State<'_>) -> Result<StepFinding, Failure> {
    let settings = resolved_settings(state);
    let host = settings.get_host().unwrap_or_default().to_string();
    match state.method {
        AuthMethod::Azure => {
            let (cloud, from) = match cloud_for_host(&host) {
                Some(c) => (c, format!("the host name {host}")),
                None if state.env.is_set("PGAUTH_AZURE_CLOUD") => (
                    settings.get_azure().get_cloud(),
                    "PGAUTH_AZURE_CLOUD".to_string(),
                ),
                None => (
                    settings.get_azure().get_cloud(),
                    "the default, as the host name does not say".to_string(),
                ),
            };
            let expected = cloud.audience();
            let Some(aud) = state.summary.audience.clone() else {
                return Err(failure(
                    "the token has no aud claim; it is not an Entra access token for a resource",
                    "check PGAUTH_AZURE_SCOPE and the credential: the token must be an access token for Azure Database for PostgreSQL",
                ));
            };
            let data = json!({"aud": aud, "expected": expected, "server_cloud": cloud.as_str(), "server_cloud_from": from});
            if same_audience(&aud, expected) {
                let mut outcome = StepFinding::ok(format!(
                    "aud {aud} is Azure Database for PostgreSQL in the {cloud} cloud, the server's cloud (from {from})"
                ))
                .data(data);
                if cloud_for_host(&host).is_none() {
                    outcome = outcome.detail(format!(
                        "the host {host} does not name a cloud: a server in another cloud refuses this token at login (\"does not have a valid audience claim\")"
                    ));
                }
                return Ok(outcome);
            }
            let fix = match AzureCloud::ALL
                .into_iter()
                .find(|c| same_audience(&aud, c.audience()))
            {
                Some(other) if state.env.is_set("PGAUTH_AZURE_SCOPE") => format!(
                    "PGAUTH_AZURE_SCOPE asks for the {other} cloud's audience; unset PGAUTH_AZURE_SCOPE (or set PGAUTH_AZURE_CLOUD={cloud})"
                ),
                Some(_) => format!("set PGAUTH_AZURE_CLOUD={cloud}"),
                None => format!(
                    "the token is for another resource ({}); unset PGAUTH_AZURE_SCOPE or set it to {} (with the Azure CLI: az account get-access-token --resource-type oss-rdbms)",
                    describe_resource(&aud),
                    cloud.scope()
                ),
            };
            Err(failure(
                format!(
                    "the token's audience is {aud}, but the server (the {cloud} cloud, from {from}) accepts only {expected}"
                ),
                fix,
            )
            .data(data))
        }
        AuthMethod::Aws => {
            // The token is signed for PGHOST, the name TLS verifies; PGHOSTADDR only
            // changes the address dialled.
            let expected_host = host.clone();
            let expected_host = if expected_host.parse::<std::net::Ipv6Addr>().is_ok() {
                format!("[{expected_host}]")
            } else {
                expected_host
            };
            let expected_target = format!(
                "{expected_host}:{}",
                settings
                    .get_aws()
                    .get_signing_port()
                    .unwrap_or(settings.get_port())
            );
            let expected_region = settings.get_aws().resolve_region(&host).unwrap_or_default();
            let user = state.user.clone().unwrap_or_default();
            let summary = &state.summary;
            let data = json!({
                "signed_for": summary.signed_target,
                "signed_user": summary.signed_user,
                "signed_region": summary.signed_region,
                "expected_target": expected_target,
                "expected_user": user,
                "expected_region": expected_region,
            });
            let mismatch = [
                (
                    "host:port",
                    summary.signed_target.as_deref(),
                    expected_target.as_str(),
                    "PGHOST / PGAUTH_AWS_SIGNING_PORT",
                ),
                (
                    "user",
                    summary.signed_user.as_deref(),
                    user.as_str(),
                    "PGUSER",
                ),
                (
                    "region",
                    summary.signed_region.as_deref(),
                    expected_region.as_str(),
                    "AWS_REGION",
                ),
            ]
            .into_iter()
            .find(|(_, got, want, _)| !got.is_some_and(|g| g.eq_ignore_ascii_case(want)));
            if let Some((what, got, want, setting)) = mismatch {
                return Err(failure(
                    format!(
                        "the token is signed for {what} {}, but the login is for {want}",
                        got.unwrap_or("(none)")
                    ),
                    format!("check {setting}"),
                )
                .data(data));
            }
            let mut outcome = StepFinding::ok(format!(
                "signed for {expected_target} as {user} in {expected_region}, the server and user of this login"
            ))
            .data(data);
            if !cloud_pg_auth::aws::is_rds_host(&expected_host) {
                outcome = outcome.detail(format!(
                    "{expected_host} is not an RDS endpoint name: RDS checks the token against its own endpoint, so through a tunnel or proxy keep the instance's endpoint in PGHOST and put the address to dial in PGHOSTADDR"
                ));
            }
            Ok(outcome)
        }
        AuthMethod::Dsql => super::dsql::step_audience(state, settings, &host),
        AuthMethod::Gcp => super::gcp::step_audience(state, settings),
        _ => Ok(StepFinding::skipped(
            "not a token method: the password is sent as it is",
        )),
    }
}

pub(super) fn same_audience(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

fn describe_resource(aud: &str) -> String {
    let known = [
        ("https://database.windows.net", "Azure SQL Database"),
        ("https://management.azure.com", "Azure Resource Manager"),
        (
            "https://management.core.windows.net",
            "Azure Resource Manager",
        ),
        ("https://graph.microsoft.com", "Microsoft Graph"),
        (
            "https://ossrdbms-aad.database.windows.net",
            "Azure Database for PostgreSQL, public cloud",
        ),
    ];
    match known.iter().find(|(a, _)| same_audience(aud, a)) {
        Some((_, name)) => format!("{aud}, {name}"),
        None => aud.to_string(),
    }
}

fn token_failure(error: &Error, method: AuthMethod) -> Failure {
    let Error::Token(token) = error else {
        return error_failure(error, "see the message above");
    };
    let fix = match (method, token.kind()) {
        (_, TokenErrorKind::Throttled) => {
            "the identity endpoint asks to slow down; wait a little and run again".to_string()
        }
        (AuthMethod::Azure, TokenErrorKind::Rejected) => "the identity endpoint refused: check that the identity exists and is assigned to this resource (AZURE_CLIENT_ID names a user-assigned identity attached to it), the tenant and client id, and for workload identity the federated credential's issuer and subject".to_string(),
        (AuthMethod::Azure, TokenErrorKind::Transient) => "the identity endpoint did not answer properly: check that this runs where the identity exists (IDENTITY_ENDPOINT on App Service / Container Apps; PGAUTH_AZURE_MANAGED_IDENTITY=1 on a VM), or on a laptop run az login".to_string(),
        (AuthMethod::Gcp, TokenErrorKind::Config) => "see the message above: it names the setting or credentials file to fix".to_string(),
        (AuthMethod::Gcp, _) => "no google token: on google cloud check the service account attached to the workload (GKE: workload identity binding) and GCE_METADATA_HOST; elsewhere set GOOGLE_APPLICATION_CREDENTIALS to a key file or run gcloud auth application-default login".to_string(),
        (AuthMethod::Aws | AuthMethod::Dsql, _) => "no usable AWS credentials: check AWS_PROFILE (aws sso login), the instance or task role, or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY".to_string(),
        _ => "see the message above".to_string(),
    };
    failure(token.chain_text(), fix).data(json!({"origin": token.origin()}))
}
