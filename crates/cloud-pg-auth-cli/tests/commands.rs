//! Every command run in-process against the emulator (loopback only).

mod common;

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

#[tokio::test]
async fn token_prints_a_token_that_logs_in() {
    let emulator = emulator().await;
    let aws_role = emulator.aws_role().to_string();
    let cases: [(Overrides<'_>, &str, &str, &str); 4] = [
        (&[AZURE], emulator.azure_role(), "xms_mirid", "public"),
        (
            &[AZURE, MANAGED_IDENTITY],
            emulator.azure_role(),
            "xms_mirid",
            "public",
        ),
        (
            &[AZURE, MANAGED_IDENTITY, ("AZURE_CLIENT_ID", "")],
            emulator.azure_system_role(),
            "xms_mirid",
            "public",
        ),
        (
            &[AWS, ("PGUSER", &aws_role)],
            &aws_role,
            "settings",
            "us-east-1",
        ),
    ];
    for (overrides, user, source, cloud) in cases {
        let env = env(&emulator, overrides);
        let plain = pgauth(&["token"], &env).await;
        assert_eq!(plain.code(), Some(0), "{overrides:?}: {}", plain.err);
        let token = plain.out.trim_end_matches('\n');
        assert_eq!(plain.out.lines().count(), 1, "{overrides:?}");
        assert!(!plain.err.contains(token), "progress shows the token");
        assert_eq!(login(&emulator, user, token).await, user);

        let json = pgauth(&["-q", "token", "--json"], &env).await;
        assert_eq!(json.code(), Some(0), "{}", json.err);
        assert_eq!(json.err, "", "--quiet prints nothing on stderr");
        let v: Value = serde_json::from_str(&json.out).unwrap();
        let method = if overrides.contains(&AWS) {
            "aws"
        } else {
            "azure"
        };
        assert_eq!(v["method"], method, "{v}");
        assert_eq!(v["cloud"], cloud, "{v}");
        assert_eq!(v["username"], user, "{v}");
        assert_eq!(v["username_source"], source, "{v}");
        assert!(v["identity"].is_string(), "{v}");
        assert!(v["expires_at"].as_str().unwrap().ends_with('Z'), "{v}");
        let token = v["token"].as_str().unwrap();
        assert_eq!(login(&emulator, user, token).await, user);
    }
}

#[tokio::test]
async fn env_prints_exports_that_log_in_and_warns() {
    let emulator = emulator().await;
    let aws_role = emulator.aws_role().to_string();
    let cases: [(&[(&str, &str)], &str); 2] = [
        (&[AZURE], emulator.azure_role()),
        (&[AWS, ("PGUSER", &aws_role)], &aws_role),
    ];
    for (overrides, user) in cases {
        let ran = pgauth(&["-q", "env"], &env(&emulator, overrides)).await;
        assert_eq!(ran.code(), Some(0), "{}", ran.err);
        assert!(
            ran.err
                .contains("warning: the output holds a token in PGPASSWORD"),
            "{}",
            ran.err
        );
        let exports = parse_exports(&ran.out);
        let get = |name: &str| {
            exports
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("{name} missing in {exports:?}"))
        };
        assert_eq!(get("PGHOST"), "127.0.0.1");
        assert_eq!(get("PGPORT"), emulator.pg_port().to_string());
        assert_eq!(get("PGUSER"), user);
        assert_eq!(get("PGDATABASE"), "postgres");
        assert_eq!(get("PGSSLMODE"), "verify-full");
        assert_eq!(
            get("PGSSLROOTCERT"),
            emulator.ca_path().display().to_string()
        );
        let token = get("PGPASSWORD");
        assert!(!ran.err.contains(token), "the warning shows the token");
        assert_eq!(login(&emulator, user, token).await, user);
    }
}

/// `pgauth psql` with `overrides`: the environment psql gets, and its arguments.
async fn psql_env(
    emulator: &Emulator,
    overrides: &[(&str, &str)],
    args: &[&str],
) -> (Vec<(String, String)>, Vec<String>) {
    let mut argv = vec!["-q", "psql"];
    if !args.is_empty() {
        argv.push("--");
        argv.extend_from_slice(args);
    }
    let ran = pgauth(&argv, &env(emulator, overrides)).await;
    let ExitAction::Exec(command) = ran.outcome else {
        panic!("{overrides:?}: no psql to run: {}", ran.err);
    };
    assert_eq!(command.get_program(), "psql");
    let envs = command
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_str()?.to_string(), v?.to_str()?.to_string())))
        .collect();
    let args = command
        .get_args()
        .map(|a| a.to_str().unwrap().to_string())
        .collect();
    (envs, args)
}

