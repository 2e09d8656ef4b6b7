//! The settings step: resolves the settings from the environment and says where each came from.

use cloud_pg_auth::{AuthMethod, Env, Settings, SslMode};
use serde_json::{Value, json};

use super::{Failure, State, StepFinding, failure};

pub(super) fn step_settings(state: &mut State<'_>) -> Result<StepFinding, Failure> {
    let env = state.env;
    let read = |env: &Env| env.names_read().join(", ");
    let settings = Settings::from_env_vars(env).map_err(|e| {
        failure(
            e.to_string(),
            format!(
                "change {}: {}",
                e.setting(),
                e.message()
                    .rsplit_once("; ")
                    .map_or(e.message(), |(_, advice)| advice)
            ),
        )
        .detail(format!("variables read: {}", read(env)))
        .data(json!({"setting": e.setting()}))
    })?;
    let method = settings
        .resolved_method()
        .map_err(|e| failure(e.to_string(), format!("change {}", e.setting())))?;
    state.method = method;
    let host = settings.get_host().unwrap_or_default().to_string();
    let why = if env.is_set("PGAUTH_METHOD") || settings.get_method() != AuthMethod::Auto {
        "PGAUTH_METHOD".to_string()
    } else if settings.get_password().is_some() {
        "auto: a password is set".to_string()
    } else {
        "auto: the host name".to_string()
    };
    let mode = settings.effective_ssl_mode().unwrap_or(SslMode::VerifyFull);
    let mut cloud = Value::Null;
    let mut region = Value::Null;
    let place = match method {
        AuthMethod::Azure => {
            let from = if env.is_set("PGAUTH_AZURE_CLOUD") {
                "PGAUTH_AZURE_CLOUD"
            } else {
                "default"
            };
            cloud = json!(settings.get_azure().get_cloud().as_str());
            format!(
                ", cloud {} ({from}), scope {}",
                settings.get_azure().get_cloud(),
                settings.get_azure().effective_scope()
            )
        }
        AuthMethod::Aws => match settings.get_aws().resolve_region(&host) {
            Ok(r) => {
                region = json!(r);
                format!(", region {r}")
            }
            Err(e) => return Err(failure(e.to_string(), "set AWS_REGION")),
        },
        _ => String::new(),
    };
    let user = settings.get_user().unwrap_or("from the token");
    let summary = format!(
        "method {} ({why}), server {host}:{}, database {}, user {user}, sslmode {}{place}",
        method.as_str(),
        settings.get_port(),
        settings.get_dbname().unwrap_or("(the user name)"),
        mode.as_str(),
    );
    let names = env.names_read();
    let mut outcome = StepFinding::ok(summary)
        .detail(format!("variables read: {}", names.join(", ")))
        .data(json!({
            "method": method.as_str(),
            "method_from": why,
            "host": host,
            "port": settings.get_port(),
            "database": settings.get_dbname(),
            "user": settings.get_user(),
            "sslmode": mode.as_str(),
            "cloud": cloud,
            "region": region,
            "variables_read": names,
        }));
    if settings.get_insecure_loopback() {
        outcome = outcome.detail(
            "warning: PGAUTH_INSECURE_LOOPBACK=1 allows the token over plaintext or unverified TLS to this loopback host",
        );
    }
    state.settings = Some(settings);
    Ok(outcome)
}
