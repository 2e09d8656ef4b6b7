//! RDS IAM tokens: the SigV4 signer/verifier and token-checked logins.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cloud_pg_auth_testkit::aws::{
    RdsTokenError, SignParams, VerifyParams, sign_rds_token, verify_rds_token,
};
use cloud_pg_auth_testkit::{Emulator, EmulatorOptions};
use common::{login, run_psql};

fn golden() -> SignParams {
    SignParams {
        access_key_id: "akid".into(),
        secret_access_key: "secret".into(),
        session_token: None,
        region: "us-east-1".into(),
        host: "prod-instance.us-east-1.rds.amazonaws.com".into(),
        port: 3306,
        user: "peccy".into(),
        time: UNIX_EPOCH + Duration::from_secs(1_724_709_600),
        expires_in: 900,
    }
}

fn golden_verify() -> VerifyParams {
    VerifyParams {
        access_key_id: "akid".into(),
        secret_access_key: "secret".into(),
        region: "us-east-1".into(),
        user: "peccy".into(),
        allowed_hosts: vec!["prod-instance.us-east-1.rds.amazonaws.com:3306".into()],
        now: UNIX_EPOCH + Duration::from_secs(1_724_709_600 + 60),
        max_expires: 900,
        max_future_skew: 900,
    }
}

#[test]
fn the_golden_sigv4_vector_signs_and_verifies() {
    let token = sign_rds_token(&golden());
    assert_eq!(
        token,
        "prod-instance.us-east-1.rds.amazonaws.com:3306/?Action=connect&DBUser=peccy&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=akid%2F20240826%2Fus-east-1%2Frds-db%2Faws4_request&X-Amz-Date=20240826T220000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=dd0cba843009474347af724090233265628ace491ea17ce3eb3da098b983ad89"
    );
    let claims = verify_rds_token(&token, &golden_verify()).unwrap();
    assert_eq!(claims.user, "peccy");
    assert_eq!(claims.port, 3306);
    assert_eq!(claims.signed_at, 1_724_709_600);
    assert!(!claims.has_session_token);

    let with_session = sign_rds_token(&SignParams {
        session_token: Some("FwoGZXIvYXdzE+/=token".into()),
        ..golden()
    });
    assert!(with_session.contains("X-Amz-Security-Token=FwoGZXIvYXdzE%2B%2F%3Dtoken"));
    assert!(
        verify_rds_token(&with_session, &golden_verify())
            .unwrap()
            .has_session_token
    );
}

#[test]
fn the_verifier_refuses_bad_tokens() {
    fn check(case: &str, token: String, params: VerifyParams, expected: RdsTokenError) {
        assert_eq!(verify_rds_token(&token, &params), Err(expected), "{case}");
    }
    let v = golden_verify;
    let t = |p: SignParams| sign_rds_token(&p);
    let cases: Vec<(&str, String, VerifyParams, RdsTokenError)> = vec![
        (
            "another user",
            t(SignParams {
                user: "other".into(),
                ..golden()
            }),
            v(),
            RdsTokenError::WrongUser("other".into()),
        ),
        (
            "user differs in case",
            t(SignParams {
                user: "Peccy".into(),
                ..golden()
            }),
            v(),
            RdsTokenError::WrongUser("Peccy".into()),
        ),
        (
            "another port",
            t(SignParams {
                port: 5432,
                ..golden()
            }),
            v(),
            RdsTokenError::WrongHost("prod-instance.us-east-1.rds.amazonaws.com:5432".into()),
        ),
        (
            "another region",
            t(SignParams {
                region: "eu-west-1".into(),
                ..golden()
            }),
            v(),
            RdsTokenError::WrongRegion("eu-west-1".into()),
        ),
        (
            "another secret",
            t(SignParams {
                secret_access_key: "other".into(),
                ..golden()
            }),
            v(),
            RdsTokenError::BadSignature,
        ),
        (
            "another access key",
            t(SignParams {
                access_key_id: "AKIAOTHER".into(),
                ..golden()
            }),
            v(),
            RdsTokenError::UnknownAccessKey("AKIAOTHER".into()),
        ),
        (
            "expires_in above 900",
            t(SignParams {
                expires_in: 901,
                ..golden()
            }),
            v(),
            RdsTokenError::ExpiresTooLong(901),
        ),
        (
            "past 900 s",
            t(golden()),
            VerifyParams {
                now: UNIX_EPOCH + Duration::from_secs(1_724_709_600 + 901),
                ..v()
            },
            RdsTokenError::Expired,
        ),
        (
            "past its own shorter expiry",
            t(SignParams {
                expires_in: 60,
                ..golden()
            }),
            VerifyParams {
                now: UNIX_EPOCH + Duration::from_secs(1_724_709_600 + 61),
                ..v()
            },
            RdsTokenError::Expired,
        ),
        (
            "signed in the future",
            t(SignParams {
                time: UNIX_EPOCH + Duration::from_secs(1_724_709_600 + 3600),
                ..golden()
            }),
            v(),
            RdsTokenError::NotYetValid,
        ),
        (
            "altered after signing",
            t(golden()).replace("DBUser=peccy", "DBUser=admin"),
            VerifyParams {
                user: "admin".into(),
                ..v()
            },
            RdsTokenError::BadSignature,
        ),
        (
            "no signature",
            t(golden())
                .split("&X-Amz-Signature")
                .next()
                .unwrap()
                .to_string(),
            v(),
            RdsTokenError::Malformed("missing X-Amz-Signature".into()),
        ),
        (
            "not a token",
            "hunter2".into(),
            v(),
            RdsTokenError::Malformed("no '/?' separator".into()),
        ),
    ];
    for (case, token, params, expected) in cases {
        check(case, token, params, expected);
    }
}

