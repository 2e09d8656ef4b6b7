//! `pgauth doctor`: every step passes on a good set-up, and each wrong one is the step that fails, with a fix that names the setting.

use super::*;

/// Runs `pgauth doctor --json` and checks the failed step and a fragment of its fix.
async fn check_doctor(env: &cloud_pg_auth::Env, failed: Option<&str>, fix: &str) -> Value {
    let ran = pgauth(&["doctor", "--json"], env).await;
    let report: Value =
        serde_json::from_str(&ran.out).unwrap_or_else(|e| panic!("{e}: {}", ran.out));
    assert_eq!(report["failed_step"].as_str(), failed, "{report:#}");
    assert_eq!(report["ok"], failed.is_none(), "{report:#}");
    assert_eq!(ran.code(), Some(if failed.is_none() { 0 } else { 1 }));
    let steps = report["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 8);
    let mut reached = true;
    for step in steps {
        let status = step["status"].as_str().unwrap();
        if reached {
            if Some(step["name"].as_str().unwrap()) == failed {
                assert_eq!(status, "failed", "{step:#}");
                let text = step["fix"].as_str().unwrap();
                assert!(text.contains(fix), "fix {text:?} lacks {fix:?}");
                reached = false;
            } else {
                assert!(matches!(status, "ok" | "skipped"), "{step:#}");
            }
        } else {
            assert_eq!(status, "not_run", "{step:#}");
        }
    }
    report
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
}

#[tokio::test]
async fn doctor_passes_every_step_and_never_shows_the_token() {
    let emulator = emulator().await;
    let aws_role = emulator.aws_role().to_string();
    let cases: [&[(&str, &str)]; 3] = [
        &[AZURE],
        &[AZURE, MANAGED_IDENTITY],
        &[AWS, ("PGUSER", &aws_role)],
    ];
    for overrides in cases {
        let env = env(&emulator, overrides);
        let report = check_doctor(&env, None, "").await;
        let token = pgauth(&["token"], &env).await.out;
        let signature = token.trim().rsplit(['.', '=']).next().unwrap();
        assert!(!report.to_string().contains(signature), "{report}");
        // The people's version: one line per step, a verdict.
        let human = pgauth(&["doctor"], &env).await;
        assert_eq!(human.code(), Some(0));
        assert!(human.out.contains("verdict: OK"), "{}", human.out);
        for (name, _) in cloud_pg_auth_cli::DOCTOR_STEPS {
            assert!(
                human.out.contains(&format!(" {name} ")),
                "{name}: {}",
                human.out
            );
        }
        assert!(!human.out.contains(signature));
    }
    let azure = check_doctor(&env(&emulator, &[AZURE]), None, "").await;
    assert_eq!(
        step(&azure, "token")["data"]["aud"],
        "https://ossrdbms-aad.database.windows.net"
    );
    assert_eq!(
        step(&azure, "current_user")["data"]["current_user"],
        emulator.azure_role()
    );
    let aws = check_doctor(&env(&emulator, &[AWS, ("PGUSER", &aws_role)]), None, "").await;
    assert_eq!(step(&aws, "roles")["data"]["member_of"][0], "rds_iam");
}

#[tokio::test]
async fn doctor_stops_at_the_step_that_is_wrong() {
    let emulator = emulator().await;
    let cases: [(Overrides<'_>, &str, &str); 6] = [
        (
            &[AZURE, ("PGSSLMODE", "disable")],
            "settings",
            "change PGSSLMODE",
        ),
        (
            &[("PGAUTH_METHOD", "bogus")],
            "settings",
            "change PGAUTH_METHOD",
        ),
        (
            &[AZURE, ("PGAUTH_AZURE_CREDENTIAL", "client-secret")],
            "credential",
            "AZURE_CLIENT_SECRET",
        ),
        (
            &[
                AZURE,
                MANAGED_IDENTITY,
                ("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000000"),
            ],
            "token",
            "AZURE_CLIENT_ID",
        ),
        // Wrong audience: a scope for Azure SQL Database instead of PostgreSQL. The settings
        // refuse it now (such a token would go to the server as a password).
        (
            &[
                AZURE,
                (
                    "PGAUTH_AZURE_SCOPE",
                    "https://database.windows.net/.default",
                ),
            ],
            "settings",
            "unset PGAUTH_AZURE_SCOPE",
        ),
        // A role mapped to another identity.
        (
            &[AZURE, ("PGUSER", "pgauth-webapp")],
            "login",
            "(PGUSER=pgauth-uami)",
        ),
    ];
    for (overrides, failed, fix) in cases {
        check_doctor(&env(&emulator, overrides), Some(failed), fix).await;
    }
}

#[tokio::test]
async fn doctor_explains_a_server_in_another_cloud() {
    // The server is in US Gov; the client asks for the public cloud's audience. The host
    // (127.0.0.1) does not say which cloud the server is in, so the server's refusal at
    // login is the first place the mismatch shows; the fix names the cloud it asked for.
    let emulator = Emulator::start(EmulatorOptions {
        cloud: Cloud::UsGov,
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let report = check_doctor(
        &env(&emulator, &[AZURE]),
        Some("login"),
        "PGAUTH_AZURE_CLOUD=usgov",
    )
    .await;
    let login = step(&report, "login");
    assert_eq!(login["data"]["cause"], "audience");
    assert!(
        login["summary"]
            .as_str()
            .unwrap()
            .contains("does not have a valid audience claim"),
        "{login:#}"
    );
    // The fix works.
    check_doctor(
        &env(&emulator, &[AZURE, ("PGAUTH_AZURE_CLOUD", "usgov")]),
        None,
        "",
    )
    .await;
}

#[tokio::test]
async fn doctor_names_the_role_to_create_for_an_unmapped_identity() {
    let emulator = emulator().await;
    // The system-assigned identity, whose role an administrator has not created.
    let overrides = [AZURE, MANAGED_IDENTITY, ("AZURE_CLIENT_ID", "")];
    emulator
        .postgres()
        .execute_admin(&format!("DROP ROLE \"{}\"", emulator.azure_system_role()))
        .await
        .unwrap();
    let oid = emulator
        .object_id_of(IdentityKind::SystemAssigned)
        .to_string();
    let report = check_doctor(
        &env(&emulator, &overrides),
        Some("login"),
        &format!("--object-id {oid}"),
    )
    .await;
    let login = step(&report, "login");
    assert_eq!(login["data"]["cause"], "unmapped_identity");
    assert_eq!(login["data"]["sqlstate"], "28P01");
    assert_eq!(
        login["data"]["message"],
        format!(
            "password authentication failed for user \"{}\"",
            emulator.azure_system_role()
        )
    );
    // The SQL the fix names, run by the administrator, makes the login work.
    let sql = pgauth(
        &[
            "sql",
            "create-role",
            "--method",
            "azure",
            "--name",
            emulator.azure_system_role(),
            "--object-id",
            &oid,
            "--type",
            "service",
        ],
        &env(&emulator, &[]),
    )
    .await;
    assert_eq!(sql.code(), Some(0), "{}", sql.err);
    emulator.postgres().execute_admin(&sql.out).await.unwrap();
    check_doctor(&env(&emulator, &overrides), None, "").await;
}

/// Asks `port` for TLS until it answers `N` (a reload is asynchronous).
async fn wait_for_no_tls(port: u16) {
    poll_until(
        "the server stops offering TLS after ssl = off",
        PATIENCE,
        async || {
            let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            tcp.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
                .await
                .unwrap();
            let mut answer = [0u8; 1];
            tcp.read_exact(&mut answer).await.unwrap();
            answer[0] == b'N'
        },
    )
    .await;
}

#[tokio::test]
async fn doctor_stops_at_tls_for_a_server_without_tls() {
    let emulator = emulator().await;
    // A real PostgreSQL listening on TCP with ssl = off: it answers 'N' to SSLRequest.
    let ca = TestCa::generate();
    let (cert_pem, key_pem) = ca.try_issue(&["localhost", "127.0.0.1"]).unwrap();
    let server = PostgresServer::start(ServerOptions {
        tcp: Some(TcpTls { cert_pem, key_pem }),
        ..ServerOptions::default()
    })
    .await
    .unwrap();
    server
        .execute_admin("ALTER SYSTEM SET ssl = off")
        .await
        .unwrap();
    server
        .execute_admin("SELECT pg_reload_conf()")
        .await
        .unwrap();
    wait_for_no_tls(server.port()).await;
    let port = server.port().to_string();
    let report = check_doctor(
        &env(&emulator, &[AZURE, ("PGPORT", &port)]),
        Some("tls"),
        "turn TLS on at the server",
    )
    .await;
    assert!(
        step(&report, "tls")["summary"]
            .as_str()
            .unwrap()
            .contains("answered 'N'"),
        "{report:#}"
    );
    // And a port nobody listens on fails at the same step, saying so.
    drop(server);
    check_doctor(
        &env(&emulator, &[AZURE, ("PGPORT", &port)]),
        Some("tls"),
        "check PGHOST and PGPORT",
    )
    .await;
}

#[tokio::test]
async fn doctor_shows_the_names_of_a_certificate_that_does_not_fit() {
    let emulator = emulator().await;
    // A real server whose certificate names another host than the one dialled.
    let ca = TestCa::generate();
    let (cert_pem, key_pem) = ca.try_issue(&["db.example.internal"]).unwrap();
    let server = PostgresServer::start(ServerOptions {
        tcp: Some(TcpTls { cert_pem, key_pem }),
        ..ServerOptions::default()
    })
    .await
    .unwrap();
    let ca_file = emulator.dir().join("other-ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let port = server.port().to_string();
    let ca_file = ca_file.display().to_string();
    let report = check_doctor(
        &env(
            &emulator,
            &[AZURE, ("PGPORT", &port), ("PGSSLROOTCERT", &ca_file)],
        ),
        Some("tls"),
        "connect by a name the certificate holds (db.example.internal)",
    )
    .await;
    assert_eq!(
        step(&report, "tls")["data"]["certificate_names"][0],
        "db.example.internal"
    );
    // The emulator's CA is not among the public roots the library bundles.
    check_doctor(
        &env(&emulator, &[AZURE, ("PGSSLROOTCERT", "")]),
        Some("tls"),
        "set PGSSLROOTCERT",
    )
    .await;
}

#[tokio::test]
async fn doctor_hint_for_a_name_mismatch_names_hostaddr_not_verify_ca() {
    let emulator = emulator().await;
    let ca = TestCa::generate();
    let (cert_pem, key_pem) = ca.try_issue(&["db.example.internal"]).unwrap();
    let server = PostgresServer::start(ServerOptions {
        tcp: Some(TcpTls { cert_pem, key_pem }),
        ..ServerOptions::default()
    })
    .await
    .unwrap();
    let ca_file = emulator.dir().join("other-ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let port = server.port().to_string();
    let ca_file = ca_file.display().to_string();
    let base = [AZURE, ("PGPORT", &port), ("PGSSLROOTCERT", &ca_file)];
    let report = check_doctor(&env(&emulator, &base), Some("tls"), "PGHOSTADDR").await;
    let tls = step(&report, "tls");
    let fix = tls["fix"].as_str().unwrap();
    assert!(
        !fix.contains("verify-ca"),
        "the fix recommends verify-ca: {fix}"
    );
    assert!(fix.contains("keep that name in PGHOST"), "{fix}");
    let details = tls["details"].to_string();
    assert!(
        details.contains("verify-ca checks only the chain"),
        "{details}"
    );

    // Following the hint: the name in PGHOST, the address in PGHOSTADDR. The TLS step now
    // passes with verify-full (the login fails: that server knows no token).
    let followed = [
        AZURE,
        ("PGHOST", "db.example.internal"),
        ("PGHOSTADDR", "127.0.0.1"),
        ("PGPORT", &port),
        ("PGSSLROOTCERT", &ca_file),
    ];
    let report = check_doctor(&env(&emulator, &followed), Some("login"), "").await;
    let tls = step(&report, "tls");
    assert_eq!(tls["status"], "ok", "{tls:#}");
    assert!(
        tls["summary"]
            .as_str()
            .unwrap()
            .contains("chain and host name (verify-full)"),
        "{tls:#}"
    );
}

#[tokio::test]
async fn doctor_reads_a_bounded_number_of_role_memberships() {
    let emulator = emulator().await;
    let extra = cloud_pg_auth_cli::DOCTOR_MAX_ROLES + 10;
    emulator
        .postgres()
        .execute_admin(&format!(
            "DO $$ BEGIN FOR i IN 1..{extra} LOOP \
             EXECUTE format('CREATE ROLE %I', 'pgauth_group_' || i); \
             EXECUTE format('GRANT %I TO %I', 'pgauth_group_' || i, '{}'); \
             END LOOP; END $$",
            emulator.azure_role()
        ))
        .await
        .unwrap();
    let report = check_doctor(&env(&emulator, &[AZURE]), None, "").await;
    let roles = step(&report, "roles");
    let listed = roles["data"]["member_of"].as_array().unwrap();
    assert_eq!(
        listed.len() as i64,
        cloud_pg_auth_cli::DOCTOR_MAX_ROLES,
        "{roles:#}"
    );
    let total = roles["data"]["member_of_count"].as_i64().unwrap();
    assert!(total >= extra, "{roles:#}");
    let more = format!(" and {} more;", total - cloud_pg_auth_cli::DOCTOR_MAX_ROLES);
    assert!(
        roles["summary"].as_str().unwrap().contains(&more),
        "{roles:#}"
    );
}
