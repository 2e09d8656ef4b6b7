//! `cargo xtask demo`: every adapter × every method (and a password callback given to the
//! builders, `Method::Callback`), one short session each, against one
//! emulator: migrations through the migration engine, queries through the pool, a token
//! rollover, `dispose()`. Then a fallback-role row per adapter (`demo/fallback.rs`).
//! Aurora DSQL rows check that migrations are refused (no advisory locks) instead.

use std::time::Duration;

use cloud_pg_auth::BoxError;
use cloud_pg_auth::engine::chain_text;
use cloud_pg_auth_testkit::Emulator;
use serde::Serialize;

use crate::{Adapter, EngineOptions, Method};

mod fallback;
pub use fallback::{FALLBACK_ROW, run_fallback_row};

/// The token lifetime the demo's emulator issues, short enough to roll over in a row.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(4);

/// One row of `target/xtask/demo.json`.
#[derive(Debug, Clone, Serialize)]
pub struct DemoRow {
    /// `deadpool`, `bb8`, `diesel-async`, `sqlx` or `sqlx-0.8`.
    pub adapter: &'static str,
    /// `azure-managed-identity`, `azure-workload-identity`, `aws-iam`, `aws-dsql`,
    /// `gcp-cloudsql`, `gcp-alloydb`, `password` or `password-callback`.
    pub method: &'static str,
    /// Whether every step passed.
    pub ok: bool,
    /// `SELECT current_user` through the pool.
    pub current_user: Option<String>,
    /// Physical connections opened by the pooled and migration engines.
    pub connections_opened: u64,
    /// Token fetches made by the row's two credentials (for Azure rows, checked against
    /// the requests the emulator saw).
    pub token_requests: u64,
    /// Migrations applied by the migration engine.
    pub migrations_applied: u64,
    /// The first error, if any.
    pub error: Option<String>,
}

/// Runs one row. `progress` receives a line per step.
pub async fn run_row<A: Adapter>(
    emulator: &Emulator,
    method: Method,
    progress: &(dyn Fn(String) + Sync),
) -> DemoRow {
    let mut row = DemoRow {
        adapter: A::NAME,
        method: method.name(),
        ok: false,
        current_user: None,
        connections_opened: 0,
        token_requests: 0,
        migrations_applied: 0,
        error: None,
    };
    if let Err(error) = steps::<A>(emulator, method, &mut row, progress).await {
        row.error = Some(chain_text(error.as_ref()));
    } else {
        row.ok = true;
    }
    row
}

async fn steps<A: Adapter>(
    emulator: &Emulator,
    method: Method,
    row: &mut DemoRow,
    progress: &(dyn Fn(String) + Sync),
) -> Result<(), BoxError> {
    let say = |step: &str| progress(format!("{:<13} {:<24} {step}", A::NAME, method.name()));
    let db = format!("demo_{}_{}", A::NAME, method.name()).replace(['-', '.'], "_");
    let settings = method.settings_in_new_database(emulator, &db).await?;
    let role = method.expected_role(emulator);

    let (applied, migration_connections, migration_fetches) = if method.runs_migrations() {
        say("migration engine: own credential, running migrations");
        let migration =
            A::migration_with_source(settings.clone(), method.token_source(emulator)).await?;
        let applied = A::migrate(&migration).await?.applied.len();
        let migration_status = A::migration_status(&migration);
        A::dispose_migration(&migration).await;
        (
            applied,
            migration_status.connections_opened,
            migration_status.auth.fetch_count,
        )
    } else {
        say("migrations: refused (aurora dsql has no advisory locks)");
        match settings.check_migration_support() {
            Err(e) if e.message().contains("advisory locks") => (0, 0, 0),
            other => return Err(format!("expected migrations to be refused, got {other:?}").into()),
        }
    };
    row.migrations_applied = applied as u64;

    say("pooled engine: queries through the pool");
    let engine = A::pooled(
        settings,
        EngineOptions {
            max_size: 4,
            token_source: method.token_source(emulator),
            ..EngineOptions::default()
        },
    )
    .await?;
    let outcome = pooled_steps::<A>(&engine, method, &role, row, &say).await;
    let status = A::status(&engine);
    A::dispose(&engine).await;
    say("disposed: pool closed, refresher stopped, credential dropped");
    if A::auth(&engine).refresher_running() {
        return Err("the refresher is still running after dispose".into());
    }
    row.connections_opened = status.connections_opened + migration_connections;
    row.token_requests = status.auth.fetch_count + migration_fetches;
    outcome?;
    if method.runs_migrations() && applied != 1 {
        return Err(
            format!("expected 1 migration applied on a fresh database, got {applied}").into(),
        );
    }
    Ok(())
}

async fn pooled_steps<A: Adapter>(
    engine: &A::Pooled,
    method: Method,
    role: &str,
    row: &mut DemoRow,
    say: &dyn Fn(&str),
) -> Result<(), BoxError> {
    for _ in 0..3 {
        let user = A::current_user(engine).await?;
        if user != role {
            return Err(format!("logged in as {user}, expected {role}").into());
        }
        row.current_user = Some(user);
        // sqlx takes a connection back on a task of its own: wait, so every adapter reuses
        // the one connection and the rows compare.
        crate::scenarios::settle::<A>(engine).await;
    }
    let before = A::status(engine).auth.expires_at;
    // Azure and Google tokens live TOKEN_LIFETIME here; RDS and DSQL tokens live 900 s and
    // a password never expires, so for those the same credential simply serves the new
    // connection.
    let rolls = matches!(
        method,
        Method::AzureManagedIdentity
            | Method::AzureWorkloadIdentity
            | Method::GcpCloudSql
            | Method::GcpAlloyDb
    );
    say(&format!(
        "token rollover: waiting {} s, then a new connection",
        TOKEN_LIFETIME.as_secs() + 1
    ));
    tokio::time::sleep(TOKEN_LIFETIME + Duration::from_secs(1)).await;
    let user = A::current_user_on_new_connection(engine).await?;
    if user != role {
        return Err(format!("after rollover logged in as {user}, expected {role}").into());
    }
    let after = A::status(engine).auth.expires_at;
    if rolls && before == after {
        return Err("the token did not roll over".into());
    }
    Ok(())
}
