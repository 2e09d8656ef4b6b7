//! The real `pgauth` binary against the emulator, with only the emulator's exports and
//! `PATH` as its environment, and the real psql.

mod common;

use std::process::Stdio;

use cloud_pg_auth_testkit::{Emulator, EmulatorOptions};
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

const PGAUTH: &str = env!("CARGO_BIN_EXE_pgauth");

struct Output {
    code: i32,
    out: String,
    err: String,
}

/// Runs `program args` with exactly `vars` as its environment, `stdin` as its input.
async fn exec(program: &str, args: &[&str], vars: &[(String, String)], stdin: &str) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let output = child.wait_with_output().await.unwrap();
    Output {
        code: output.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&output.stdout).into_owned(),
        err: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn pgauth(args: &[&str], vars: &[(String, String)]) -> Output {
    exec(PGAUTH, args, vars, "").await
}

/// `pgauth ARGS` with the emulator's exports and `overrides` exits with `code` and prints
/// `expected` (a fragment) on standard output.
async fn check(
    emulator: &Emulator,
    overrides: &[(&str, &str)],
    args: &[&str],
    code: i32,
    expected: &str,
) -> Output {
    let ran = pgauth(args, &common::vars(emulator, overrides)).await;
    assert_eq!(
        ran.code, code,
        "pgauth {args:?} {overrides:?}\nstdout: {}\nstderr: {}",
        ran.out, ran.err
    );
    assert!(
        ran.out.contains(expected),
        "pgauth {args:?}: {expected:?} not in\n{}\nstderr: {}",
        ran.out,
        ran.err
    );
    ran
}

#[tokio::test]
async fn the_binary_runs_every_command() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let azure: &[(&str, &str)] = &[("PGAUTH_METHOD", "azure")];
    let aws_role = emulator.aws_role().to_string();
    let aws: &[(&str, &str)] = &[("PGAUTH_METHOD", "aws"), ("PGUSER", &aws_role)];
    let select = ["-q", "psql", "--", "-X", "-At", "-c", "select current_user"];

    check(&emulator, &[], &["--help"], 0, "examples:").await;
    check(
        &emulator,
        &[],
        &["sql", "create-role", "--help"],
        0,
        "--grant owner",
    )
    .await;
    check(&emulator, &[], &["--version"], 0, "pgauth 0.").await;
    let bad = check(&emulator, &[], &["tokn"], 2, "").await;
    assert!(bad.err.contains("unknown command \"tokn\""), "{}", bad.err);

    // psql with the token in its environment; its exit status is pgauth's.
    check(
        &emulator,
        azure,
        &select,
        0,
        &format!("{}\n", emulator.azure_role()),
    )
    .await;
    check(&emulator, aws, &select, 0, &format!("{aws_role}\n")).await;
    let failed = check(
        &emulator,
        azure,
        &["-q", "psql", "--", "-X", "-c", "select nonsense"],
        1,
        "",
    )
    .await;
    assert!(
        failed.err.contains("column \"nonsense\" does not exist"),
        "{}",
        failed.err
    );

    // token: one line, a password that logs in.
    for (overrides, user) in [(azure, emulator.azure_role()), (aws, aws_role.as_str())] {
        let ran = check(&emulator, overrides, &["token"], 0, "").await;
        let token = ran.out.strip_suffix('\n').unwrap();
        assert!(!token.contains('\n'));
        assert!(ran.err.starts_with("pgauth: token from "), "{}", ran.err);
        assert!(!ran.err.contains(token));
        let client = emulator.connect(user, token).await.unwrap();
        let row = client
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), user);
    }

    // env: what a shell evaluates, then psql reads.
    let mut vars = common::vars(&emulator, azure);
    vars.push(("PGAUTH_BIN".into(), PGAUTH.into()));
    let shell = exec(
        "sh",
        &[
            "-c",
            "eval \"$(\"$PGAUTH_BIN\" -q env)\" && psql -X -At -c 'select current_user'",
        ],
        &vars,
        "",
    )
    .await;
    assert_eq!(shell.code, 0, "{}", shell.err);
    assert_eq!(shell.out, format!("{}\n", emulator.azure_role()));
    assert!(
        shell.err.contains("warning: the output holds a token"),
        "{}",
        shell.err
    );

    // doctor: 0 only when every step passed.
    check(&emulator, azure, &["doctor"], 0, "verdict: OK").await;
    check(&emulator, aws, &["doctor", "--json"], 0, "\"ok\": true").await;
    check(
        &emulator,
        &[("PGAUTH_METHOD", "azure"), ("PGUSER", "nobody")],
        &["doctor"],
        1,
        "FAILED at step 6 (login)",
    )
    .await;
    let unset = check(&emulator, &[("PGAUTH_METHOD", "")], &["token"], 1, "").await;
    assert!(
        unset
            .err
            .contains("PGAUTH_METHOD: cannot tell how to log in"),
        "{}",
        unset.err
    );
}

