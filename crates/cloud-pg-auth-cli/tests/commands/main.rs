//! Every command run in-process against the emulator (loopback only): one test binary, the
//! cases split by job: `token`, `env` and `psql` (what each hands a client), `doctor` (its
//! steps, hints and output) and `sql create-role` (the SQL, safe with hostile names).

#[path = "../common/mod.rs"]
mod common;

mod create_role;
mod doctor;
mod env_psql;

use cloud_pg_auth_cli::ExitAction;
use cloud_pg_auth_testkit::postgres::{PostgresServer, ServerOptions, TcpTls};
use cloud_pg_auth_testkit::tls::TestCa;
use cloud_pg_auth_testkit::{Cloud, Emulator, EmulatorOptions, IdentityKind, PATIENCE, poll_until};
use common::{env, parse_exports, pgauth};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const AZURE: (&str, &str) = ("PGAUTH_METHOD", "azure");
const AWS: (&str, &str) = ("PGAUTH_METHOD", "aws");
const MANAGED_IDENTITY: (&str, &str) = ("PGAUTH_AZURE_CREDENTIAL", "managed-identity");

/// Settings laid over the emulator's exports (an empty value unsets).
type Overrides<'a> = &'a [(&'a str, &'a str)];

async fn emulator() -> Emulator {
    Emulator::start(EmulatorOptions::default()).await.unwrap()
}

/// Logs in to the emulator as `user` with `token` and returns `current_user`.
async fn login(emulator: &Emulator, user: &str, token: &str) -> String {
    let client = emulator.connect(user, token).await.unwrap();
    client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0)
}
