//! Where the proxy may listen, how it shuts down, and the `pgauth proxy` binary end to end.

use super::*;

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
