//! Aurora DSQL tokens at the emulator's front: accepted for the mapped role and `admin`,
//! refused like DSQL refuses (wrong action, region, host, expired, no SNI).

mod common;

use std::time::{Duration, SystemTime};

use cloud_pg_auth_testkit::Emulator;
use cloud_pg_auth_testkit::aws::dsql::{ACCESS_DENIED, DsqlSignParams, sign_dsql_token};
use common::db_error;

/// Logs in as `user` with `password`, dialling 127.0.0.1 but naming `host` for TLS (SNI and
/// verify-full against the emulator's CA), as `host` + `hostaddr` do.
async fn login_as(
    em: &Emulator,
    host: &str,
    user: &str,
    password: &str,
) -> Result<String, (String, String)> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(host)
        .hostaddr("127.0.0.1".parse().unwrap())
        .port(em.pg_port())
        .user(user)
        .password(password)
        .dbname(em.database())
        .ssl_mode(tokio_postgres::config::SslMode::Require)
        .connect_timeout(Duration::from_secs(10));
    let (client, conn) = config
        .connect(em.tls_connector())
        .await
        .map_err(|e| db_error(&e))?;
    tokio::spawn(conn);
    let row = client
        .query_one("SELECT current_user::text", &[])
        .await
        .map_err(|e| db_error(&e))?;
    Ok(row.get(0))
}

#[tokio::test]
async fn dsql_tokens_log_in_and_bad_ones_are_refused() {
    let em = common::emulator().await;
    let host = em.dsql_host();
    assert!(host.ends_with(".dsql.us-east-1.on.aws"), "{host}");
    assert_eq!(host.split('.').next().unwrap().len(), 26, "{host}");
    assert_eq!(em.env_var("PGAUTH_EMULATOR_DSQL_HOST"), Some(host.as_str()));
    assert_eq!(
        em.env_var("PGAUTH_EMULATOR_DSQL_ROLE"),
        Some(em.dsql_role())
    );
    assert_eq!(em.env_var("PGAUTH_EMULATOR_DSQL_ADMIN_ROLE"), Some("admin"));

    for user in [em.dsql_role(), em.dsql_admin_role()] {
        let got = login_as(&em, &host, user, &em.dsql_token(user)).await;
        assert_eq!(got.as_deref(), Ok(user), "{user}");
    }
    assert_eq!(em.stats().logins_accepted_by_method.get("dsql"), Some(&2));

    let role = em.dsql_role();
    let admin = em.dsql_admin_role();
    let tweak = |user: &str, f: fn(&mut DsqlSignParams)| {
        let mut p = em.dsql_sign_params(user);
        f(&mut p);
        sign_dsql_token(&p)
    };
    let cases: Vec<(&str, &str, String, &str)> = vec![
        // DbConnect for admin, DbConnectAdmin for another role.
        (
            admin,
            host.as_str(),
            tweak(admin, |p| p.action = "DbConnect".into()),
            "dsql_action",
        ),
        (
            role,
            host.as_str(),
            tweak(role, |p| p.action = "DbConnectAdmin".into()),
            "dsql_action",
        ),
        (
            role,
            host.as_str(),
            tweak(role, |p| p.region = "eu-west-1".into()),
            "dsql_region",
        ),
        (
            role,
            host.as_str(),
            tweak(role, |p| {
                p.time = SystemTime::now() - Duration::from_secs(3600);
                p.expires_in = 900;
            }),
            "dsql_expired",
        ),
        (
            role,
            host.as_str(),
            tweak(role, |p| {
                p.host = "otherclusterid0000000000000.dsql.us-east-1.on.aws".into()
            }),
            "dsql_host",
        ),
        // The port is never part of a DSQL token's host.
        (
            role,
            host.as_str(),
            tweak(role, |p| p.host = format!("{}:5432", p.host)),
            "dsql_host",
        ),
        (
            role,
            host.as_str(),
            tweak(role, |p| p.secret_access_key = "wrong".into()),
            "dsql_signature",
        ),
        (role, host.as_str(), "not a token".into(), "dsql_malformed"),
        // An RDS token is not a DSQL token.
        (role, host.as_str(), em.rds_token(role), "dsql_service"),
        // By IP, no server name is sent: DSQL cannot route the connection.
        (role, "127.0.0.1", em.dsql_token(role), "dsql_sni"),
        (role, "localhost", em.dsql_token(role), "dsql_sni"),
    ];
    for (user, dial, token, reason) in cases {
        let before = em.stats().logins_rejected.get(reason).copied().unwrap_or(0);
        let got = login_as(&em, dial, user, &token).await;
        assert_eq!(
            got,
            Err(("28000".to_string(), ACCESS_DENIED.to_string())),
            "{user} via {dial}: {reason}"
        );
        let after = em.stats().logins_rejected.get(reason).copied().unwrap_or(0);
        assert_eq!(after, before + 1, "{user} via {dial}: {reason}");
    }
    em.stop().await.unwrap();
}
