//! Starting and stopping: nothing survives a stop; the standalone PostgreSQL server; the
//! binary's command-line contract.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use cloud_pg_auth_testkit::postgres::{PostgresServer, ServerOptions, TcpTls};
use cloud_pg_auth_testkit::tls::TestCa;
use cloud_pg_auth_testkit::{Emulator, EmulatorOptions, MintOptions, http, poll_until};
use tokio::io::{AsyncBufReadExt, BufReader};

fn alive(pid: u32) -> bool {
    // A zombie is not alive for our purposes.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Child processes of `pid` (the postmaster's backends and auxiliary processes).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat"))
            && let Some(rest) = stat.rsplit(')').next()
            && rest.split_whitespace().nth(1) == Some(&pid.to_string())
        {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn stop_and_drop_leave_no_process_or_directory() {
    // stop()
    let em = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let pid = em.postgres().pid().unwrap();
    let kids = children(pid);
    assert!(
        !kids.is_empty(),
        "the postmaster has its auxiliary processes"
    );
    let dirs = [
        em.postgres().base_dir().to_path_buf(),
        em.dir().to_path_buf(),
    ];
    let token = em.mint_entra_token(MintOptions::default());
    let session = em.connect(em.azure_role(), &token).await.unwrap();
    let port = em.pg_port();
    em.stop().await.unwrap();
    assert!(!alive(pid));
    assert!(kids.iter().all(|k| !alive(*k)), "children survived");
    for d in &dirs {
        assert!(!d.exists(), "{} survived", d.display());
    }
    assert!(session.simple_query("SELECT 1").await.is_err());
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );

    // Drop, as when a test panics.
    let em = Emulator::start(EmulatorOptions::default()).await.unwrap();
    let pid = em.postgres().pid().unwrap();
    let kids = children(pid);
    let dirs = [
        em.postgres().base_dir().to_path_buf(),
        em.dir().to_path_buf(),
    ];
    drop(em);
    assert!(!alive(pid));
    assert!(kids.iter().all(|k| !alive(*k)), "children survived");
    for d in &dirs {
        assert!(!d.exists(), "{} survived", d.display());
    }
}

#[tokio::test]
async fn standalone_server_with_tls_password_logins() {
    let ca = TestCa::generate();
    let (cert_pem, key_pem) = ca.issue(&["localhost", "127.0.0.1"]);
    let pg = PostgresServer::start(ServerOptions {
        tcp: Some(TcpTls { cert_pem, key_pem }),
        ..ServerOptions::default()
    })
    .await
    .unwrap();
    assert!(pg.socket_path().exists());
    let mode = std::fs::metadata(pg.socket_dir()).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o700
    );
    pg.execute_admin("CREATE ROLE app LOGIN PASSWORD 'one'")
        .await
        .unwrap();
    let connector = cloud_pg_auth_testkit::pg_tls::MakeRustlsConnect::new(&ca.cert_pem()).unwrap();
    let login = |password: &'static str| {
        let connector = connector.clone();
        let port = pg.port();
        async move {
            let mut c = tokio_postgres::Config::new();
            c.host("127.0.0.1")
                .port(port)
                .user("app")
                .password(password)
                .dbname("postgres")
                .ssl_mode(tokio_postgres::config::SslMode::Require);
            let (client, conn) = c.connect(connector).await?;
            tokio::spawn(conn);
            let row = client
                .query_one(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                    &[],
                )
                .await?;
            Ok::<bool, tokio_postgres::Error>(row.get(0))
        }
    };
    assert!(login("one").await.unwrap(), "the session is encrypted");
    pg.execute_admin("ALTER ROLE app PASSWORD 'two'")
        .await
        .unwrap();
    let err = login("one").await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "28P01");
    assert!(login("two").await.unwrap());

    // Restart keeps port and data.
    let client = pg.admin_client().await.unwrap();
    pg.restart().await.unwrap();
    assert!(client.simple_query("SELECT 1").await.is_err());
    assert!(login("two").await.unwrap());

    let base = pg.base_dir().to_path_buf();
    let pid = pg.pid().unwrap();
    pg.stop().await.unwrap();
    assert!(!base.exists());
    assert!(!alive(pid));
}

async fn read_exports(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) -> Vec<(String, String)> {
    let mut exports = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        if line == "# ready" {
            return exports;
        }
        let rest = line.strip_prefix("export ").expect("export lines only");
        let (name, value) = rest.split_once('=').unwrap();
        let value = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .expect("single-quoted")
            .replace("'\\''", "'");
        exports.push((name.to_string(), value));
    }
    panic!("no `# ready` line; exports so far: {exports:?}");
}

