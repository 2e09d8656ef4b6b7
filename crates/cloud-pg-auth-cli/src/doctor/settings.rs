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
        AuthMethod::Aws | AuthMethod::Dsql => match settings.get_aws().resolve_region(&host) {
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
    if let Some((line, data)) = migration_identity(&settings) {
        outcome = outcome.detail(line);
        if let Some(fields) = outcome.data.as_object_mut() {
            fields.insert("migration".into(), data);
        }
    }
    if settings.get_insecure_loopback() {
        outcome = outcome.detail(
            "warning: PGAUTH_INSECURE_LOOPBACK=1 allows the token over plaintext or unverified TLS to this loopback host",
        );
    }
    state.settings = Some(settings);
    Ok(outcome)
}

/// The identity migration engines log in with, when it differs from the service's
/// (`PGAUTH_MIGRATION_USER`, `PGAUTH_MIGRATION_AZURE_CLIENT_ID`, `PGAUTH_MIGRATION_PASSWORD`):
/// a line for people and the same facts for JSON. Says whether a password is set, never
/// the password.
fn migration_identity(settings: &Settings) -> Option<(String, Value)> {
    if !settings.has_migration_identity() {
        return None;
    }
    let migrations = settings.for_migrations();
    let method = migrations.resolved_method().ok().map(AuthMethod::as_str);
    let client_id = settings.get_migration_azure_client_id();
    let password_set = settings.get_migration_password().is_some();
    let mut line = format!(
        "migrations log in as {} with method {}",
        migrations.get_user().unwrap_or("the user from their token"),
        method.unwrap_or("(unresolved)")
    );
    if let Some(id) = client_id {
        line.push_str(&format!(
            ", azure identity {id} (PGAUTH_MIGRATION_AZURE_CLIENT_ID)"
        ));
    }
    if password_set {
        line.push_str(" (PGAUTH_MIGRATION_PASSWORD set)");
    }
    let data = json!({
        "user": migrations.get_user(),
        "method": method,
        "azure_client_id": client_id,
        "password_set": password_set,
    });
    Some((line, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RDS_HOST: &str = "db.abc123.eu-west-1.rds.amazonaws.com";
    const AZURE_HOST: &str = "db.postgres.database.azure.com";
    const MIGRATION_ID: &str = "11111111-2222-3333-4444-555555555555";

    /// An environment (`PGUSER=app` added), words the line holds, and the JSON: user,
    /// method, client id, whether a password is set.
    type Case = (
        &'static [(&'static str, &'static str)],
        &'static [&'static str],
        (
            Option<&'static str>,
            &'static str,
            Option<&'static str>,
            bool,
        ),
    );

    #[test]
    fn the_migration_identity_is_shown_when_set_and_never_its_password() {
        let cases: [Case; 3] = [
            (
                &[("PGHOST", RDS_HOST), ("PGAUTH_MIGRATION_USER", "app_owner")],
                &["as app_owner with method aws"],
                (Some("app_owner"), "aws", None, false),
            ),
            (
                &[
                    ("PGHOST", AZURE_HOST),
                    ("PGAUTH_AZURE_MANAGED_IDENTITY", "1"),
                    ("PGAUTH_MIGRATION_AZURE_CLIENT_ID", MIGRATION_ID),
                ],
                &[
                    "as the user from their token with method azure",
                    "azure identity 11111111-2222-3333-4444-555555555555",
                ],
                (None, "azure", Some(MIGRATION_ID), false),
            ),
            (
                &[
                    ("PGHOST", RDS_HOST),
                    ("PGAUTH_MIGRATION_USER", "app_owner"),
                    ("PGAUTH_MIGRATION_PASSWORD", "owner-s3cret"),
                ],
                &[
                    "as app_owner with method password",
                    "PGAUTH_MIGRATION_PASSWORD set",
                ],
                (Some("app_owner"), "password", None, true),
            ),
        ];
        for (pairs, words, (user, method, client_id, password_set)) in cases {
            let mut pairs = pairs.to_vec();
            pairs.push(("PGUSER", "app"));
            let settings = Settings::from_env_vars(&Env::from_pairs(pairs.clone()))
                .unwrap_or_else(|e| panic!("{pairs:?}: {e}"));
            let (line, data) = migration_identity(&settings).expect("a migration identity");
            for words in words {
                assert!(line.contains(words), "{pairs:?}: {line}");
            }
            let expected = json!({
                "user": user,
                "method": method,
                "azure_client_id": client_id,
                "password_set": password_set,
            });
            assert_eq!(data, expected, "{pairs:?}");
            assert!(!format!("{line} {data}").contains("owner-s3cret"), "{line}");
        }
        // Nothing set: nothing shown.
        let pairs = [("PGHOST", RDS_HOST), ("PGUSER", "app")];
        let settings = Settings::from_env_vars(&Env::from_pairs(pairs)).unwrap();
        assert_eq!(migration_identity(&settings), None);
    }
}
