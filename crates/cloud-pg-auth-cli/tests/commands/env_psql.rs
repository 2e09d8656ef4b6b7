//! `pgauth token`, `env` and `psql`: what each hands a client, and every libpq variable it does not set left out.

use super::*;

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
