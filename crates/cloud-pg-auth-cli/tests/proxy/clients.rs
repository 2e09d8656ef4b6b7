//! Real clients through the proxy: psql, pg_dump and pgbench for every method, cancels, the connection limit, token expiry and unknown users or databases.

use super::*;

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
