//! Aurora DSQL settings: detection, the method's names, and table-driven bad inputs.

use std::time::Duration;

use super::tests::{check, env};
use super::*;

const DSQL: (&str, &str) = ("PGHOST", "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws");

#[test]
fn dsql_hosts_resolve_to_dsql_with_verify_full() {
    let s = Settings::from_env_vars(&env(&[DSQL, ("PGUSER", "admin")])).unwrap();
    assert_eq!(s.resolved_method().unwrap(), AuthMethod::Dsql);
    assert_eq!(s.effective_ssl_mode().unwrap(), SslMode::VerifyFull);
    for name in ["dsql", "aws-dsql", "DSQL", " Aws-Dsql "] {
        assert_eq!(
            name.parse::<AuthMethod>().unwrap(),
            AuthMethod::Dsql,
            "{name}"
        );
    }
    assert_eq!(AuthMethod::Dsql.as_str(), "dsql");
    assert!(AuthMethod::Dsql.is_token());
    // The endpoint name in the host, the address to dial in hostaddr: SNI stays right.
    let s = Settings::from_env_vars(&env(&[
        DSQL,
        ("PGUSER", "app"),
        ("PGHOSTADDR", "10.0.0.7"),
        ("PGAUTH_DSQL_TOKEN_EXPIRES", "3600"),
    ]))
    .unwrap();
    assert_eq!(s.aws.get_dsql_token_expires(), Duration::from_secs(3600));
    // Another name (a tunnel's) works with the method and a region set.
    let s = Settings::from_env_vars(&env(&[
        ("PGHOST", "dsql.internal.example"),
        ("PGAUTH_METHOD", "dsql"),
        ("AWS_REGION", "eu-west-1"),
        ("PGUSER", "app"),
    ]))
    .unwrap();
    assert_eq!(s.resolved_method().unwrap(), AuthMethod::Dsql);
    let s = Settings::from_url(
        "postgres://admin@abc.dsql.eu-central-1.on.aws/postgres?pgauth_method=aws-dsql",
    )
    .unwrap();
    assert_eq!(s.get_method(), AuthMethod::Dsql);
}

#[test]
fn bad_dsql_settings_name_the_setting() {
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case<'_>] = &[
        (&[DSQL], "PGUSER", "AWS IAM GRANT"),
        (
            &[
                ("PGHOST", "10.0.0.7"),
                ("PGAUTH_METHOD", "dsql"),
                ("PGUSER", "app"),
                ("AWS_REGION", "us-east-1"),
            ],
            "PGHOST",
            "sni",
        ),
        (
            &[
                ("PGHOST", "::1"),
                ("PGAUTH_METHOD", "dsql"),
                ("PGUSER", "app"),
                ("AWS_REGION", "us-east-1"),
            ],
            "PGHOST",
            "PGHOSTADDR",
        ),
        (
            &[
                ("PGHOST", "db.internal"),
                ("PGAUTH_METHOD", "dsql"),
                ("PGUSER", "app"),
            ],
            "AWS_REGION",
            "set AWS_REGION",
        ),
        (
            &[
                ("PGHOST", "/var/run/postgresql"),
                ("PGAUTH_METHOD", "dsql"),
                ("PGUSER", "app"),
            ],
            "PGHOST",
            "unix socket",
        ),
        (
            &[DSQL, ("PGUSER", "app"), ("PGAUTH_DSQL_TOKEN_EXPIRES", "0")],
            "PGAUTH_DSQL_TOKEN_EXPIRES",
            "1 to 604800",
        ),
        (
            &[
                DSQL,
                ("PGUSER", "app"),
                ("PGAUTH_DSQL_TOKEN_EXPIRES", "604801"),
            ],
            "PGAUTH_DSQL_TOKEN_EXPIRES",
            "1 to 604800",
        ),
        (
            &[
                DSQL,
                ("PGUSER", "app"),
                ("PGAUTH_DSQL_TOKEN_EXPIRES", "15m"),
            ],
            "PGAUTH_DSQL_TOKEN_EXPIRES",
            "whole seconds",
        ),
        (
            &[DSQL, ("PGUSER", "app"), ("PGAUTH_AWS_SIGNING_PORT", "5432")],
            "PGAUTH_AWS_SIGNING_PORT",
            "no port",
        ),
        (
            &[
                DSQL,
                ("PGUSER", "app"),
                ("PGPASSWORD", "s3cret"),
                ("PGAUTH_METHOD", "dsql"),
            ],
            "PGPASSWORD",
            "PGAUTH_METHOD=dsql",
        ),
        (
            &[DSQL, ("PGUSER", "app"), ("PGSSLMODE", "disable")],
            "PGSSLMODE",
            "in clear",
        ),
        (
            &[
                ("PGHOST", "db.abc.us-east-1.rds.amazonaws.com"),
                ("PGUSER", "app"),
                ("PGAUTH_DSQL_TOKEN_EXPIRES", "60"),
            ],
            "PGAUTH_DSQL_TOKEN_EXPIRES",
            "PGAUTH_METHOD=dsql",
        ),
        (
            &[DSQL, ("PGUSER", "app"), ("PGAUTH_AZURE_CLOUD", "public")],
            "PGAUTH_AZURE_CLOUD",
            "resolves to dsql",
        ),
        (
            &[
                DSQL,
                ("PGUSER", "app"),
                ("PGAUTH_FALLBACK_PASSWORD", "hunter2"),
            ],
            "PGAUTH_FALLBACK_PASSWORD",
            "no password logins",
        ),
        (&[("PGAUTH_METHOD", "dsql+aws")], "PGAUTH_METHOD", "dsql"),
        (&[("PGAUTH_METHOD", "aurora")], "PGAUTH_METHOD", "dsql"),
    ];
    for (pairs, setting, hint) in cases {
        check(pairs, setting, hint);
    }
}

#[test]
fn pools_must_recycle_before_dsql_closes_connections() {
    let s = Settings::from_env_vars(&env(&[DSQL, ("PGUSER", "app")])).unwrap();
    let minutes = |m: u64| Some(Duration::from_secs(m * 60));
    assert!(s.check_max_lifetime(minutes(55)).is_ok());
    assert!(s.check_max_lifetime(minutes(59)).is_ok());
    for lifetime in [minutes(60), minutes(120), None] {
        let e = s.check_max_lifetime(lifetime).unwrap_err();
        assert_eq!(e.setting(), "max_lifetime");
        assert!(e.message().contains("60 minutes"), "{e}");
    }
    // Other methods keep any lifetime.
    let rds = Settings::from_env_vars(&env(&[
        ("PGHOST", "db.abc.us-east-1.rds.amazonaws.com"),
        ("PGUSER", "app"),
    ]))
    .unwrap();
    assert!(rds.check_max_lifetime(None).is_ok());
    assert!(rds.check_max_lifetime(minutes(600)).is_ok());
}

#[test]
fn migrations_are_refused_on_dsql_only() {
    let s = Settings::from_env_vars(&env(&[DSQL, ("PGUSER", "admin")])).unwrap();
    let e = s.check_migration_support().unwrap_err();
    assert_eq!(e.setting(), "PGAUTH_METHOD");
    assert!(e.message().contains("advisory locks"), "{e}");
    assert!(!AuthMethod::Dsql.supports_migrations());
    let rds = Settings::from_env_vars(&env(&[
        ("PGHOST", "db.abc.us-east-1.rds.amazonaws.com"),
        ("PGUSER", "app"),
    ]))
    .unwrap();
    assert!(rds.check_migration_support().is_ok());
    assert_eq!(AuthMethod::Aws.server_connection_limit(), None);
}
