//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use cloud_pg_auth_testkit::{Emulator, EmulatorOptions};

pub(crate) async fn emulator() -> Emulator {
    Emulator::start(EmulatorOptions::default())
        .await
        .expect("start the emulator")
}

/// The SQLSTATE and message of a refused login.
pub(crate) fn db_error(e: &tokio_postgres::Error) -> (String, String) {
    match e.as_db_error() {
        Some(db) => (db.code().code().to_string(), db.message().to_string()),
        None => ("".into(), e.to_string()),
    }
}

/// Logs in through the front and returns `current_user`, or the SQLSTATE and message.
pub(crate) async fn login(
    em: &Emulator,
    user: &str,
    password: &str,
) -> Result<String, (String, String)> {
    let client = em.connect(user, password).await.map_err(|e| db_error(&e))?;
    let row = client
        .query_one("SELECT current_user::text", &[])
        .await
        .map_err(|e| db_error(&e))?;
    Ok(row.get(0))
}

/// `psql` next to the server binaries.
pub(crate) fn psql() -> PathBuf {
    let bin = cloud_pg_auth_testkit::postgres::find_bin_dir().expect("postgresql binaries");
    let p = bin.join("psql");
    if p.is_file() {
        p
    } else {
        PathBuf::from("psql")
    }
}

/// Runs `psql -Atc sql` with the emulator's exports plus `extra` variables; returns
/// (success, stdout, stderr).
pub(crate) async fn run_psql(
    em: &Emulator,
    extra: &[(&str, &str)],
    sql: &str,
) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(psql());
    cmd.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql]);
    for var in [
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGPASSFILE",
        "PGOPTIONS",
        "PGAPPNAME",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in em.env() {
        cmd.env(k, v);
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.env("PGCONNECT_TIMEOUT", "10");
    let out = cmd.output().await.expect("run psql");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

/// The Entra audience of Azure Database for PostgreSQL (public cloud).
pub(crate) const AUD: &str = "https://ossrdbms-aad.database.windows.net";

/// The claims of a JWT, unverified.
pub(crate) fn claims(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Form-encodes a query value.
pub(crate) fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
