//! Settings: table-driven bad inputs, URLs that must not leak, and the good cases.

use super::*;

pub(super) fn env(pairs: &[(&str, &str)]) -> Env {
    Env::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

/// Bad settings fail with an error that names `setting` and whose message contains `hint`.
pub(super) fn check(pairs: &[(&str, &str)], setting: &str, hint: &str) {
    let result = std::panic::catch_unwind(|| Settings::from_env_vars(&env(pairs)));
    let error = match result {
        Ok(Err(e)) => e,
        Ok(Ok(s)) => panic!("{pairs:?} was accepted: {s:?}"),
        Err(_) => panic!("{pairs:?} panicked"),
    };
    assert_eq!(error.setting(), setting, "{pairs:?}: {error}");
    assert!(error.message().contains(hint), "{pairs:?}: {error}");
    let text = error.to_string();
    assert_eq!(
        text,
        text.trim_end_matches('.'),
        "no trailing period: {text}"
    );
    assert!(starts_lowercase(error.message()), "not lowercase: {text}");
    for secret in ["s3cret", "hunter2"] {
        assert!(!text.contains(secret), "{text}");
    }
}

/// Messages start lowercase: with a lowercase word, a quoted value or a setting's name
/// (an all-caps identifier such as `PGAUTH_METHOD=...`), never a capitalised word.
fn starts_lowercase(message: &str) -> bool {
    let word: String = message
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    match word.chars().next() {
        None => !message.is_empty(),
        Some(first) if first.is_lowercase() => true,
        Some(_) => word
            .chars()
            .all(|c| c.is_uppercase() || c.is_ascii_digit() || c == '_'),
    }
}

#[test]
fn the_lowercase_check_can_fail() {
    assert!(!starts_lowercase("Set PGHOST"));
    assert!(!starts_lowercase(""));
    assert!(starts_lowercase("set PGHOST"));
    assert!(starts_lowercase("PGHOST is empty"));
    assert!(starts_lowercase("\"x\" is not a port"));
}

const AZ: (&str, &str) = ("PGHOST", "srv.postgres.database.azure.com");
const RDS: (&str, &str) = ("PGHOST", "db.abc123.eu-west-1.rds.amazonaws.com");

#[test]
fn bad_settings_are_refused_with_the_setting_named() {
    check(
        &[("PGAUTH_METHOD", "bogus"), AZ],
        "PGAUTH_METHOD",
        "unknown method",
    );
    check(
        &[("PGAUTH_METHOD", "azure,aws"), AZ],
        "PGAUTH_METHOD",
        "more than one method",
    );
    check(
        &[("PGAUTH_METHOD", "azure aws"), AZ],
        "PGAUTH_METHOD",
        "more than one method",
    );
    check(
        &[("PGAUTH_METHOD", "azure"), AZ, ("PGPASSWORD", "s3cret")],
        "PGPASSWORD",
        "unset PGPASSWORD",
    );
    check(
        &[
            ("PGAUTH_METHOD", "aws"),
            (
                "DATABASE_URL",
                "postgres://u:hunter2@db.abc123.eu-west-1.rds.amazonaws.com/app",
            ),
        ],
        "PGPASSWORD",
        "token is the password",
    );
    check(
        &[
            ("PGAUTH_METHOD", "azure"),
            (
                "DATABASE_URL",
                "postgres://u@srv.postgres.database.azure.com/app?pgauth_method=aws",
            ),
        ],
        "DATABASE_URL pgauth_method",
        "two methods at once",
    );
    check(
        &[
            ("PGAUTH_METHOD", "aws"),
            RDS,
            ("PGUSER", "app"),
            ("PGAUTH_AZURE_CLOUD", "public"),
        ],
        "PGAUTH_AZURE_CLOUD",
        "Azure setting",
    );
    check(
        &[
            ("PGAUTH_METHOD", "azure"),
            AZ,
            ("PGAUTH_AWS_SIGNING_PORT", "5432"),
        ],
        "PGAUTH_AWS_SIGNING_PORT",
        "AWS setting",
    );
    check(
        &[RDS, ("PGUSER", "app"), ("PGAUTH_AWS_SIGNING_HOST", "x")],
        "PGAUTH_AWS_SIGNING_HOST",
        "PGHOSTADDR",
    );
    check(
        &[
            AZ,
            ("PGAUTH_AZURE_CLOUD", "public"),
            ("PGAUTH_AWS_SIGNING_PORT", "5432"),
        ],
        "PGAUTH_AZURE_CLOUD",
        "both an Azure setting",
    );
    check(&[("PGAUTH_METHOD", "azure")], "PGHOST", "no server host");
    check(
        &[
            ("PGAUTH_METHOD", "password"),
            ("PGHOST", "db"),
            ("PGUSER", "u"),
        ],
        "PGPASSWORD",
        "needs a password",
    );
    check(
        &[("PGHOST", "db"), ("PGPASSWORD", "s3cret")],
        "PGUSER",
        "no user",
    );
    check(
        &[
            ("PGHOST", "db"),
            ("PGUSER", "u"),
            ("PGPASSWORD", "s3cret"),
            ("PGAUTH_FALLBACK_PASSWORD", "hunter2"),
        ],
        "PGAUTH_FALLBACK_PASSWORD",
        "only applies to token methods",
    );
    check(
        &[AZ, ("PGSSLMODE", "bogus")],
        "PGSSLMODE",
        "unknown sslmode",
    );
    check(&[AZ, ("PGSSLMODE", "disable")], "PGSSLMODE", "in clear");
    check(
        &[RDS, ("PGUSER", "app"), ("PGSSLMODE", "prefer")],
        "PGSSLMODE",
        "in clear",
    );
    check(
        &[
            ("PGAUTH_METHOD", "azure"),
            ("PGHOST", "10.0.0.5"),
            ("PGSSLMODE", "disable"),
            ("PGAUTH_INSECURE_LOOPBACK", "1"),
        ],
        "PGAUTH_INSECURE_LOOPBACK",
        "only for loopback",
    );
    check(
        &[
            ("PGHOST", "db"),
            ("PGUSER", "u"),
            ("PGPASSWORD", "s3cret"),
            ("PGAUTH_INSECURE_LOOPBACK", "1"),
        ],
        "PGAUTH_INSECURE_LOOPBACK",
        "only for loopback",
    );
    check(
        &[AZ, ("PGAUTH_INSECURE_LOOPBACK", "maybe")],
        "PGAUTH_INSECURE_LOOPBACK",
        "not a boolean",
    );
    check(&[AZ, ("PGPORT", "0")], "PGPORT", "not a port");
    check(&[AZ, ("PGPORT", "70000")], "PGPORT", "not a port");
    check(&[AZ, ("PGPORT", "abc")], "PGPORT", "not a port");
    check(
        &[AZ, ("PGCONNECT_TIMEOUT", "soon")],
        "PGCONNECT_TIMEOUT",
        "whole number",
    );
    check(
        &[("DATABASE_URL", "http://db/app")],
        "DATABASE_URL",
        "postgres://",
    );
    check(
        &[("DATABASE_URL", "postgres://u@db:99999/app")],
        "DATABASE_URL port",
        "not a port",
    );
    check(
        &[("DATABASE_URL", "postgres://u@[::1/app")],
        "DATABASE_URL",
        "not a valid URL",
    );
    // Host lists are not supported yet, wherever they are written.
    check(
        &[
            ("PGHOST", "h1,h2"),
            ("PGPASSWORD", "s3cret"),
            ("PGUSER", "u"),
        ],
        "PGHOST",
        "several hosts",
    );
    check(
        &[("DATABASE_URL", "postgres://u:s3cret@db/app?host=h1,h2")],
        "PGHOST",
        "several hosts",
    );
    check(
        &[("DATABASE_URL", "postgres://u@h1:5432,h2:5432/app")],
        "DATABASE_URL",
        "several hosts",
    );
    check(
        &[AZ, ("PGHOSTADDR", "10.0.0.5,10.0.0.6")],
        "PGHOSTADDR",
        "several hosts",
    );
    // hostaddr is an address; the name stays in host.
    check(
        &[AZ, ("PGHOSTADDR", "db.internal")],
        "PGHOSTADDR",
        "not a numeric IP",
    );
    check(
        &[(
            "DATABASE_URL",
            "postgres://u@db/app?hostaddr=db.internal&pgauth_method=azure",
        )],
        "DATABASE_URL hostaddr",
        "not a numeric IP",
    );
    check(
        &[
            ("PGHOST", "/var/run/postgresql"),
            ("PGHOSTADDR", "127.0.0.1"),
            ("PGUSER", "u"),
            ("PGPASSWORD", "s3cret"),
        ],
        "PGHOSTADDR",
        "Unix socket",
    );
    // verify-ca with a token: only against a root file the user named.
    check(
        &[AZ, ("PGSSLMODE", "verify-ca")],
        "PGSSLMODE",
        "PGSSLROOTCERT",
    );
    check(
        &[AZ, ("PGSSLMODE", "verify-ca"), ("PGSSLROOTCERT", "system")],
        "PGSSLMODE",
        "PGHOSTADDR",
    );
    check(
        &[
            RDS,
            ("PGUSER", "app"),
            (
                "DATABASE_URL",
                "postgres://app@db.abc123.eu-west-1.rds.amazonaws.com/app?sslmode=verify-ca",
            ),
        ],
        "PGSSLMODE",
        "verify-full",
    );
    // The opt-out is for loopback: the dialled address decides, not the name.
    check(
        &[
            ("PGAUTH_METHOD", "azure"),
            ("PGHOST", "localhost"),
            ("PGHOSTADDR", "10.0.0.5"),
            ("PGSSLMODE", "disable"),
            ("PGAUTH_INSECURE_LOOPBACK", "1"),
        ],
        "PGAUTH_INSECURE_LOOPBACK",
        "only for loopback",
    );
    check(
        &[("DATABASE_URL", "postgres://u:pa%zzss@db/app")],
        "DATABASE_URL",
        "malformed %-escape",
    );
    check(
        &[("DATABASE_URL", "postgres://u@h1,h2/app?pgauth_method=azure")],
        "DATABASE_URL",
        "several hosts",
    );
    check(
        &[("DATABASE_URL", "postgres://u@db/app?sslmode")],
        "DATABASE_URL",
        "has no value",
    );
    check(
        &[("DATABASE_URL", "postgres://u@db/app?color=blue")],
        "DATABASE_URL",
        "unknown query parameter",
    );
    check(
        &[("DATABASE_URL", "postgres://u@db/app?sslmode=maybe")],
        "DATABASE_URL sslmode",
        "unknown sslmode",
    );
    check(&[RDS, ("PGAUTH_METHOD", "aws")], "PGUSER", "set PGUSER");
    check(
        &[
            ("PGAUTH_METHOD", "aws"),
            ("PGHOST", "db.internal"),
            ("PGUSER", "app"),
        ],
        "AWS_REGION",
        "set AWS_REGION",
    );
    check(
        &[("PGAUTH_METHOD", "aws"), RDS, ("PGUSER", "bad user/name")],
        "PGUSER",
        "",
    );
    check(
        &[
            ("PGAUTH_METHOD", "azure"),
            ("PGHOST", "srv.postgres.database.usgovcloudapi.net"),
        ],
        "PGAUTH_AZURE_CLOUD",
        "usgov",
    );
    check(
        &[AZ, ("PGAUTH_AZURE_CLOUD", "mars")],
        "PGAUTH_AZURE_CLOUD",
        "",
    );
    check(
        &[
            ("PGHOST", "db"),
            ("PGUSER", "u"),
            ("PGPASSWORD", "s3cret"),
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", "/nonexistent/ca.pem"),
        ],
        "PGSSLROOTCERT",
        "not a readable file",
    );
}

/// URLs whose password holds an unencoded '/', '?', '#', '@' or '%': refused, and the
/// message shows no piece of the password.
#[test]
fn unencoded_passwords_are_refused_without_showing_them() {
    for url in [
        "postgres://app:hun/ter2xyz@db.example.com/app",
        "postgres://app:hun?ter2xyz@db.example.com/app",
        "postgres://app:hun#ter2xyz@db.example.com/app",
        "postgres://app:hun@ter2xyz@db.example.com/app",
        "postgres://app:12/ter2xyz@db.example.com/app",
        "postgres://app:12?ter2xyz=1@db.example.com/app",
        "postgres://app:12?ter2xyz@db.example.com/app",
        "postgres://app:hun%zter2xyz@db.example.com/app",
        "postgres://app:hun ter2xyz@db.example.com:notaport/app",
    ] {
        let error = Settings::from_url(url).expect_err(url);
        let text = error.to_string();
        for piece in ["hun", "ter2xyz", "db.example.com", "12"] {
            assert!(!text.contains(piece), "{url}: {text}");
        }
        let via_env = Settings::from_env_vars(&env(&[("DATABASE_URL", url)]))
            .expect_err(url)
            .to_string();
        assert!(!via_env.contains("ter2xyz"), "{url}: {via_env}");
    }
    // Encoded, the same characters are fine.
    let s = Settings::from_url("postgres://app:hun%2F%3F%23%40%25ter2@db.example.com/app").unwrap();
    assert_eq!(
        s.password.as_ref().map(Secret::expose),
        Some("hun/?#@%ter2")
    );
    assert_eq!(s.host.as_deref(), Some("db.example.com"));
    // An '@' in a query value is no password: Entra user names hold one.
    let s =
        Settings::from_url("postgres://srv.postgres.database.azure.com/app?user=alice@contoso.com")
            .unwrap();
    assert_eq!(s.user.as_deref(), Some("alice@contoso.com"));
}

#[test]
fn hostaddr_dials_an_address_and_keeps_the_name() {
    let s = Settings::from_env_vars(&env(&[AZ, ("PGHOSTADDR", "10.1.2.3")])).unwrap();
    assert_eq!(s.hostaddr, Some("10.1.2.3".parse().unwrap()));
    assert_eq!(s.host.as_deref(), Some("srv.postgres.database.azure.com"));
    assert_eq!(s.effective_ssl_mode().unwrap(), SslMode::VerifyFull);
    let s = Settings::from_url(
        "postgres://app@db.abc123.eu-west-1.rds.amazonaws.com:15432/app?hostaddr=127.0.0.1",
    )
    .unwrap();
    assert_eq!(s.hostaddr, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(s.port, 15432);
    assert_eq!(s.resolved_method().unwrap(), AuthMethod::Aws);
    let s = Settings::from_url("postgres://app@[::1]:5433/app?password=pw&hostaddr=::1").unwrap();
    assert_eq!(s.host.as_deref(), Some("::1"));
    // verify-ca is fine for a token when the roots come from a named file.
    let ca = std::env::temp_dir().join(format!("pgauth-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, "not read by validation").unwrap();
    let s = Settings::from_env_vars(&env(&[
        AZ,
        ("PGSSLMODE", "verify-ca"),
        ("PGSSLROOTCERT", ca.to_str().unwrap()),
    ]));
    std::fs::remove_file(&ca).unwrap();
    assert_eq!(s.unwrap().effective_ssl_mode().unwrap(), SslMode::VerifyCa);
}

#[test]
fn unix_socket_hosts_log_in_without_tls() {
    let s = Settings::from_env_vars(&env(&[
        ("PGHOST", "/var/run/postgresql"),
        ("PGUSER", "app"),
        ("PGPASSWORD", "s3cret"),
    ]))
    .unwrap();
    assert!(s.host_is_unix_socket());
    let policy = crate::tls::TlsPolicy::from_settings(&s).unwrap();
    assert!(policy.client_config().is_none());
    // A token over a local socket never crosses the network.
    let s = Settings::from_env_vars(&env(&[
        ("PGHOST", "/var/run/postgresql"),
        ("PGAUTH_METHOD", "azure"),
        ("PGUSER", "app"),
    ]))
    .unwrap();
    let policy = crate::tls::TlsPolicy::from_settings(&s).unwrap();
    assert!(policy.client_config().is_none());
}

#[test]
fn good_settings_resolve() {
    let s = Settings::from_env_vars(&env(&[AZ])).unwrap();
    assert_eq!(s.resolved_method().unwrap(), AuthMethod::Azure);
    assert_eq!(s.effective_ssl_mode().unwrap(), SslMode::VerifyFull);
    let s = Settings::from_env_vars(&env(&[RDS, ("PGUSER", "app")])).unwrap();
    assert_eq!(s.resolved_method().unwrap(), AuthMethod::Aws);
    // An existing password configuration keeps working unchanged.
    let s = Settings::from_env_vars(&env(&[
        ("DATABASE_URL", "postgresql://app:s%40cret@db.internal:6432/orders?sslmode=require&application_name=api"),
        ("PGHOST", "ignored"),
    ]))
    .unwrap();
    assert_eq!(s.resolved_method().unwrap(), AuthMethod::Password);
    assert_eq!(s.host.as_deref(), Some("db.internal"));
    assert_eq!(s.port, 6432);
    assert_eq!(s.dbname.as_deref(), Some("orders"));
    assert_eq!(s.user.as_deref(), Some("app"));
    assert_eq!(s.password.as_ref().map(Secret::expose), Some("s@cret"));
    assert_eq!(s.application_name.as_deref(), Some("api"));
    assert_eq!(s.effective_ssl_mode().unwrap(), SslMode::Require);
    assert!(!format!("{s:?}").contains("s@cret"));
    // Loopback test set-ups may opt out of TLS explicitly.
    let s = Settings::from_env_vars(&env(&[
        ("PGAUTH_METHOD", "azure"),
        ("PGHOST", "127.0.0.1"),
        ("PGSSLMODE", "disable"),
        ("PGAUTH_INSECURE_LOOPBACK", "1"),
    ]))
    .unwrap();
    assert!(s.insecure_loopback);
    let s = Settings::from_url("postgres://u@[::1]:5433/db?pgauth_method=aws&sslmode=disable&pgauth_insecure_loopback=true").unwrap_err();
    assert_eq!(s.setting(), "AWS_REGION");
    assert_eq!(
        Settings::from_env_vars(&env(&[AZ, ("PGCONNECT_TIMEOUT", "1")]))
            .unwrap()
            .connect_timeout,
        Some(Duration::from_secs(2))
    );
}

#[test]
fn settings_from_a_url_can_drop_the_password_for_a_custom_source() {
    let url = Settings::from_url("postgres://app:pw@db.example.com/orders").unwrap();
    assert!(url.get_password().is_some());
    let custom = url
        .without_password()
        .insecure_loopback(true)
        .for_custom_source();
    assert_eq!(custom.get_password(), None);
    assert_eq!(custom.get_method(), AuthMethod::Custom);
    assert!(custom.get_insecure_loopback());
    assert_eq!(custom.get_user(), Some("app"));
    assert_eq!(custom.get_dbname(), Some("orders"));
}

#[test]
fn the_fallback_role_needs_the_fallback_password_and_a_token_method() {
    let fallback_user = ("PGAUTH_FALLBACK_USER", "break_glass");
    let fallback_password = ("PGAUTH_FALLBACK_PASSWORD", "s3cret");
    check(
        &[("PGAUTH_METHOD", "azure"), AZ, fallback_user],
        "PGAUTH_FALLBACK_USER",
        "set PGAUTH_FALLBACK_PASSWORD",
    );
    check(
        &[
            ("PGHOST", "db"),
            ("PGUSER", "u"),
            ("PGPASSWORD", "hunter2"),
            fallback_user,
        ],
        "PGAUTH_FALLBACK_USER",
        "only applies to token methods",
    );
    check(
        &[
            ("PGAUTH_METHOD", "azure"),
            AZ,
            fallback_password,
            ("PGAUTH_FALLBACK_USER", "a\0b"),
        ],
        "PGAUTH_FALLBACK_USER",
        "NUL byte",
    );
    let settings = Settings::from_env_vars(&env(&[
        ("PGAUTH_METHOD", "aws"),
        RDS,
        ("PGUSER", "app"),
        fallback_password,
        fallback_user,
    ]))
    .unwrap();
    assert_eq!(settings.get_fallback_user(), Some("break_glass"));
    assert!(ENV_VARS.contains(&"PGAUTH_FALLBACK_USER"));
    // Migrations log in as their own role: the service's fallback does not follow them.
    let migrations = settings.migration_user("owner").for_migrations();
    assert_eq!(migrations.get_fallback_user(), None);
    migrations.validate().unwrap();
}
