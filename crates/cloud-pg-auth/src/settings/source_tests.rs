//! Settings for an engine given a token source of the caller's: read from the environment or
//! a URL with the method left to the source, and the method the source gives them.

use async_trait::async_trait;

use super::tests::{check, env};
use super::*;
use crate::source::{SourceInfo, StaticPassword};
use crate::{AccessToken, TokenError};

/// A source that calls itself `method` in its [`SourceInfo`].
#[derive(Debug)]
struct Named(&'static str);

#[async_trait]
impl TokenSource for Named {
    async fn fetch(&self) -> Result<AccessToken, TokenError> {
        Ok(AccessToken::new("unused"))
    }

    fn info(&self) -> SourceInfo {
        SourceInfo::new(self.0)
    }
}

#[test]
fn an_undecided_method_is_left_to_the_engine_s_source() {
    let pairs = [("PGHOST", "db.internal"), ("PGUSER", "app")];
    let s = Settings::from_env_vars(&env(&pairs)).unwrap();
    assert_eq!(s.get_method(), AuthMethod::Auto);
    // Without a source the engine cannot log in, and says so.
    let e = s.validate().unwrap_err();
    assert_eq!(e.setting(), "PGAUTH_METHOD");
    assert!(e.message().contains("cannot tell how to log in"), "{e}");
    assert!(s.for_custom_source().validate().is_ok());

    let url = Settings::from_url("postgres://app@db.internal:6432/orders").unwrap();
    assert_eq!(url.get_method(), AuthMethod::Auto);
    assert!(url.for_custom_source().validate().is_ok());
}

#[test]
fn an_undecided_method_leaves_the_user_to_the_engine_and_checks_the_rest() {
    // No PGUSER: whether one is needed depends on the source the engine gets.
    let s = Settings::from_env_vars(&env(&[("PGHOST", "db.internal")])).unwrap();
    let e = s.for_custom_source().validate().unwrap_err();
    assert_eq!(e.setting(), "PGUSER");
    assert!(e.message().contains("custom token source"), "{e}");
    // Everything else is checked as for a token: no token in clear to a remote host.
    check(
        &[("PGHOST", "db.internal"), ("PGSSLMODE", "disable")],
        "PGSSLMODE",
        "in clear",
    );
    check(
        &[
            ("PGHOST", "db.internal"),
            ("PGUSER", "app"),
            ("PGAUTH_INSECURE_LOOPBACK", "1"),
        ],
        "PGAUTH_INSECURE_LOOPBACK",
        "loopback",
    );
    check(&[("PGUSER", "app")], "PGHOST", "no server host");
}

#[test]
fn a_source_gives_auto_settings_its_method_and_keeps_a_set_one() {
    let auto = Settings::default().host("127.0.0.1").user("app");
    let callback = Named("callback");
    let azure = Named("azure");
    let password = StaticPassword::new("pw");
    assert_eq!(auto.for_source(Some(&callback)).method, AuthMethod::Custom);
    assert_eq!(auto.for_source(Some(&password)).method, AuthMethod::Custom);
    assert_eq!(auto.for_source(Some(&azure)).method, AuthMethod::Azure);
    assert!(matches!(auto.for_source(None), Cow::Borrowed(_)));
    let set = auto.clone().method(AuthMethod::Password);
    assert!(matches!(set.for_source(Some(&azure)), Cow::Borrowed(_)));
    assert_eq!(set.for_source(Some(&azure)).method, AuthMethod::Password);

    // An Azure source's settings need no PGUSER: its tokens name the user.
    let no_user = Settings::default().host("127.0.0.1");
    assert!(no_user.for_source(Some(&azure)).validate().is_ok());
    let e = no_user.for_source(Some(&callback)).validate().unwrap_err();
    assert_eq!(e.setting(), "PGUSER");
}