#[tokio::test]
async fn rds_tokens_log_in_and_bad_ones_are_refused() {
    let em = Emulator::start(EmulatorOptions {
        extra_aws_signing_hosts: vec![
            "mydb.cluster-abc.us-east-1.rds.amazonaws.com:5432".into(),
            "proxy.example".into(),
        ],
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let user = em.aws_role().to_string();
    let ok_cases = [
        ("127.0.0.1", em.pg_port()),
        ("localhost", em.pg_port()),
        ("mydb.cluster-abc.us-east-1.rds.amazonaws.com", 5432),
        ("proxy.example", em.pg_port()),
    ];
    for (host, port) in ok_cases {
        let token = sign_rds_token(&SignParams {
            host: host.into(),
            port,
            ..em.rds_sign_params(&user)
        });
        assert_eq!(
            login(&em, &user, &token).await.unwrap(),
            user,
            "{host}:{port}"
        );
    }
    let with_session = sign_rds_token(&SignParams {
        session_token: Some("IQoJb3JpZ2luX2VjE+session/token==".into()),
        ..em.rds_sign_params(&user)
    });
    assert_eq!(login(&em, &user, &with_session).await.unwrap(), user);

    // psql with the token as PGPASSWORD.
    let token = em.rds_token(&user);
    let (ok, out, err) = run_psql(
        &em,
        &[("PGUSER", &user), ("PGPASSWORD", &token)],
        "SELECT current_user",
    )
    .await;
    assert!(ok, "{err}");
    assert_eq!(out, user);

    async fn check(em: &Emulator, case: &str, user: &str, token: &str, reason: &str) {
        let before = em.stats().logins_rejected.get(reason).copied().unwrap_or(0);
        let err = login(em, user, token).await.expect_err(case);
        assert_eq!(
            err,
            (
                "28000".to_string(),
                format!("PAM authentication failed for user \"{user}\"")
            ),
            "{case}"
        );
        let after = em.stats().logins_rejected.get(reason).copied().unwrap_or(0);
        assert_eq!(after, before + 1, "{case}: reason {reason}");
    }
    let now = SystemTime::now();
    let p = || em.rds_sign_params(&user);
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "a token for another user",
            sign_rds_token(&SignParams {
                user: em.password_role().into(),
                ..p()
            }),
            "aws_user",
        ),
        (
            "a token for another port",
            sign_rds_token(&SignParams {
                port: em.pg_port().wrapping_add(1),
                ..p()
            }),
            "aws_host",
        ),
        (
            "a token for another host",
            sign_rds_token(&SignParams {
                host: "prod.rds.amazonaws.com".into(),
                ..p()
            }),
            "aws_host",
        ),
        (
            "a token signed 901 s ago",
            sign_rds_token(&SignParams {
                time: now - Duration::from_secs(901),
                ..p()
            }),
            "aws_expired",
        ),
        (
            "a token valid for more than 900 s",
            sign_rds_token(&SignParams {
                expires_in: 3600,
                ..p()
            }),
            "aws_expires_too_long",
        ),
        (
            "another region",
            sign_rds_token(&SignParams {
                region: "eu-central-1".into(),
                ..p()
            }),
            "aws_region",
        ),
        (
            "another secret",
            sign_rds_token(&SignParams {
                secret_access_key: "wrong".into(),
                ..p()
            }),
            "aws_signature",
        ),
        (
            "another access key",
            sign_rds_token(&SignParams {
                access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
                ..p()
            }),
            "aws_access_key",
        ),
        (
            "an entra-style password",
            "eyJ0eXAi.e30.sig".into(),
            "aws_malformed",
        ),
        ("an empty password", String::new(), "aws_malformed"),
    ];
    for (case, token, reason) in &cases {
        check(&em, case, &user, token, reason).await;
    }
    // An RDS token for a role that is not granted rds_iam is just a wrong password.
    let for_password_role = em.rds_token(em.password_role());
    assert_eq!(
        login(&em, em.password_role(), &for_password_role)
            .await
            .unwrap_err(),
        (
            "28P01".to_string(),
            format!(
                "password authentication failed for user \"{}\"",
                em.password_role()
            )
        )
    );
    // Granting rds_iam in the real cluster switches a role to IAM authentication.
    em.postgres()
        .execute_admin("CREATE ROLE late_iam LOGIN; GRANT rds_iam TO late_iam;")
        .await
        .unwrap();
    assert_eq!(
        login(&em, "late_iam", &em.rds_token("late_iam"))
            .await
            .unwrap(),
        "late_iam"
    );
    let stats = em.stats();
    assert_eq!(stats.logins_accepted_by_method.get("aws"), Some(&7));
    em.stop().await.unwrap();
}
