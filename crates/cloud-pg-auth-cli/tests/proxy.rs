//! `pgauth proxy` against the emulator, with clients nobody on the project wrote: psql,
//! pg_dump and pgbench from PostgreSQL, tokio-postgres, and raw protocol bytes where a
//! client library would hide what is checked. Tests wait on events (the proxy's counters,
//! the emulator's, pg_stat_activity), never on sleeps.

mod common;

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

#[tokio::test(flavor = "multi_thread")]
async fn psql_pg_dump_and_pgbench_work_through_the_proxy_for_every_method() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    for (name, mut overrides, role, label) in methods(&emulator) {
        let database = format!("proxy_{name}");
        create_database(&emulator, &database, &role).await;
        overrides.push(("PGDATABASE", database.clone()));
        let proxy = start(
            &settings(&emulator, &overrides),
            ProxyOptions {
                listen: loopback_any_port(),
                ..ProxyOptions::default()
            },
        )
        .await;
        let port = proxy.addr.port().to_string();
        // What a person would do: take the client settings from --print-env.
        let vars = print_env(&emulator, &overrides, &["--listen", &port]).await;
        let expected: Vec<(String, String)> = [
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", port.as_str()),
            ("PGUSER", role.as_str()),
            ("PGDATABASE", database.as_str()),
            ("PGSSLMODE", "disable"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(vars, expected, "{name}");
        let before = emulator
            .stats()
            .logins_accepted_by_method
            .get(label)
            .copied()
            .unwrap_or(0);

        let psql = client(
            "psql",
            &["-X", "-At", "-c", "select current_user, current_database()"],
            &vars,
        )
        .await;
        assert_eq!(psql.code, 0, "{name}: {}", psql.err);
        assert_eq!(psql.out, format!("{role}|{database}\n"), "{name}");

        let init = client("pgbench", &["-i", "-s", "1", "-q"], &vars).await;
        assert_eq!(init.code, 0, "{name}: {}", init.err);
        let bench = client("pgbench", &["-S", "-n", "-c", "4", "-t", "25"], &vars).await;
        assert_eq!(bench.code, 0, "{name}: {}", bench.err);
        assert!(
            bench
                .out
                .contains("number of transactions actually processed: 100/100"),
            "{name}: {}",
            bench.out
        );

        let dump = client("pg_dump", &["-t", "pgbench_branches"], &vars).await;
        assert_eq!(dump.code, 0, "{name}: {}", dump.err);
        assert!(
            dump.out.contains("CREATE TABLE public.pgbench_branches"),
            "{name}: {}",
            dump.out
        );
        assert!(
            dump.out.contains("PostgreSQL database dump complete"),
            "{name}"
        );

        // psql 1, pgbench -i 1, pgbench -S 4 clients (+1 for its own check), pg_dump 1.
        let stats = proxy.stop().await;
        assert!(stats.sessions_opened >= 7, "{name}: {stats:?}");
        assert_eq!(stats.upstream_failures, 0, "{name}: {stats:?}");
        let after = emulator
            .stats()
            .logins_accepted_by_method
            .get(label)
            .copied()
            .unwrap_or(0);
        assert_eq!(
            after - before,
            stats.sessions_opened,
            "{name}: every session one upstream login"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_query_ends_with_57014_and_foreign_keys_are_ignored() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let proxy = start(
        &settings(&emulator, &azure()),
        ProxyOptions {
            listen: loopback_any_port(),
            ..ProxyOptions::default()
        },
    )
    .await;
    let client = proxy.connect("postgres").await.unwrap();
    let pid: i32 = client
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let cancel = client.cancel_token();
    let sleeper = tokio::spawn(async move {
        let result = client.simple_query("SELECT pg_sleep(30)").await;
        (client, result)
    });
    let admin = emulator.postgres().admin_client().await.unwrap();
    // Wait until the server runs the query (an event we can observe), then cancel.
    loop {
        let running = admin
            .query_opt(
                "select 1 from pg_stat_activity where pid = $1 and state = 'active' and query = 'SELECT pg_sleep(30)'",
                &[&pid],
            )
            .await
            .unwrap();
        if running.is_some() {
            break;
        }
        tokio::task::yield_now().await;
    }
    // A key the proxy never handed out is dropped, not forwarded.
    let mut forged = TcpStream::connect(proxy.addr).await.unwrap();
    let mut packet = Vec::new();
    packet.extend_from_slice(&16u32.to_be_bytes());
    packet.extend_from_slice(&80_877_102i32.to_be_bytes());
    packet.extend_from_slice(&pid.to_be_bytes());
    packet.extend_from_slice(&12345i32.to_be_bytes());
    forged.write_all(&packet).await.unwrap();
    proxy.handle.wait_for(|s| s.cancels_ignored == 1).await;
    assert_eq!(proxy.handle.stats().cancels_forwarded, 0);

    cancel.cancel_query(NoTls).await.unwrap();
    let (client, result) = sleeper.await.unwrap();
    let error = result.unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::QUERY_CANCELED), "{error}");
    // The session goes on after the cancel.
    let one: i32 = client.query_one("select 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    drop(client);
    let stats = proxy.stop().await;
    assert_eq!(stats.cancels_forwarded, 1, "{stats:?}");
    assert!(emulator.stats().cancel_requests >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_cancels_on_sigint_through_the_proxy() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let proxy = start(
        &settings(&emulator, &azure()),
        ProxyOptions {
            listen: loopback_any_port(),
            ..ProxyOptions::default()
        },
    )
    .await;
    let vars = print_env(
        &emulator,
        &azure(),
        &["--listen", &proxy.addr.port().to_string()],
    )
    .await;
    let mut psql = Command::new(bin("psql"))
        .args(["-X", "-At", "-c", "SELECT pg_sleep(30)"])
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let admin = emulator.postgres().admin_client().await.unwrap();
    loop {
        let running = admin
            .query_opt(
                "select 1 from pg_stat_activity where state = 'active' and query = 'SELECT pg_sleep(30)'",
                &[],
            )
            .await
            .unwrap();
        if running.is_some() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let pid = psql.id().unwrap().to_string();
    let kill = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(kill.success());
    let mut err = String::new();
    psql.stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .await
        .unwrap();
    let status = psql.wait().await.unwrap();
    assert!(!status.success());
    assert!(
        err.contains("canceling statement due to user request"),
        "{err}"
    );
    let stats = proxy.stop().await;
    assert_eq!(stats.cancels_forwarded, 1, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_concurrent_clients_and_the_next_one_is_refused_with_53300() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let proxy = start(
        &settings(&emulator, &azure()),
        ProxyOptions {
            listen: loopback_any_port(),
            max_connections: 100,
            ..ProxyOptions::default()
        },
    )
    .await;
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let config = proxy.config("postgres");
        opening.spawn(async move {
            let (client, connection) = config.connect(NoTls).await.unwrap();
            tokio::spawn(connection);
            let pid: i32 = client
                .query_one("select pg_backend_pid()", &[])
                .await
                .unwrap()
                .get(0);
            (client, pid)
        });
    }
    let mut clients = Vec::new();
    while let Some(opened) = opening.join_next().await {
        clients.push(opened.unwrap());
    }
    let mut pids: Vec<i32> = clients.iter().map(|(_, pid)| *pid).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 100, "one server session each");
    assert_eq!(proxy.handle.stats().active_sessions, 100);

    let error = proxy.connect("postgres").await.unwrap_err();
    assert_eq!(
        error.code(),
        Some(&SqlState::TOO_MANY_CONNECTIONS),
        "{error}"
    );
    assert_eq!(proxy.handle.stats().refused_limit, 1);

    // A session that ends frees its place.
    drop(clients.pop());
    proxy.handle.wait_for(|s| s.active_sessions == 99).await;
    let again = proxy.connect("postgres").await.unwrap();
    again.query_one("select 1", &[]).await.unwrap();
    for (client, _) in &clients {
        client.query_one("select 1", &[]).await.unwrap();
    }
    drop(clients);
    drop(again);
    let stats = proxy.stop().await;
    assert_eq!(stats.sessions_opened, 101, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_after_the_token_expired_gets_a_new_one_and_old_sessions_go_on() {
    let emulator = Emulator::start(EmulatorOptions {
        token_lifetime: Duration::from_secs(120),
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    // The proxy's credential reads this clock: moving it past the first token's expiry is
    // the event, with no waiting on wall time. Later tokens live an hour of real time, so
    // the one fetched after the jump is valid by both clocks.
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let proxy = Proxy::bind(
        &settings(&emulator, &azure()),
        ProxyOptions {
            listen: loopback_any_port(),
            auth: AuthOptions::default()
                .background_refresh(false)
                .clock(Arc::clone(&clock) as Arc<dyn Clock>),
            ..ProxyOptions::default()
        },
    )
    .await
    .unwrap();
    let first_expiry = proxy.auth_status().expires_at.unwrap();
    let addr = proxy.local_addr().unwrap();
    let user = proxy.user().to_string();
    let handle = proxy.handle();
    let task = tokio::spawn(proxy.run());
    let running = Running {
        addr,
        handle,
        task,
        user,
    };
    let old = running.connect("postgres").await.unwrap();
    old.query_one("select 1", &[]).await.unwrap();
    let issued_before = emulator.stats().tokens_issued.total;
    emulator
        .set_faults(Faults {
            token_lifetime: Some(3600),
            ..Faults::default()
        })
        .await
        .unwrap();

    let left = first_expiry
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    clock.advance(left + Duration::from_secs(1));

    let current: String = old
        .query_one("select current_user::text", &[])
        .await
        .expect("an open session outlives its token")
        .get(0);
    assert_eq!(current, emulator.azure_role());
    let new = running.connect("postgres").await.unwrap();
    let current: String = new
        .query_one("select current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(current, emulator.azure_role());
    let stats = emulator.stats();
    // The new login fetched a new token first and was not refused.
    assert_eq!(
        stats.tokens_issued.total,
        issued_before + 1,
        "one new token for the connection opened after the expiry: {stats:?}"
    );
    assert_eq!(stats.logins_rejected.values().sum::<u64>(), 0, "{stats:?}");
    drop((old, new));
    let proxy_stats = running.stop().await;
    assert_eq!(proxy_stats.auth_retries, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_or_database_not_served_gets_a_postgresql_error() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let proxy = start(
        &settings(&emulator, &azure()),
        ProxyOptions {
            listen: loopback_any_port(),
            databases: vec!["template1".into()],
            ..ProxyOptions::default()
        },
    )
    .await;
    let vars = print_env(
        &emulator,
        &azure(),
        &["--listen", &proxy.addr.port().to_string()],
    )
    .await;
    let with = |name: &str, value: &str| -> Vec<(String, String)> {
        let mut v = vars.clone();
        v.retain(|(k, _)| k != name);
        v.push((name.to_string(), value.to_string()));
        v
    };
    let wrong_user = client(
        "psql",
        &["-X", "-c", "select 1"],
        &with("PGUSER", "postgres"),
    )
    .await;
    assert_eq!(wrong_user.code, 2, "{}", wrong_user.err);
    assert!(
        wrong_user.err.contains(&format!(
            "FATAL:  pgauth proxy serves the role \"{}\", not \"postgres\"",
            emulator.azure_role()
        )),
        "{}",
        wrong_user.err
    );
    assert!(
        wrong_user.err.contains("HINT:  connect with user="),
        "{}",
        wrong_user.err
    );
    let wrong_db = client(
        "psql",
        &["-X", "-c", "select 1"],
        &with("PGDATABASE", "secrets"),
    )
    .await;
    assert_eq!(wrong_db.code, 2, "{}", wrong_db.err);
    assert!(
        wrong_db
            .err
            .contains("pgauth proxy does not serve the database \"secrets\"; it serves \"postgres\", \"template1\""),
        "{}",
        wrong_db.err
    );
    // An extra --database is served.
    let extra = client(
        "psql",
        &["-X", "-At", "-c", "select current_database()"],
        &with("PGDATABASE", "template1"),
    )
    .await;
    assert_eq!(extra.out, "template1\n", "{}", extra.err);
    // The SQLSTATE, as a driver sees it.
    let mut config = proxy.config("postgres");
    config.user("postgres");
    let Err(error) = config.connect(NoTls).await else {
        panic!("a user not served logged in");
    };
    assert_eq!(
        error.code(),
        Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
    );
    let stats = proxy.stop().await;
    assert_eq!(stats.refused_not_served, 3, "{stats:?}");
    assert_eq!(stats.sessions_opened, 1, "{stats:?}");
    assert_eq!(
        emulator.stats().logins_accepted,
        1,
        "no upstream login for a refused client"
    );
}

#[tokio::test]
async fn the_proxy_never_starts_on_a_non_loopback_address_without_the_flag() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let env = common::env(&emulator, &[("PGAUTH_METHOD", "azure")]);
    for (args, fragment) in [
        (
            vec!["proxy", "--listen", "0.0.0.0:0"],
            "is not a loopback address",
        ),
        (
            vec!["proxy", "--listen", "[::]:0"],
            "is not a loopback address",
        ),
        (
            vec!["proxy", "--listen", "0.0.0.0:0", "--allow-remote"],
            "needs local tls",
        ),
    ] {
        let ran = common::pgauth(&args, &env).await;
        assert_eq!(ran.code(), Some(2), "{args:?}: {}", ran.err);
        assert!(ran.err.contains(fragment), "{args:?}: {}", ran.err);
        assert!(
            !ran.err.contains("proxy listening on"),
            "{args:?}: {}",
            ran.err
        );
    }
    let error = Proxy::bind(
        &settings(&emulator, &azure()),
        ProxyOptions {
            listen: Listen::Tcp("0.0.0.0:0".parse().unwrap()),
            ..ProxyOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("--allow-remote"), "{error}");
    assert_eq!(
        emulator.stats().token_requests.total,
        0,
        "refused before any token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_stops_accepting_and_lets_open_sessions_finish() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let proxy = start(
        &settings(&emulator, &azure()),
        ProxyOptions {
            listen: loopback_any_port(),
            shutdown_timeout: Duration::from_secs(600),
            ..ProxyOptions::default()
        },
    )
    .await;
    let open = proxy.connect("postgres").await.unwrap();
    proxy.handle.shutdown();
    proxy.handle.wait_for(|s| !s.accepting).await;
    assert!(
        TcpStream::connect(proxy.addr).await.is_err(),
        "no new connections"
    );
    // The open session goes on until its client ends it; then the proxy stops.
    open.query_one("select 1", &[]).await.unwrap();
    assert!(!proxy.task.is_finished());
    drop(open);
    let stats = proxy.task.await.unwrap();
    assert_eq!(stats.sessions_opened, 1);
    assert_eq!(stats.active_sessions, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_closes_sessions_left_after_the_timeout() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let proxy = start(
        &settings(&emulator, &azure()),
        ProxyOptions {
            listen: loopback_any_port(),
            shutdown_timeout: Duration::ZERO,
            ..ProxyOptions::default()
        },
    )
    .await;
    let open = proxy.connect("postgres").await.unwrap();
    open.query_one("select 1", &[]).await.unwrap();
    let stats = proxy.stop().await;
    assert_eq!(stats.sessions_opened, 1);
    let error = open.query_one("select 1", &[]).await.unwrap_err();
    assert!(error.is_closed(), "{error}");
}

/// Raw protocol: GSSENCRequest gets 'N', protocol 3.2 with an option gets
/// NegotiateProtocolVersion and a 3.0 session, 2.0 gets 0A000, junk gets 08P01.
#[tokio::test(flavor = "multi_thread")]
async fn startup_requests_are_answered_as_a_server_would() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let proxy = start(
        &settings(&emulator, &azure()),
        ProxyOptions {
            listen: loopback_any_port(),
            ..ProxyOptions::default()
        },
    )
    .await;
    let startup = |code: i32, params: &[(&str, &str)]| {
        let mut body = code.to_be_bytes().to_vec();
        for (k, v) in params {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        packet.extend_from_slice(&body);
        packet
    };
    let mut s = TcpStream::connect(proxy.addr).await.unwrap();
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30])
        .await
        .unwrap();
    assert_eq!(s.read_u8().await.unwrap(), b'N', "GSSENCRequest");
    s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
        .await
        .unwrap();
    assert_eq!(
        s.read_u8().await.unwrap(),
        b'N',
        "SSLRequest without local tls"
    );
    let user = proxy.user.clone();
    s.write_all(&startup(
        196_610,
        &[
            ("user", &user),
            ("database", "postgres"),
            ("_pq_.grease", "1"),
        ],
    ))
    .await
    .unwrap();
    let mut kinds = Vec::new();
    loop {
        let kind = s.read_u8().await.unwrap();
        let len = s.read_u32().await.unwrap() as usize;
        let mut body = vec![0; len - 4];
        s.read_exact(&mut body).await.unwrap();
        if kind == b'v' {
            assert_eq!(
                &body[..8],
                &[0, 0, 0, 0, 0, 0, 0, 1],
                "3.0 and one unknown option"
            );
            assert_eq!(&body[8..], b"_pq_.grease\0");
        }
        if kind == b'K' {
            assert_eq!(body.len(), 8, "a 3.0 cancel key");
        }
        kinds.push(kind);
        if kind == b'Z' {
            break;
        }
    }
    assert_eq!(kinds.first(), Some(&b'v'), "{kinds:?}");
    assert_eq!(kinds.get(1), Some(&b'R'), "{kinds:?}");
    assert!(kinds.contains(&b'S') && kinds.contains(&b'K'), "{kinds:?}");
    drop(s);

    for (packet, code) in [
        (startup(0x0002_0000, &[("user", "x")]), "0A000"),
        (vec![0, 0, 0, 4], "08P01"),
        (startup(196_608, &[("database", "postgres")]), "28000"),
    ] {
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        s.write_all(&packet).await.unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer.first(), Some(&b'E'), "{answer:?}");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.contains(&format!("C{code}\0")), "{code}: {text}");
    }
    proxy.stop().await;
}

fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pgauth-proxy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn local_tls_a_local_password_and_a_unix_socket_serve_psql() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let dir = scratch_dir("local");
    let ca = TestCa::generate();
    let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]);
    let ca_file = write_file(&dir, "ca.pem", &ca.cert_pem());
    let proxy = start(
        &settings(&emulator, &azure()),
        ProxyOptions {
            listen: loopback_any_port(),
            tls_cert: Some(write_file(&dir, "cert.pem", &cert)),
            tls_key: Some(write_file(&dir, "key.pem", &key)),
            local_password: Some(Secret::new("local-secret")),
            ..ProxyOptions::default()
        },
    )
    .await;
    let port = proxy.addr.port().to_string();
    let vars = |password: &str| -> Vec<(String, String)> {
        [
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", port.as_str()),
            ("PGUSER", proxy.user.as_str()),
            ("PGDATABASE", "postgres"),
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", ca_file.to_str().unwrap()),
            ("PGPASSWORD", password),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    let ok = client("psql", &["-X", "-c", "\\conninfo"], &vars("local-secret")).await;
    assert_eq!(ok.code, 0, "{}", ok.err);
    assert!(
        ok.out.contains("SSL connection (protocol: TLS"),
        "{}",
        ok.out
    );
    let wrong = client("psql", &["-X", "-c", "select 1"], &vars("guess")).await;
    assert_eq!(wrong.code, 2);
    assert!(
        wrong.err.contains("password authentication failed"),
        "{}",
        wrong.err
    );
    let stats = proxy.stop().await;
    assert_eq!(
        (stats.sessions_opened, stats.refused_password),
        (1, 1),
        "{stats:?}"
    );

    let socket_dir = dir.join("sock");
    std::fs::create_dir_all(&socket_dir).unwrap();
    let proxy = start(
        &settings(&emulator, &azure()),
        ProxyOptions {
            listen: Listen::Unix {
                dir: socket_dir.clone(),
                port: 6543,
            },
            ..ProxyOptions::default()
        },
    )
    .await;
    let socket = socket_dir.to_str().unwrap();
    let vars = print_env(
        &emulator,
        &azure(),
        &["--socket", socket, "--listen", "6543"],
    )
    .await;
    assert!(
        vars.contains(&("PGHOST".to_string(), socket.to_string())),
        "{vars:?}"
    );
    let over_socket = client("psql", &["-X", "-At", "-c", "select current_user"], &vars).await;
    assert_eq!(over_socket.code, 0, "{}", over_socket.err);
    assert_eq!(over_socket.out, format!("{}\n", emulator.azure_role()));
    proxy.stop().await;
    assert!(
        !socket_dir.join(".s.PGSQL.6543").exists(),
        "the socket file is removed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The password method against a real server that asks SCRAM-SHA-256 or MD5 (the
/// emulator's front asks cleartext): the proxy answers either, and a wrong password comes
/// back as the server's own error after one retry.
#[tokio::test(flavor = "multi_thread")]
async fn scram_and_md5_servers_are_answered_for_the_password_method() {
    let dir = scratch_dir("scram");
    let ca = TestCa::generate();
    let (cert_pem, key_pem) = ca.issue(&["localhost", "127.0.0.1"]);
    let ca_file = write_file(&dir, "ca.pem", &ca.cert_pem());
    let server = PostgresServer::start(ServerOptions {
        tcp: Some(TcpTls { cert_pem, key_pem }),
        extra_hba: vec![
            "hostssl all scram_user 127.0.0.1/32 scram-sha-256".into(),
            "hostssl all md5_user 127.0.0.1/32 md5".into(),
        ],
        port: None,
    })
    .await
    .unwrap();
    let admin = server.admin_client().await.unwrap();
    admin
        .batch_execute(
            "CREATE ROLE scram_user LOGIN PASSWORD 'scram-pw';
             SET password_encryption = 'md5';
             CREATE ROLE md5_user LOGIN PASSWORD 'md5-pw';",
        )
        .await
        .unwrap();
    for (user, password, works) in [
        ("scram_user", "scram-pw", true),
        ("md5_user", "md5-pw", true),
        ("scram_user", "wrong", false),
    ] {
        let port = server.port().to_string();
        let ca = ca_file.to_str().unwrap().to_string();
        let env = cloud_pg_auth::Env::from_pairs(
            [
                ("PGHOST", "127.0.0.1"),
                ("PGPORT", port.as_str()),
                ("PGDATABASE", "postgres"),
                ("PGUSER", user),
                ("PGPASSWORD", password),
                ("PGAUTH_METHOD", "password"),
                ("PGSSLMODE", "verify-full"),
                ("PGSSLROOTCERT", ca.as_str()),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let settings = Settings::from_env_vars(&env).unwrap();
        let proxy = start(
            &settings,
            ProxyOptions {
                listen: loopback_any_port(),
                ..ProxyOptions::default()
            },
        )
        .await;
        let result = proxy.connect("postgres").await;
        if works {
            let client = result.unwrap_or_else(|e| panic!("{user}: {e}"));
            let row = client
                .query_one(
                    "select current_user::text, ssl from pg_stat_ssl where pid = pg_backend_pid()",
                    &[],
                )
                .await
                .unwrap();
            assert_eq!(row.get::<_, String>(0), user);
            assert!(row.get::<_, bool>(1), "{user}: upstream over tls");
        } else {
            let error = result.unwrap_err();
            assert_eq!(error.code(), Some(&SqlState::INVALID_PASSWORD), "{error}");
            let message = error.as_db_error().unwrap().message();
            assert!(
                message.contains("password authentication failed"),
                "{message}"
            );
        }
        let stats = proxy.stop().await;
        assert_eq!(
            stats.upstream_failures,
            u64::from(!works),
            "{user}: {stats:?}"
        );
        assert_eq!(stats.auth_retries, u64::from(!works), "{user}: {stats:?}");
    }
    drop(admin);
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The binary: serves psql, logs one line per connection and never a token, stops on
/// SIGTERM with status 0.
#[tokio::test(flavor = "multi_thread")]
async fn the_binary_serves_psql_logs_no_secret_and_stops_on_sigterm() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    for (name, overrides, role, _) in methods(&emulator) {
        let overrides: Vec<(&str, &str)> =
            overrides.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut vars = common::vars(&emulator, &overrides);
        // Our crates at their most verbose: still no secret.
        vars.push((
            "PGAUTH_LOG".into(),
            "warn,cloud_pg_auth_cli=trace,cloud_pg_auth=trace".into(),
        ));
        let mut proxy = Command::new(PGAUTH)
            .args(["proxy", "--listen", "127.0.0.1:0"])
            .env_clear()
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(proxy.stderr.take().unwrap()).lines();
        let mut log = String::new();
        let addr = loop {
            let line = stderr
                .next_line()
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{name}: {log}"));
            log.push_str(&line);
            log.push('\n');
            if let Some(rest) = line.strip_prefix("pgauth: proxy listening on ") {
                break rest.split(':').take(2).collect::<Vec<_>>().join(":");
            }
        };
        let port = addr.rsplit(':').next().unwrap().to_string();
        let client_vars: Vec<(String, String)> = [
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", port.as_str()),
            ("PGUSER", role.as_str()),
            ("PGDATABASE", "postgres"),
            ("PGSSLMODE", "disable"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let psql = client(
            "psql",
            &["-X", "-At", "-c", "select current_user"],
            &client_vars,
        )
        .await;
        assert_eq!(psql.code, 0, "{name}: {}", psql.err);
        assert_eq!(psql.out, format!("{role}\n"));
        let pid = proxy.id().unwrap().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .await
                .unwrap()
                .success()
        );
        while let Some(line) = stderr.next_line().await.unwrap() {
            log.push_str(&line);
            log.push('\n');
        }
        let status = proxy.wait().await.unwrap();
        assert!(status.success(), "{name}: {status:?}\n{log}");
        assert!(log.contains("session opened"), "{name}: {log}");
        assert!(log.contains("upstream_ms="), "{name}: {log}");
        assert!(log.contains(&format!("user={role}")), "{name}: {log}");
        assert!(log.contains("proxy stopped"), "{name}: {log}");
        // No token in any form: a JWT starts with eyJ, an RDS token carries its signature.
        for secret in [
            "eyJ",
            "X-Amz-Signature",
            "X-Amz-Security-Token",
            emulator.password(),
        ] {
            assert!(!log.contains(secret), "{name}: {secret} in the log:\n{log}");
        }
    }
}
