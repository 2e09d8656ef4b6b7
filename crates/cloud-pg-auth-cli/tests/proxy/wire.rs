//! The startup requests a server answers, local TLS, a local password and a Unix socket, and SCRAM or MD5 upstream servers.

use super::*;

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
