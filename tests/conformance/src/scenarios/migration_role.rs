//! Migrations as their own role: from one environment the migration engine logs in as
//! `PGAUTH_MIGRATION_USER` (an IAM token signed for that role) while the pooled engine logs
//! in as `PGUSER`; a run refused because another role owns the history says who owns it, who
//! is logged in and what to do. An owner that logs in with a password
//! (`PGAUTH_MIGRATION_PASSWORD`) runs migrations while the service keeps its tokens.

use cloud_pg_auth::engine::chain_text;
use cloud_pg_auth::tokio_postgres::NoTls;
use cloud_pg_auth::{Env, Settings};
use cloud_pg_auth_testkit::Emulator;

use super::{PATIENCE, emulator};
use crate::{Adapter, EngineOptions, Method, quote_ident};

/// An owner role and a service role (both IAM roles, no password), and a database the owner
/// owns: the service role may connect but not change the schema or read the history.
async fn two_roles(emulator: &Emulator, tag: &str) -> (String, String, String) {
    let owner = format!("owner_{tag}");
    let service = format!("service_{tag}");
    let db = format!("roles_{tag}");
    let admin = emulator.postgres();
    admin
        .execute_admin(&format!(
            "CREATE ROLE {o} LOGIN; CREATE ROLE {s} LOGIN; GRANT rds_iam TO {o}, {s}",
            o = quote_ident(&owner),
            s = quote_ident(&service)
        ))
        .await
        .expect("the roles are created");
    // Alone: CREATE DATABASE cannot run in the implicit transaction of a batch.
    admin
        .execute_admin(&format!(
            "CREATE DATABASE {} OWNER {}",
            quote_ident(&db),
            quote_ident(&owner)
        ))
        .await
        .expect("the database is created");
    (owner, service, db)
}

/// The AWS environment logging in as `service` to `db`, plus `extra`.
fn settings(emulator: &Emulator, service: &str, db: &str, extra: &[(&str, &str)]) -> Settings {
    let mut env = Method::Aws.env(emulator);
    env.retain(|(k, _)| k != "PGUSER" && k != "PGDATABASE");
    env.push(("PGUSER".into(), service.into()));
    env.push(("PGDATABASE".into(), db.into()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::from_env_vars(&Env::from_pairs(env)).expect("valid settings")
}

/// The owner of `table` in `db`, asked as the superuser.
async fn table_owner(emulator: &Emulator, db: &str, table: &str) -> Option<String> {
    let mut config = emulator.postgres().admin_config();
    config.dbname(db);
    let (client, connection) = config.connect(NoTls).await.expect("admin connects");
    tokio::spawn(connection);
    client
        .query_opt(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = $1",
            &[&table],
        )
        .await
        .expect("pg_tables is readable")
        .map(|row| row.get(0))
}

/// With `both` (a service user and a migration identity): the migration engine applies the
/// conformance migration as `owner` (it owns the table), and the pooled engine of the same
/// settings logs in as `service`.
async fn migrations_as_owner_then_service<A: Adapter>(
    emulator: &Emulator,
    both: Settings,
    owner: &str,
    service: &str,
    db: &str,
) {
    let migration = A::migration(both.clone())
        .await
        .expect("the migration engine builds");
    let report = A::migrate(&migration).await.unwrap_or_else(|e| {
        panic!(
            "{}: migrations as {owner}: {}",
            A::NAME,
            chain_text(e.as_ref())
        )
    });
    assert_eq!(report.applied.len(), 1, "{}: {report:?}", A::NAME);
    A::dispose_migration(&migration).await;
    assert_eq!(
        table_owner(emulator, db, "conformance_items")
            .await
            .as_deref(),
        Some(owner),
        "{}: the migration engine logged in as the migration identity",
        A::NAME
    );

    let pooled = A::pooled(both, EngineOptions::default())
        .await
        .expect("the pooled engine builds");
    assert_eq!(
        A::current_user(&pooled).await.expect("a checkout"),
        service,
        "{}: the pooled engine logs in as PGUSER",
        A::NAME
    );
    A::dispose(&pooled).await;
}

/// `PGAUTH_MIGRATION_USER=owner` with `PGUSER=service`: migrations log in as the owner (the
/// tables they create are the owner's), the pool as the service role. Then the service role
/// running migrations itself is refused with a message naming the owner, the user and the fix.
pub async fn migrations_run_as_their_own_role<A: Adapter>() {
    let emulator = emulator(PATIENCE * 10).await;
    let tag = A::NAME.replace(['-', '.'], "_");
    let (owner, service, db) = two_roles(&emulator, &tag).await;
    let both = settings(
        &emulator,
        &service,
        &db,
        &[("PGAUTH_MIGRATION_USER", owner.as_str())],
    );

    migrations_as_owner_then_service::<A>(&emulator, both, &owner, &service, &db).await;

    let as_service = A::migration(settings(&emulator, &service, &db, &[]))
        .await
        .expect("the migration engine builds");
    let error = A::migrate(&as_service)
        .await
        .expect_err("the service role may not use the owner's history");
    A::dispose_migration(&as_service).await;
    let text = chain_text(error.as_ref());
    for part in [
        format!("as role \"{service}\""),
        format!("belongs to role \"{owner}\""),
        format!("PGAUTH_MIGRATION_USER={owner}"),
        format!("GRANT \"{owner}\" TO \"{service}\""),
    ] {
        assert!(
            text.contains(&part),
            "{}: {part:?} missing from: {text}",
            A::NAME
        );
    }
}

/// `PGAUTH_MIGRATION_USER` with `PGAUTH_MIGRATION_PASSWORD`: an owner role that logs in with a
/// password runs the migrations (its tables), while the pooled engine of the same environment
/// keeps logging in as the IAM service role with tokens.
pub async fn migrations_run_as_a_password_owner<A: Adapter>() {
    let emulator = emulator(PATIENCE * 10).await;
    let tag = format!("pw_{}", A::NAME.replace(['-', '.'], "_"));
    let (owner, service, db) = two_roles(&emulator, &tag).await;
    // The password is the test's own, for a role this scenario made.
    let password = format!("owner-password-{tag}");
    emulator
        .postgres()
        .execute_admin(&format!(
            "REVOKE rds_iam FROM {o}; ALTER ROLE {o} PASSWORD '{p}'",
            o = quote_ident(&owner),
            p = password.replace('\'', "''")
        ))
        .await
        .expect("the owner gets a password");
    let both = settings(
        &emulator,
        &service,
        &db,
        &[
            ("PGAUTH_MIGRATION_USER", owner.as_str()),
            ("PGAUTH_MIGRATION_PASSWORD", password.as_str()),
        ],
    );

    migrations_as_owner_then_service::<A>(&emulator, both, &owner, &service, &db).await;
}
