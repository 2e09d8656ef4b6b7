//! `GET /metrics` (feature `prometheus`): the library's metrics (token fetches and their
//! duration, validity left, connection opens, refused and retried logins, fallback uses) in
//! the Prometheus text format, rendered by metrics-exporter-prometheus on this service's own
//! listener (the exporter's HTTP listener feature stays off).

use std::sync::OnceLock;

use anyhow::Context as _;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The installed recorder's handle: the recorder is one per process, and so is this.
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as the process's `metrics` recorder. Call it before the
/// engines are built: what is recorded earlier is lost.
pub(crate) fn install() -> anyhow::Result<()> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the prometheus recorder (only one metrics recorder per process)")?;
    // `install_recorder` just failed if a recorder was already set, so the cell is empty.
    let _ = HANDLE.set(handle);
    Ok(())
}

/// The text format (version 0.0.4), or 503 if [`install`] was not called.
pub(crate) async fn render() -> Response {
    let Some(handle) = HANDLE.get() else {
        let why = "no metrics recorder installed; call prometheus::install() at start-up";
        return (StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    };
    // `install_recorder` spawns no upkeep task: drain the histogram samples here, or the
    // fetch-duration histogram would never show. One sample per token fetch, so few pile up.
    handle.run_upkeep();
    let text = handle.render();
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
