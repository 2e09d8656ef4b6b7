//! Refusals and retries, the login span, the user per credential and the refused-twice messages.

use std::sync::atomic::AtomicUsize;

use super::*;
use crate::Secret;
use crate::testing::offline_password_settings;

#[derive(Debug, thiserror::Error)]
#[error("server said {0}")]
struct DriverError(&'static str);

fn server(code: &'static str) -> AttemptError<DriverError> {
    AttemptError::Server {
        error: DriverError(code),
        sqlstate: Some(code.to_string()),
    }
}

#[test]
fn only_the_two_refusal_codes_count_as_refused() {
    for (code, refused) in [
        (Some("28P01"), true),
        (Some("28000"), true),
        (Some("42501"), false),
        (Some("57P03"), false),
        (None, false),
    ] {
        assert_eq!(is_refused_login(code), refused, "{code:?}");
    }
}

#[tokio::test]
async fn a_refusal_is_retried_once_and_other_failures_never() {
    let target = LoginTarget::from_settings(&offline_password_settings("pw")).unwrap();
    let cases: [(&[&'static str], usize, Option<&str>); 4] = [
        // Refused, then accepted: one retry.
        (&["28P01", "ok"], 2, None),
        // Refused twice: the explanation names the role.
        (
            &["28000", "28P01"],
            2,
            Some("refused the credentials twice"),
        ),
        // Not a refusal: no retry, the driver's text.
        (&["57P03"], 1, Some("server said 57P03")),
        (&["ok"], 1, None),
    ];
    for (answers, calls_expected, message) in cases {
        let calls = AtomicUsize::new(0);
        let result = target
            .retry_once(|which| {
                let n = calls.fetch_add(1, Ordering::SeqCst);
                assert_eq!(which == Attempt::Retry, n == 1);
                let answer = answers[n];
                async move {
                    if answer == "ok" {
                        Ok(n)
                    } else {
                        Err(server(answer))
                    }
                }
            })
            .await;
        assert_eq!(calls.load(Ordering::SeqCst), calls_expected, "{answers:?}");
        match (result, message) {
            (Ok(_), None) => {}
            (
                Err(Error::Connect {
                    message: text,
                    source,
                    ..
                }),
                Some(expected),
            ) => {
                assert!(text.contains(expected), "{text}");
                assert!(source.downcast_ref::<DriverError>().is_some());
            }
            (other, expected) => panic!("{answers:?}: {other:?}, wanted {expected:?}"),
        }
    }
    assert_eq!(target.stats().auth_retries, 2);
    // A failure before the server answers is returned as it is, without a retry.
    let result: Result<(), Error> = target
        .retry_once(|_| async { Err(AttemptError::<DriverError>::Before(Error::Disposed)) })
        .await;
    assert!(matches!(result, Err(Error::Disposed)));
}

#[test]
fn each_login_has_a_span_with_its_attempts_outcome_and_sqlstate() {
    let target = LoginTarget::from_settings(&offline_password_settings("pw")).unwrap();
    let login = |answers: &'static [&'static str]| {
        let calls = AtomicUsize::new(0);
        let target = &target;
        async move {
            let _ = target
                .retry_once(|_| {
                    let answer = answers[calls.fetch_add(1, Ordering::SeqCst)];
                    async move {
                        match answer {
                            "ok" => Ok(()),
                            code => Err(server(code)),
                        }
                    }
                })
                .await;
        }
    };
    let ((), log) = crate::test_spans::with_span_log(|_| async {
        login(&["ok"]).await;
        login(&["28P01", "ok"]).await;
        login(&["28000", "28P01"]).await;
        login(&["57P03"]).await;
    });
    let spans = log.named("cloud_pg_auth.login");
    let seen: Vec<_> = spans
        .iter()
        .map(|s| {
            assert_eq!(s.get("target"), Some("127.0.0.1:1 as app"));
            (s.get("attempt"), s.get("outcome"), s.get("sqlstate"))
        })
        .collect();
    assert_eq!(
        seen,
        [
            (Some("1"), Some("ok"), None),
            (Some("2"), Some("ok"), Some("28P01")),
            (Some("2"), Some("refused"), Some("28P01")),
            (Some("1"), Some("error"), Some("57P03")),
        ]
    );
    log.assert_never_shows("pw");
}

#[test]
fn the_fallback_password_logs_in_as_the_fallback_role() {
    let fallback = |user| AccessToken::fallback(Secret::new("fallback-pw"), user);
    let token = AccessToken::new("token");
    let settings = crate::testing::offline_settings()
        .method(crate::AuthMethod::Custom)
        .fallback_password("fallback-pw")
        .fallback_user("break_glass");
    let target = LoginTarget::from_settings(&settings).unwrap();
    assert_eq!(target.user_for(&token).unwrap(), "app");
    // The role on the token (the cache's), else the settings'.
    assert_eq!(target.user_for(&fallback(Some("other"))).unwrap(), "other");
    assert_eq!(target.user_for(&fallback(None)).unwrap(), "break_glass");
    // Without a fallback role: PGUSER, as before, with a warning (once).
    let settings = crate::testing::offline_settings().method(crate::AuthMethod::Custom);
    let target = LoginTarget::from_settings(&settings).unwrap();
    assert_eq!(target.user_for(&fallback(None)).unwrap(), "app");
    assert!(target.warned_fallback_as_user.load(Ordering::Relaxed));
    // Without PGUSER either (Azure names the user in the token): say what to set.
    let target = LoginTarget {
        user: None,
        ..LoginTarget::from_settings(&settings).unwrap()
    };
    let error = target.user_for(&fallback(None)).unwrap_err();
    assert!(
        matches!(&error, Error::Config(e) if e.setting() == "PGAUTH_FALLBACK_USER"),
        "{error}"
    );
}

#[test]
fn a_twice_refused_fallback_names_the_fallback_role_and_its_settings() {
    let fallback = AccessToken::fallback(Secret::new("fallback-pw"), None);
    let token = AccessToken::new("token");
    // (fallback role set, the latest login's credential) -> target, words the message holds
    type Case = (
        Option<&'static str>,
        bool,
        &'static str,
        &'static [&'static str],
    );
    let cases: [Case; 4] = [
        (
            Some("break_glass"),
            true,
            "127.0.0.1:1 as break_glass",
            &[
                "refused the fallback password twice",
                "fallback role \"break_glass\" (PGAUTH_FALLBACK_USER)",
                "PGAUTH_FALLBACK_PASSWORD is its password",
            ],
        ),
        (
            None,
            true,
            "127.0.0.1:1 as app",
            &[
                "PGAUTH_FALLBACK_USER is unset",
                "PGAUTH_FALLBACK_PASSWORD was sent as PGUSER \"app\"",
                "set PGAUTH_FALLBACK_USER to a password role",
            ],
        ),
        // Tokens are back: a refusal is the token role's again.
        (
            Some("break_glass"),
            false,
            "127.0.0.1:1 as app",
            &["newest token", "the role \"app\" exists"],
        ),
        (None, false, "127.0.0.1:1 as app", &["newest token"]),
    ];
    for (role, used_fallback, expected_target, words) in cases {
        let mut settings = crate::testing::offline_settings()
            .method(crate::AuthMethod::Custom)
            .fallback_password("fallback-pw");
        if let Some(role) = role {
            settings = settings.fallback_user(role);
        }
        let target = LoginTarget::from_settings(&settings).unwrap();
        // The fallback first, then (maybe) a token: the latest login decides.
        target.user_for(&fallback).unwrap();
        if !used_fallback {
            target.user_for(&token).unwrap();
        }
        let case = (role, used_fallback);
        let error = target.login_error(DriverError("refused"), Some("28P01".into()), true);
        let Error::Connect {
            target: shown,
            message,
            ..
        } = &error
        else {
            panic!("{case:?}: {error:?}");
        };
        assert_eq!(shown, expected_target, "{case:?}");
        for words in words {
            assert!(message.contains(words), "{case:?}: {message}");
        }
        assert!(
            message.contains("server said refused"),
            "{case:?}: {message}"
        );
        assert!(
            !format!("{error} {error:?}").contains("fallback-pw"),
            "{case:?}"
        );
        // Refused once is no verdict: the driver's text, whatever was sent.
        let once = target.login_error(DriverError("refused"), Some("28P01".into()), false);
        assert!(!once.to_string().contains("twice"), "{case:?}: {once}");
    }
}

#[test]
fn the_refused_error_keeps_its_sqlstate_and_target() {
    let target = LoginTarget::from_settings(&offline_password_settings("pw")).unwrap();
    let error = target.login_error(DriverError("x"), Some("28P01".into()), true);
    assert!(error.is_auth_failure());
    assert_eq!(error.sqlstate(), Some("28P01"));
    assert!(error.to_string().contains("127.0.0.1:1 as app"), "{error}");
    assert!(!format!("{target:?}").contains("pw"));
}
