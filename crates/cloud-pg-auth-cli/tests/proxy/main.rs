//! `pgauth proxy` against the emulator, with clients nobody on the project wrote: psql,
//! pg_dump and pgbench from PostgreSQL, tokio-postgres, and raw protocol bytes where a
//! client library would hide what is checked. Tests wait on events (the proxy's counters,
//! the emulator's, pg_stat_activity), never on sleeps.
//!
//! One test binary; the cases are split by job: clients (psql, pg_dump, pgbench, cancels,
//! the connection limit, token expiry), wire (startup requests, local TLS and sockets, server
//! auth methods) and lifecycle (loopback-only binding, shutdown, the binary itself).

#[path = "../common/mod.rs"]
mod common;

mod clients;
mod lifecycle;
mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cloud_pg_auth::clock::{Clock, ManualClock};
use cloud_pg_auth::tokio_postgres::{self, NoTls, error::SqlState};
use cloud_pg_auth::{AuthOptions, Secret, Settings};
use cloud_pg_auth_cli::{Listen, Proxy, ProxyHandle, ProxyOptions, ProxyStats};
use cloud_pg_auth_testkit::postgres::{PostgresServer, ServerOptions, TcpTls, find_bin_dir};
use cloud_pg_auth_testkit::tls::TestCa;
use cloud_pg_auth_testkit::{Emulator, EmulatorOptions, Faults};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;
use tokio::task::JoinHandle;

const PGAUTH: &str = env!("CARGO_BIN_EXE_pgauth");

/// A method: name, settings overrides, role, the emulator's label for the login.
type Case = (
    &'static str,
    Vec<(&'static str, String)>,
    String,
    &'static str,
);

/// The three methods.
fn methods(emulator: &Emulator) -> Vec<Case> {
    vec![
        (
            "password",
            vec![
                ("PGAUTH_METHOD", "password".into()),
                ("PGUSER", emulator.password_role().into()),
                ("PGPASSWORD", emulator.password().into()),
            ],
            emulator.password_role().into(),
            "password",
        ),
        (
            "azure",
            vec![("PGAUTH_METHOD", "azure".into())],
            emulator.azure_role().into(),
            "entra",
        ),
        (
            "aws",
            vec![
                ("PGAUTH_METHOD", "aws".into()),
                ("PGUSER", emulator.aws_role().into()),
            ],
            emulator.aws_role().into(),
            "aws",
        ),
    ]
}

fn azure() -> Vec<(&'static str, String)> {
    vec![("PGAUTH_METHOD", "azure".into())]
}

fn settings(emulator: &Emulator, overrides: &[(&str, String)]) -> Settings {
    let overrides: Vec<(&str, &str)> = overrides.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Settings::from_env_vars(&common::env(emulator, &overrides)).unwrap()
}

fn loopback_any_port() -> Listen {
    Listen::Tcp("127.0.0.1:0".parse().unwrap())
}

/// A running in-process proxy.
struct Running {
    addr: SocketAddr,
    handle: ProxyHandle,
    task: JoinHandle<ProxyStats>,
    user: String,
}

async fn start(settings: &Settings, options: ProxyOptions) -> Running {
    let proxy = Proxy::bind(settings, options).await.unwrap();
    let addr = proxy
        .local_addr()
        .unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
    let handle = proxy.handle();
    let user = proxy.user().to_string();
    let task = tokio::spawn(proxy.run());
    handle.wait_for(|s| s.accepting).await;
    Running {
        addr,
        handle,
        task,
        user,
    }
}

impl Running {
    async fn stop(self) -> ProxyStats {
        self.handle.shutdown();
        self.task.await.unwrap()
    }

    fn config(&self, database: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.addr.port())
            .user(&self.user)
            .dbname(database)
            .ssl_mode(tokio_postgres::config::SslMode::Disable);
        config
    }

    async fn connect(
        &self,
        database: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = self.config(database).connect(NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }
}

struct Output {
    code: i32,
    out: String,
    err: String,
}

/// Runs a PostgreSQL client program with exactly `vars` (and PATH) as its environment.
async fn client(program: &str, args: &[&str], vars: &[(String, String)]) -> Output {
    let path = bin(program);
    let output = Command::new(&path)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Output {
        code: output.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&output.stdout).into_owned(),
        err: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn bin(program: &str) -> PathBuf {
    find_bin_dir()
        .expect("PostgreSQL client binaries")
        .join(program)
}

/// `pgauth proxy --print-env` in-process for `overrides` and `extra` flags, parsed.
async fn print_env(
    emulator: &Emulator,
    overrides: &[(&str, String)],
    extra: &[&str],
) -> Vec<(String, String)> {
    let overrides: Vec<(&str, &str)> = overrides.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut args = vec!["-q", "proxy", "--print-env"];
    args.extend_from_slice(extra);
    let ran = common::pgauth(&args, &common::env(emulator, &overrides)).await;
    assert_eq!(ran.code(), Some(0), "{}", ran.err);
    assert!(ran.out.contains("unset PGPASSWORD\n"), "{}", ran.out);
    assert!(ran.out.contains("unset PGSERVICE\n"), "{}", ran.out);
    common::parse_exports(&ran.out)
}

async fn create_database(emulator: &Emulator, name: &str, owner: &str) {
    let admin = emulator.postgres().admin_client().await.unwrap();
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {name} OWNER \"{}\"",
            owner.replace('"', "\"\"")
        ))
        .await
        .unwrap();
}