#[tokio::test]
async fn the_binary_prints_exports_and_stops_when_stdin_closes() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgauth-emulator"))
        .args(["--token-lifetime", "1800", "--cloud", "china"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let exports = read_exports(&mut lines).await;
    let get = |name: &str| {
        exports
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{name} not exported"))
    };
    for name in [
        "PGHOST",
        "PGPORT",
        "PGDATABASE",
        "PGSSLMODE",
        "PGSSLROOTCERT",
        "IDENTITY_ENDPOINT",
        "IDENTITY_HEADER",
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_AUTHORITY_HOST",
        "AZURE_FEDERATED_TOKEN_FILE",
        "PGAUTH_EMULATOR_AZURE_ROLE",
        "PGAUTH_EMULATOR_AZURE_USER_ROLE",
        "PGAUTH_EMULATOR_AZURE_WORKLOAD_ROLE",
        "PGAUTH_EMULATOR_AZURE_CLIENT_SECRET",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "PGAUTH_EMULATOR_AWS_ROLE",
        "GCE_METADATA_HOST",
        "PGAUTH_EMULATOR_GCP_ROLE",
        "PGAUTH_EMULATOR_GCP_KEY_FILE",
        "PGAUTH_EMULATOR_GCP_KEY_ROLE",
        "PGAUTH_EMULATOR_GCP_USER_FILE",
        "PGAUTH_EMULATOR_GCP_USER",
        "PGAUTH_EMULATOR_PASSWORD_ROLE",
        "PGAUTH_EMULATOR_PASSWORD",
        "PGAUTH_EMULATOR_CONTROL",
        "PGAUTH_EMULATOR_IMDS_ENDPOINT",
    ] {
        assert!(!get(name).is_empty(), "{name} is empty");
    }
    assert!(
        !exports.iter().any(|(k, _)| k == "AZURE_CLIENT_SECRET"),
        "AZURE_CLIENT_SECRET changes credential selection"
    );
    assert_eq!(get("PGHOST"), "127.0.0.1");
    assert_eq!(get("PGSSLMODE"), "verify-full");
    let authority = get("AZURE_AUTHORITY_HOST");
    assert!(authority.starts_with("https://127.0.0.1:") && authority.ends_with('/'));
    assert!(Path::new(&get("PGSSLROOTCERT")).is_file());
    assert!(Path::new(&get("AZURE_FEDERATED_TOKEN_FILE")).is_file());

    // curl-like request on the identity endpoint, then psql with the token.
    let china = "https://ossrdbms-aad.database.chinacloudapi.cn";
    let url = format!(
        "{}?resource={}&api-version=2019-08-01&client_id={}",
        get("IDENTITY_ENDPOINT"),
        url::form_urlencoded::byte_serialize(china.as_bytes()).collect::<String>(),
        get("AZURE_CLIENT_ID")
    );
    let r = http::get(
        &url,
        &[("X-IDENTITY-HEADER", &get("IDENTITY_HEADER"))],
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json().unwrap();
    assert_eq!(body["expires_in"], "1800");
    let token = body["access_token"].as_str().unwrap().to_string();
    let mut psql = tokio::process::Command::new(common::psql());
    psql.args(["-X", "-A", "-t", "-c", "SELECT current_user"]);
    for (k, v) in &exports {
        psql.env(k, v);
    }
    psql.env("PGUSER", get("PGAUTH_EMULATOR_AZURE_ROLE"))
        .env("PGPASSWORD", &token);
    let out = psql.output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        get("PGAUTH_EMULATOR_AZURE_ROLE")
    );

    // The control endpoint is there.
    let stats = http::get(
        &format!("{}/stats", get("PGAUTH_EMULATOR_CONTROL")),
        &[],
        None,
    )
    .await
    .unwrap()
    .json()
    .unwrap();
    assert_eq!(stats["logins_accepted"], 1);
    assert_eq!(stats["token_requests"]["app_service"], 1);

    // Closing stdin stops it and removes everything.
    let ca_dir = Path::new(&get("PGSSLROOTCERT"))
        .parent()
        .unwrap()
        .to_path_buf();
    drop(child.stdin.take());
    let mut status = None;
    poll_until("the emulator exits", Duration::from_secs(30), async || {
        status = child.try_wait().unwrap();
        status.is_some()
    })
    .await;
    let status = status.unwrap();
    assert!(status.success(), "{status}");
    assert!(!ca_dir.exists());
    let port: u16 = get("PGPORT").parse().unwrap();
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_binary_stops_on_sigterm() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgauth-emulator"))
        .arg("--ignore-stdin")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let exports = read_exports(&mut lines).await;
    let ca = exports
        .iter()
        .find(|(k, _)| k == "PGSSLROOTCERT")
        .map(|(_, v)| v.clone())
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    assert!(!Path::new(&ca).exists());

    // Bad arguments are refused.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pgauth-emulator"))
        .args(["--cloud", "mars"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown cloud"));
}