#[tokio::test]
async fn create_role_output_runs_in_psql_as_the_administrator() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let server = emulator.postgres();
    server.execute_admin("CREATE DATABASE app").await.unwrap();
    server
        .execute_admin("CREATE DATABASE \"a=b host=evil\"")
        .await
        .unwrap();
    let socket = server.socket_dir().display().to_string();
    let port = server.port().to_string();
    let mut admin = common::vars(&emulator, &[]);
    admin.retain(|(k, _)| !k.starts_with("PG"));
    let psql_admin = |db: &'static str| {
        vec![
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            &socket,
            "-p",
            &port,
            "-U",
            server.superuser(),
            "-d",
            db,
        ]
    };
    exec(
        "psql",
        &psql_admin("app"),
        &admin,
        "CREATE TABLE before (x int); INSERT INTO before VALUES (1);",
    )
    .await;

    let sql = pgauth(
        &[
            "sql",
            "create-role",
            "--method",
            "aws",
            "--name",
            "app_reader",
            "--database",
            "app",
            "--grant",
            "read",
        ],
        &admin,
    )
    .await;
    assert_eq!(sql.code, 0, "{}", sql.err);
    let ran = exec("psql", &psql_admin("postgres"), &admin, &sql.out).await;
    assert_eq!(ran.code, 0, "{}\n{}", ran.err, sql.out);
    // Default privileges cover tables the administrator creates afterwards.
    exec(
        "psql",
        &psql_admin("app"),
        &admin,
        "CREATE TABLE after (y int); INSERT INTO after VALUES (2);",
    )
    .await;

    let reader = [
        ("PGAUTH_METHOD", "aws"),
        ("PGUSER", "app_reader"),
        ("PGDATABASE", "app"),
    ];
    check(
        &emulator,
        &reader,
        &[
            "-q",
            "psql",
            "--",
            "-X",
            "-At",
            "-c",
            "select (select x from before) + (select y from after)",
        ],
        0,
        "3\n",
    )
    .await;
    let write = check(
        &emulator,
        &reader,
        &[
            "-q",
            "psql",
            "--",
            "-X",
            "-c",
            "insert into before values (9)",
        ],
        1,
        "",
    )
    .await;
    assert!(write.err.contains("permission denied"), "{}", write.err);

    // A database name psql's \connect would misread: no \connect, and the guard stops the
    // grants from landing in the database the script is run in.
    let sql = pgauth(
        &[
            "sql",
            "create-role",
            "--method",
            "aws",
            "--name",
            "evil_reader",
            "--database",
            "a=b host=evil",
            "--grant",
            "write",
        ],
        &admin,
    )
    .await;
    assert!(!sql.out.contains("\\connect"), "{}", sql.out);
    let ran = exec("psql", &psql_admin("postgres"), &admin, &sql.out).await;
    assert_ne!(ran.code, 0);
    assert!(
        ran.err
            .contains("connect to the database a=b host=evil before granting"),
        "{}",
        ran.err
    );
    let ran = exec(
        "psql",
        &[psql_admin("postgres"), vec!["-At", "-c", "select (select count(*) from pg_default_acl), (select count(*) from pg_roles where rolname = 'evil_reader')"]].concat(),
        &admin,
        "",
    )
    .await;
    // The role was created (first transaction); no default privileges were set here.
    assert_eq!(ran.out, "0|1\n", "{}", ran.err);
}

/// A TCP listener standing for a server the caller's shell points at: it records who
/// connects and closes each connection at once.
struct Trap {
    port: u16,
    seen: tokio::sync::mpsc::UnboundedReceiver<std::net::SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl Trap {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, seen) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                drop(stream);
                if tx.send(peer).is_err() {
                    break;
                }
            }
        });
        Self { port, seen, task }
    }

    /// The connections made so far. A last connection of our own marks the end: the
    /// listener accepts in arrival order, and whatever psql opened arrived before it exited.
    async fn connections(mut self) -> Vec<std::net::SocketAddr> {
        let marker = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let marker = marker.local_addr().unwrap();
        let mut before = Vec::new();
        while let Some(peer) = self.seen.recv().await {
            if peer == marker {
                break;
            }
            before.push(peer);
        }
        self.task.abort();
        before
    }
}

/// A service file whose service sends logins to `port` in plaintext, as another user.
fn hostile_service_file(emulator: &Emulator, port: u16) -> String {
    let path = emulator.dir().join("hostile_pg_service.conf");
    std::fs::write(
        &path,
        format!(
            "[pgauth_hostile]\nhost=127.0.0.1\nport={port}\nsslmode=disable\nuser=hijacked\ndbname=hijacked\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn psql_ignores_a_service_file_in_the_callers_environment() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let trap = Trap::start().await;
    let service_file = hostile_service_file(&emulator, trap.port);
    // libpq ranks a service file above PGHOST, PGPORT and PGSSLMODE from the environment.
    let hostile = [
        ("PGAUTH_METHOD", "azure"),
        ("PGSERVICEFILE", service_file.as_str()),
        ("PGSERVICE", "pgauth_hostile"),
    ];
    let accepted = emulator.stats().logins_accepted;
    check(
        &emulator,
        &hostile,
        &["-q", "psql", "--", "-X", "-At", "-c", "select current_user"],
        0,
        &format!("{}\n", emulator.azure_role()),
    )
    .await;
    // The login reached the emulator's front, which takes only verified TLS logins.
    assert_eq!(emulator.stats().logins_accepted, accepted + 1);
    assert_eq!(
        trap.connections().await,
        [],
        "the token went to the service's host"
    );
}

#[tokio::test]
async fn env_output_clears_a_service_file_from_the_calling_shell() {
    let emulator = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let trap = Trap::start().await;
    let service_file = hostile_service_file(&emulator, trap.port);
    let mut vars = common::vars(
        &emulator,
        &[
            ("PGAUTH_METHOD", "azure"),
            ("PGSERVICEFILE", service_file.as_str()),
            ("PGSERVICE", "pgauth_hostile"),
        ],
    );
    vars.push(("PGAUTH_BIN".into(), PGAUTH.into()));
    let shell = exec(
        "sh",
        &[
            "-c",
            "eval \"$(\"$PGAUTH_BIN\" -q env)\" && psql -X -At -c 'select current_user'",
        ],
        &vars,
        "",
    )
    .await;
    assert_eq!(shell.code, 0, "{}", shell.err);
    assert_eq!(shell.out, format!("{}\n", emulator.azure_role()));
    assert_eq!(
        trap.connections().await,
        [],
        "the token went to the service's host"
    );
}
