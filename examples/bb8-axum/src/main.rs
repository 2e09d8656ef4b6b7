//! A small notes service on a bb8 pool whose connections log in with fresh tokens.
//!
//! Every setting comes from the environment (`PGHOST`, `PGUSER`, `PGAUTH_METHOD`, ...; `HOST`
//! and `PORT` for the listener, 127.0.0.1 and 8080 by default: set `HOST=0.0.0.0` in a
//! container). At start the migrations run through a migration engine with its own credential
//! and role (`PGAUTH_MIGRATION_USER`, `PGAUTH_MIGRATION_AZURE_CLIENT_ID`), which is then
//! disposed; the service's pool logs in as the service role (`PGUSER`). `GET /health` shows
//! the verdict (healthy, degraded, failing) with its reason, the credential and the pool
//! (never the token): 503 when failing, 200 otherwise. SIGINT/SIGTERM: graceful shutdown,
//! then dispose.

use anyhow::Context as _;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cloud_pg_auth_bb8::cloud_pg_auth::engine::chain_text;
use cloud_pg_auth_bb8::cloud_pg_auth::{EngineStatus, Health, Settings};
use cloud_pg_auth_bb8::tokio_postgres::Row;
use cloud_pg_auth_bb8::{MigrationEngine, PooledEngine, migrations};
use serde::{Deserialize, Serialize};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse().context("PORT must be a port number")?,
        Err(_) => 8080,
    };
    // Loopback unless told otherwise: a container needs HOST=0.0.0.0.
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let settings = Settings::from_env()?;

    // Least privilege: the migrations log in as the role that owns the schema, the service as
    // a role that may only read and write rows, so a handler can never alter or drop a table.
    // `for_migrations` swaps in `PGAUTH_MIGRATION_USER` and, on Azure,
    // `PGAUTH_MIGRATION_AZURE_CLIENT_ID` (an identity of its own); with neither set, both log in
    // as the service role. `MigrationEngine` applies it anyway: spelled out so both roles show.
    let migration_settings = settings.for_migrations();
    let migrations = migrations!["../migrations/V1__create_notes.sql"]?;
    let migrator = MigrationEngine::from_settings(migration_settings.clone()).await?;
    let report = migrator.run_migrations(&migrations).await;
    let migrated = migrator.status();
    migrator.dispose().await;
    let report = report.context("running the migrations")?;
    let (role, identity) = login(&migration_settings, &migrated);
    tracing::info!(
        role,
        identity,
        applied = ?report.applied_versions(),
        already_applied = report.already_applied,
        duration = ?report.duration,
        "migrations done"
    );

    // The service role: `PGUSER` (on Azure without it, the role named by the token of
    // `AZURE_CLIENT_ID`'s identity). One login now, so a service identity that cannot log in
    // fails here rather than on the first request, and a role named by a token is known.
    let engine = PooledEngine::from_settings(settings.clone()).await?;
    let first = engine
        .get()
        .await
        .context("logging in as the service role")?;
    drop(first);
    let serving = engine.status();
    let (role, identity) = login(&settings, &serving);
    tracing::info!(role, identity, "serving as the service role");
    let listener = tokio::net::TcpListener::bind((host.as_str(), port))
        .await
        .with_context(|| format!("listening on {host}:{port} (HOST, PORT)"))?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    let served = axum::serve(listener, app(engine.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await;
    // Waits for checked-out connections at most the dispose timeout (10 s by default).
    engine.dispose().await;
    tracing::info!("stopped");
    Ok(served?)
}

/// The routes. Clones of the engine share the pool and the credential: handlers get one
/// each, no Arc needed.
fn app(engine: PooledEngine) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/notes", get(list_notes).post(create_note))
        .route("/notes/{id}", get(show_note).delete(delete_note))
        .with_state(engine)
}

/// Who an engine logged in as, for the start-up log (no secret): its role (the settings'
/// user, else the one its token named) and its identity label (client id, role ARN), `-` if
/// none.
fn login<'a>(settings: &'a Settings, status: &'a EngineStatus) -> (&'a str, &'a str) {
    let role = settings
        .get_user()
        .or(status.auth.username.as_deref())
        .unwrap_or("unknown");
    (role, status.auth.identity.as_deref().unwrap_or("-"))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(error) => {
            tracing::warn!(%error, "no SIGTERM handler; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutting down");
}

type Engine = State<PooledEngine>;

/// 503 when failing (new connections fail), so a probe takes the instance out of service;
/// degraded still answers 200, with the verdict and its reason in the body.
async fn health(State(engine): Engine) -> (StatusCode, Json<EngineStatus>) {
    let status = engine.status();
    let code = match status.health {
        Health::Failing => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::OK,
    };
    (code, Json(status))
}

#[derive(Serialize)]
struct Note {
    id: i64,
    body: String,
    created_at: String,
}

impl From<Row> for Note {
    fn from(row: Row) -> Self {
        Self {
            id: row.get(0),
            body: row.get(1),
            created_at: row.get(2),
        }
    }
}

#[derive(Deserialize)]
struct NewNote {
    body: String,
}

// The timestamp as RFC 3339 text, so no date-time crate is needed.
const COLUMNS: &str = "id, body, to_json(created_at) #>> '{}'";

async fn list_notes(State(engine): Engine) -> Result<Json<Vec<Note>>, ApiError> {
    let client = engine.get().await?;
    let rows = client
        .query(&format!("SELECT {COLUMNS} FROM notes ORDER BY id"), &[])
        .await?;
    Ok(Json(rows.into_iter().map(Note::from).collect()))
}

async fn create_note(
    State(engine): Engine,
    Json(note): Json<NewNote>,
) -> Result<(StatusCode, Json<Note>), ApiError> {
    if note.body.trim().is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "body must not be empty".into(),
        ));
    }
    let client = engine.get().await?;
    let row = client
        .query_one(
            &format!("INSERT INTO notes (body) VALUES ($1) RETURNING {COLUMNS}"),
            &[&note.body],
        )
        .await?;
    Ok((StatusCode::CREATED, Json(Note::from(row))))
}

async fn show_note(State(engine): Engine, Path(id): Path<i64>) -> Result<Json<Note>, ApiError> {
    let client = engine.get().await?;
    match client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM notes WHERE id = $1"),
            &[&id],
        )
        .await?
    {
        Some(row) => Ok(Json(Note::from(row))),
        None => Err(ApiError::not_found(id)),
    }
}

async fn delete_note(State(engine): Engine, Path(id): Path<i64>) -> Result<StatusCode, ApiError> {
    let client = engine.get().await?;
    match client
        .execute("DELETE FROM notes WHERE id = $1", &[&id])
        .await?
    {
        0 => Err(ApiError::not_found(id)),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}

/// An error answer: `{"error": "..."}` with the cause chain (which never holds a secret).
struct ApiError(StatusCode, String);

impl ApiError {
    fn not_found(id: i64) -> Self {
        Self(StatusCode::NOT_FOUND, format!("no note {id}"))
    }
}

impl From<cloud_pg_auth_bb8::Error> for ApiError {
    fn from(error: cloud_pg_auth_bb8::Error) -> Self {
        let text = chain_text(&error);
        tracing::warn!(error = %text, "no database connection");
        Self(StatusCode::SERVICE_UNAVAILABLE, text)
    }
}

impl From<cloud_pg_auth_bb8::tokio_postgres::Error> for ApiError {
    fn from(error: cloud_pg_auth_bb8::tokio_postgres::Error) -> Self {
        let text = chain_text(&error);
        tracing::warn!(error = %text, "query failed");
        Self(StatusCode::INTERNAL_SERVER_ERROR, text)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}
