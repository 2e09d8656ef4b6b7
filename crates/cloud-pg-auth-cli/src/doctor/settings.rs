//! The settings step: resolves the settings from the environment and says where each came from.

use cloud_pg_auth::{AuthMethod, Env, Settings, SslMode};
use serde_json::{Value, json};

use super::{Failure, Outcome, State, failure};

pub(super) fn step_settings(state: &mut State<'_>) -> Result<Outcome, Failure> {
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
    let host = settings.host.clone().unwrap_or_default();
    let why = if env.is_set("PGAUTH_METHOD") || settings.method != AuthMethod::Auto {
        "PGAUTH_METHOD".to_string()
    } else if settings.password.is_some() {
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
            cloud = json!(settings.azure.cloud.as_str());
            format!(
                ", cloud {} ({from}), scope {}",
                settings.azure.cloud,
                settings.azure.effective_scope()
            )
        }
        AuthMethod::Aws => match settings.aws.resolve_region(&host) {
            Ok(r) => {
                region = json!(r);
                format!(", region {r}")
            }
            Err(e) => return Err(failure(e.to_string(), "set AWS_REGION")),
        },
        _ => String::new(),
    };
    let user = settings
        .user
        .clone()
        .unwrap_or_else(|| "from the token".to_string());
    let summary = format!(
        "method {} ({why}), server {host}:{}, database {}, user {user}, sslmode {}{place}",
        method.as_str(),
        settings.port,
        settings.dbname.as_deref().unwrap_or("(the user name)"),
        mode.as_str(),
    );
    let names = env.names_read();
    let mut outcome = Outcome::ok(summary)
        .detail(format!("variables read: {}", names.join(", ")))
        .data(json!({
            "method": method.as_str(),
            "method_from": why,
            "host": host,
            "port": settings.port,
            "database": settings.dbname,
            "user": settings.user,
            "sslmode": mode.as_str(),
            "cloud": cloud,
            "region": region,
            "variables_read": names,
        }));
    if settings.insecure_loopback {
        outcome = outcome.detail(
            "warning: PGAUTH_INSECURE_LOOPBACK=1 allows the token over plaintext or unverified TLS to this loopback host",
        );
    }
    state.settings = Some(settings);
    Ok(outcome)
}