#[tokio::test]
async fn psql_gets_the_token_in_its_environment_only() {
    let emulator = emulator().await;
    let ca = emulator.ca_path().display().to_string();
    // (settings, the PGSSLMODE psql gets, the PGSSLROOTCERT it gets)
    let cases: [(Overrides<'_>, &str, Option<&str>); 5] = [
        (&[AZURE], "verify-full", Some(&ca)),
        // A token is a password: a mode that does not check the server becomes verify-full.
        (&[AZURE, ("PGSSLMODE", "require")], "verify-full", Some(&ca)),
        (&[AZURE, ("PGSSLMODE", "verify-ca")], "verify-ca", Some(&ca)),
        // Without a CA file, the system store: libpq has no copy of the bundled roots.
        (
            &[
                AZURE,
                ("PGSSLMODE", ""),
                ("PGSSLROOTCERT", ""),
                ("PGAUTH_AZURE_CA_FILE", &ca),
            ],
            "verify-full",
            Some("system"),
        ),
        // The loopback opt-in passes through, as the library allows it.
        (
            &[
                AZURE,
                ("PGSSLMODE", "disable"),
                ("PGAUTH_INSECURE_LOOPBACK", "1"),
            ],
            "disable",
            Some(&ca),
        ),
    ];
    for (overrides, mode, root) in cases {
        let (envs, args) = psql_env(&emulator, overrides, &["-c", "select 1"]).await;
        let get = |name: &str| {
            envs.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("PGSSLMODE"), Some(mode), "{overrides:?}");
        assert_eq!(get("PGSSLROOTCERT"), root, "{overrides:?}");
        assert_eq!(get("PGUSER"), Some(emulator.azure_role()));
        let token = get("PGPASSWORD").expect("PGPASSWORD");
        assert_eq!(args, ["-c", "select 1"]);
        assert!(args.iter().all(|a| !a.contains(token)));
        assert_eq!(
            login(&emulator, emulator.azure_role(), token).await,
            emulator.azure_role()
        );
    }
}

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
async fn create_role_sql_is_safe_with_hostile_names() {
    let emulator = emulator().await;
    let server = emulator.postgres();
    server
        .execute_admin("CREATE TABLE public.canary (x int)")
        .await
        .unwrap();
    let (admin, connection) = server
        .admin_config()
        .connect(cloud_pg_auth::tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let hostile = [
        "x\"; DROP TABLE public.canary; --",
        "Robert'); DROP TABLE public.canary; --",
        "back\\slash\\'",
        "$pgauth$ dollar $$",
        "ünïcødé 名前",
        "  spaces  ",
        "UPPER lower",
    ];
    for (i, name) in hostile.iter().enumerate() {
        let oid = format!("00000000-0000-4000-8000-{i:012}");
        let ran = pgauth(
            &[
                "sql",
                "create-role",
                "--method",
                "azure",
                "--name",
                name,
                "--object-id",
                &oid,
            ],
            &env(&emulator, &[]),
        )
        .await;
        assert_eq!(ran.code(), Some(0), "{name:?}: {}", ran.err);
        server
            .execute_admin(&ran.out)
            .await
            .unwrap_or_else(|e| panic!("{name:?}: {e}\n{}", ran.out));
        let found: i64 = admin
            .query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[name])
            .await
            .unwrap()
            .get(0);
        assert_eq!(found, 1, "{name:?}\n{}", ran.out);
    }
    let canary: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'canary'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(canary, 1, "a hostile name ran SQL");
    // Refused outright: names that cannot be a login.
    for (args, fragment) in [
        (
            vec!["--method", "aws", "--name", "x\"; DROP TABLE t; --"],
            "cannot carry",
        ),
        (
            vec!["--method", "azure", "--name", "a\nb"],
            "control character",
        ),
    ] {
        let mut argv = vec!["sql", "create-role"];
        argv.extend(args);
        let ran = pgauth(&argv, &env(&emulator, &[])).await;
        assert_eq!(ran.code(), Some(2));
        assert!(ran.err.contains(fragment), "{}", ran.err);
        assert_eq!(ran.out, "");
    }
}

/// The grants of `pgauth sql create-role` for hostile database names, through real
/// PostgreSQL: the guard refuses to run in another database (and names the target exactly),
/// and connected to the target they grant what they say and nothing else runs.
#[tokio::test]
async fn create_role_grants_are_safe_with_hostile_database_names() {
    let emulator = emulator().await;
    let server = emulator.postgres();
    let admin = server.admin_client().await.unwrap();
    admin
        .batch_execute("CREATE TABLE public.canary (x int)")
        .await
        .unwrap();
    let hostile = [
        "x\"; DROP TABLE public.canary; --",
        "Robert'); DROP TABLE public.canary; --",
        "back\\slash\\'",
        "$pgauth$ dollar $$",
        "a=b host=evil",
        "%s %I percent %",
    ];
    for (i, database) in hostile.iter().enumerate() {
        // PostgreSQL's own quote_ident makes the database, independently of pgauth.
        let create: String = admin
            .query_one("SELECT format('CREATE DATABASE %I', $1::text)", &[database])
            .await
            .unwrap()
            .get(0);
        admin.batch_execute(&create).await.unwrap();
        let role = format!("app {i}");
        let oid = format!("00000000-0000-4000-8000-{i:012}");
        let ran = pgauth(
            &[
                "sql",
                "create-role",
                "--method",
                "azure",
                "--name",
                &role,
                "--object-id",
                &oid,
                "--grant",
                "write",
                "--database",
                database,
            ],
            &env(&emulator, &[]),
        )
        .await;
        assert_eq!(ran.code(), Some(0), "{database:?}: {}", ran.err);
        let at = ran
            .out
            .find("\n-- Privileges")
            .unwrap_or_else(|| panic!("{database:?}: no grants in\n{}", ran.out));
        let (create_role, grants) = ran.out.split_at(at);
        assert!(!grants.contains("\\connect"), "{database:?}\n{grants}");
        admin
            .batch_execute(create_role)
            .await
            .unwrap_or_else(|e| panic!("{database:?}: {e}\n{create_role}"));

        // In the wrong database the guard stops the script, naming the right one.
        let refused = admin.batch_execute(grants).await.unwrap_err();
        let message = refused.as_db_error().map(|e| e.message().to_string());
        assert_eq!(
            message,
            Some(format!(
                "connect to the database {database} before granting"
            )),
            "{grants}"
        );
        admin.batch_execute("ROLLBACK").await.unwrap();

        // In the right database the grants land.
        let (target, connection) = server
            .admin_config()
            .dbname(*database)
            .connect(cloud_pg_auth::tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        target
            .batch_execute("CREATE TABLE public.t (x int)")
            .await
            .unwrap();
        target
            .batch_execute(grants)
            .await
            .unwrap_or_else(|e| panic!("{database:?}: {e}\n{grants}"));
        let granted: bool = target
            .query_one(
                "SELECT has_table_privilege($1::text, 'public.t', 'INSERT')",
                &[&role],
            )
            .await
            .unwrap()
            .get(0);
        assert!(granted, "{database:?}\n{grants}");
    }
    let canary: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'canary'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(canary, 1, "a hostile database name ran SQL");
}

/// The environment changes `pgauth psql` makes for psql: `Some` sets, `None` removes.
async fn psql_env_changes(
    emulator: &Emulator,
    overrides: &[(&str, &str)],
) -> Vec<(String, Option<String>)> {
    let ran = pgauth(
        &["-q", "psql", "--", "-c", "select 1"],
        &env(emulator, overrides),
    )
    .await;
    let ExitAction::Exec(command) = ran.outcome else {
        panic!("{overrides:?}: no psql to run: {}", ran.err);
    };
    command
        .get_envs()
        .map(|(k, v)| {
            (
                k.to_str().unwrap().to_string(),
                v.map(|v| v.to_str().unwrap().to_string()),
            )
        })
        .collect()
}

/// libpq variables a caller's shell may hold that the settings do not read.
fn hostile_extras() -> Vec<(&'static str, &'static str)> {
    vec![
        ("PGSERVICE", "pgauth_hostile"),
        ("PGSERVICEFILE", "/nonexistent/pg_service.conf"),
        ("PGOPTIONS", "-c search_path=hijacked"),
        ("PGSSLCERT", "/nonexistent/client.crt"),
        ("PGREQUIRESSL", "0"),
        ("PGTARGETSESSIONATTRS", "read-only"),
    ]
}

#[tokio::test]
async fn psql_removes_every_libpq_variable_it_does_not_set() {
    let emulator = emulator().await;
    let mut overrides = vec![AZURE];
    overrides.extend(hostile_extras());
    let changes = psql_env_changes(&emulator, &overrides).await;
    let change = |name: &str| {
        changes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    for name in cloud_pg_auth_cli::LIBPQ_ENV_VARS {
        assert!(
            change(name).is_some(),
            "psql would inherit {name} from pgauth's environment: {changes:?}"
        );
    }
    for (name, _) in hostile_extras() {
        assert_eq!(change(name), Some(None), "{name} is not removed");
    }
    assert_eq!(
        change("PGHOSTADDR"),
        Some(None),
        "PGHOSTADDR is not removed"
    );
    assert_eq!(change("PGSSLMODE"), Some(Some("verify-full".to_string())));
    assert!(matches!(change("PGPASSWORD"), Some(Some(_))));
}

#[tokio::test]
async fn env_unsets_every_libpq_variable_it_does_not_export() {
    let emulator = emulator().await;
    let mut overrides = vec![AZURE];
    overrides.extend(hostile_extras());
    let ran = pgauth(&["-q", "env"], &env(&emulator, &overrides)).await;
    assert_eq!(ran.code(), Some(0), "{}", ran.err);
    let unset: Vec<&str> = ran
        .out
        .lines()
        .filter_map(|l| l.strip_prefix("unset "))
        .collect();
    let exported: Vec<String> = parse_exports(&ran.out)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for name in cloud_pg_auth_cli::LIBPQ_ENV_VARS {
        let is_unset = unset.contains(name);
        let is_exported = exported.iter().any(|e| e == name);
        assert!(
            is_unset != is_exported,
            "{name}: unset {is_unset}, exported {is_exported}\n{}",
            ran.out
        );
    }
    for name in ["PGSERVICE", "PGSERVICEFILE", "PGHOSTADDR", "PGOPTIONS"] {
        assert!(unset.contains(&name), "no unset {name} in\n{}", ran.out);
    }
    // Every line is one a shell evaluates.
    for line in ran.out.lines() {
        assert!(
            line.starts_with("unset PG") || line.starts_with("export PG"),
            "{line:?}"
        );
    }
}

#[tokio::test]
async fn psql_and_env_pass_hostaddr_on_as_pghostaddr() {
    let emulator = emulator().await;
    // The certificate's name in PGHOST, the address to dial in PGHOSTADDR.
    let overrides = [AZURE, ("PGHOST", "localhost"), ("PGHOSTADDR", "127.0.0.1")];
    let changes = psql_env_changes(&emulator, &overrides).await;
    let change = |name: &str| {
        changes
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
    };
    assert_eq!(change("PGHOST").as_deref(), Some("localhost"));
    assert_eq!(change("PGHOSTADDR").as_deref(), Some("127.0.0.1"));
    assert_eq!(change("PGSSLMODE").as_deref(), Some("verify-full"));

    let ran = pgauth(&["-q", "env"], &env(&emulator, &overrides)).await;
    assert_eq!(ran.code(), Some(0), "{}", ran.err);
    let exports = parse_exports(&ran.out);
    assert!(
        exports.contains(&("PGHOSTADDR".to_string(), "127.0.0.1".to_string())),
        "{}",
        ran.out
    );
    assert!(!ran.out.contains("unset PGHOSTADDR"), "{}", ran.out);
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

#[tokio::test]
async fn token_and_doctor_print_endpoint_urls_without_their_password() {
    let emulator = emulator().await;
    let secret = "hunter2-endpoint-password";
    let endpoint = emulator
        .identity_endpoint()
        .replacen("://", &format!("://pgauth:{secret}@"), 1);
    let overrides = [
        AZURE,
        MANAGED_IDENTITY,
        ("IDENTITY_ENDPOINT", endpoint.as_str()),
    ];
    let env = env(&emulator, &overrides);
    let token = pgauth(&["token"], &env).await;
    let doctor = pgauth(&["doctor"], &env).await;
    let json = pgauth(&["doctor", "--json"], &env).await;
    for (what, ran) in [
        ("token", &token),
        ("doctor", &doctor),
        ("doctor --json", &json),
    ] {
        let printed = format!("{}{}", ran.out, ran.err);
        assert!(
            !printed.contains(secret),
            "{what} printed the password:\n{printed}"
        );
        // The URL itself is still shown, so the user can tell which endpoint it is.
        assert!(
            printed.contains("pgauth:***@127.0.0.1"),
            "{what}:\n{printed}"
        );
    }
}
