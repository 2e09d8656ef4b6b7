//! The login, current_user and roles steps: a real login with the token, then who the
//! session is and what it may do.

use cloud_pg_auth::engine::chain_text;
use cloud_pg_auth::{AuthMethod, Error, PgConnector};
use serde_json::json;

use super::hints::{self, Refusal};
use super::{Failure, State, StepFinding, error_failure, failure, resolved_settings};

pub(super) async fn step_login(state: &mut State<'_>) -> Result<StepFinding, Failure> {
    let settings = resolved_settings(state).clone();
    let auth = state.auth.clone().expect("credential step passed");
    let user = state.user.clone().unwrap_or_default();
    let connector = PgConnector::new(&settings, auth)
        .map_err(|e| error_failure(&e, "check the settings named above"))?;
    match connector.connect().await {
        Ok((client, _task)) => {
            state.client = Some(client);
            Ok(StepFinding::ok(format!(
                "logged in as {user} to database {}",
                settings.get_dbname().unwrap_or(&user)
            )))
        }
        Err(error) => Err(login_failure(state, &error, &user)),
    }
}

/// What the server said, from the driver's error.
fn server_error(error: &Error) -> Option<(String, String, String)> {
    let Error::Connect { source, .. } = error else {
        return None;
    };
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
    while let Some(cause) = next {
        if let Some(db) = cause
            .downcast_ref::<cloud_pg_auth::tokio_postgres::Error>()
            .and_then(|e| e.as_db_error())
        {
            return Some((
                db.severity().to_string(),
                db.code().code().to_string(),
                db.message().to_string(),
            ));
        }
        next = cause.source();
    }
    None
}

/// The refused login explained: what the server said, and the hint for it.
fn login_failure(state: &State<'_>, error: &Error, user: &str) -> Failure {
    let settings = resolved_settings(state);
    let Some((severity, code, message)) = server_error(error) else {
        return error_failure(
            error,
            "the TLS step passed, so the server was reachable: retry, and check the server's log",
        );
    };
    let said = format!("the server said: {severity} {code} {message}");
    let oid = state.token.as_ref().and_then(|t| {
        cloud_pg_auth::azure::JwtClaims::parse(t.secret().expose()).and_then(|c| c.oid)
    });
    let derived = state
        .token
        .as_ref()
        .and_then(|t| t.details().get_username());
    let database = settings.get_dbname().unwrap_or(user);
    let (cause, fix) = hints::explain(&Refusal {
        sqlstate: &code,
        message: &message,
        method: state.method,
        user,
        database,
        oid: oid.as_deref(),
        derived,
        env: state.env,
    });
    failure(said, fix).data(json!({
        "severity": severity,
        "sqlstate": code,
        "message": message,
        "cause": cause,
        "user": user,
    }))
}

pub(super) async fn step_current_user(state: &mut State<'_>) -> Result<StepFinding, Failure> {
    let client = state.client.as_ref().expect("login step passed");
    let expected = state.user.clone().unwrap_or_default();
    let row = client
        .query_one(
            "SELECT current_user::text, session_user::text, current_database()::text, current_setting('server_version')",
            &[],
        )
        .await
        .map_err(|e| failure(format!("the query failed: {}", chain_text(&e)), "check the server's log"))?;
    let current: String = row.get(0);
    let session: String = row.get(1);
    let database: String = row.get(2);
    let version: String = row.get(3);
    let data = json!({"current_user": current, "session_user": session, "database": database, "server_version": version});
    if current != expected {
        return Err(failure(
            format!("current_user is {current:?}, expected {expected:?}"),
            "something between this client and the server (a pooler's user mapping, a login trigger or ALTER ROLE ... SET ROLE) changes the user; check it",
        )
        .data(data));
    }
    Ok(StepFinding::ok(format!(
        "{current} (session_user {session}), database {database}, PostgreSQL {version}"
    ))
    .data(data))
}

/// The most role names the roles step reads and shows.
pub const MAX_ROLES: i64 = 50;

pub(super) async fn step_roles(state: &mut State<'_>) -> Result<StepFinding, Failure> {
    let client = state.client.as_ref().expect("login step passed");
    let query_failed = |e: cloud_pg_auth::tokio_postgres::Error| {
        failure(
            format!("the query failed: {}", chain_text(&e)),
            "check the server's log",
        )
    };
    // A role can be a member of thousands of roles: ask for at most MAX_ROLES names (plus
    // the total), so neither memory nor the report grows with the server's catalogue.
    // rds_iam is listed first, as the AWS check below looks for it among them.
    let rows = client
        .query(
            "SELECT r.rolname::text, count(*) OVER () FROM pg_catalog.pg_roles r \
             WHERE r.rolname <> current_user AND pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER') \
             ORDER BY r.rolname <> 'rds_iam', 1 LIMIT $1",
            &[&MAX_ROLES],
        )
        .await
        .map_err(query_failed)?;
    let total: i64 = rows.first().map_or(0, |r| r.get(1));
    let roles: Vec<String> = rows
        .iter()
        .take(MAX_ROLES as usize)
        .map(|r| r.get(0))
        .collect();
    let row = client
        .query_one(
            "SELECT has_database_privilege(current_database(), 'CONNECT'), \
             has_schema_privilege('public', 'USAGE'), has_schema_privilege('public', 'CREATE'), \
             (SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
              WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') AND has_table_privilege(c.oid, 'SELECT')), \
             (SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
              WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm'))",
            &[],
        )
        .await
        .map_err(query_failed)?;
    let (connect, usage, create): (bool, bool, bool) = (row.get(0), row.get(1), row.get(2));
    let (readable, tables): (i64, i64) = (row.get(3), row.get(4));
    let user = state.user.clone().unwrap_or_default();
    let data = json!({
        "member_of": roles,
        "member_of_count": total,
        "connect": connect,
        "schema_public_usage": usage,
        "schema_public_create": create,
        "tables_readable": readable,
        "tables": tables,
    });
    let yes = |b: bool| if b { "yes" } else { "no" };
    let privileges = format!(
        "in this database: CONNECT {}, schema public USAGE {} CREATE {}, SELECT on {readable} of {tables} tables",
        yes(connect),
        yes(usage),
        yes(create)
    );
    let member = if roles.is_empty() {
        "member of no other role".to_string()
    } else if total > roles.len() as i64 {
        format!(
            "member of {} and {} more",
            roles.join(", "),
            total - roles.len() as i64
        )
    } else {
        format!("member of {}", roles.join(", "))
    };
    if state.method == AuthMethod::Aws && !roles.iter().any(|r| r == "rds_iam") {
        return Err(failure(
            format!("{user} is not a member of rds_iam ({member})"),
            format!("an administrator runs: GRANT rds_iam TO \"{user}\";"),
        )
        .data(data));
    }
    let mut outcome = StepFinding::ok(format!("{member}; {privileges}")).data(data);
    if !usage {
        outcome = outcome.detail(format!(
            "warning: no USAGE on schema public: the application cannot see its tables; an administrator runs: pgauth sql create-role ... --grant read|write|owner (or GRANT USAGE ON SCHEMA public TO \"{user}\")"
        ));
    }
    Ok(outcome)
}
