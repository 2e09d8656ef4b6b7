//! Tests of the connect options the engine builds (nothing taken from the process
//! environment, a caller's base kept off the route) and of the watcher's wall-clock check.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cloud_pg_auth::AuthOptions;
use cloud_pg_auth::clock::{Clock, ManualClock};
use cloud_pg_auth::testing::{FakeSource, offline_password_settings};
use cloud_pg_auth::{Settings, SslMode};
use cloud_pg_auth_testkit::{PATIENCE, poll_until};

use super::PooledEngine;
use super::sqlx::postgres::{PgConnectOptions, PgSslMode};
use super::target::{Target, join_options, without_inherited};

fn settings() -> Settings {
    offline_password_settings("pw").ssl_mode(SslMode::Disable)
}

/// sqlx reads PG* variables in every constructor and the tests cannot set them (they run in
/// parallel): so each field that can come from there is checked to be the settings' or the
/// server's default, whatever this process's environment holds.
#[test]
fn no_routing_field_comes_from_the_process_environment() {
    let target = Target::from_settings(&settings()).unwrap();
    let options = target.base_options();
    assert_eq!(options.get_username(), "app");
    assert_eq!(
        options.get_database(),
        Some("app"),
        "libpq's default: the user"
    );
    assert_eq!(options.get_application_name(), Some(""), "not PGAPPNAME");
    assert!(
        matches!(options.get_ssl_mode(), PgSslMode::Disable),
        "certificates unused"
    );
    assert_eq!(options.get_port(), 1);
    let relay = target.relay().dir().unwrap();
    assert_eq!(options.get_socket(), Some(&relay));
}

#[test]
fn a_callers_base_keeps_its_own_fields_and_loses_the_route() {
    let base = PgConnectOptions::new_without_pgpass()
        .host("elsewhere.invalid")
        .port(7)
        .username("other")
        .password("other-password")
        .database("other-db")
        .ssl_mode(PgSslMode::Require)
        .application_name("mine")
        .options([("statement_timeout", "5s")]);
    let target = Target::with_base(&settings().dbname("db"), Some(base.clone())).unwrap();
    let options = target.base_options();
    assert_eq!(options.get_username(), "app");
    assert_eq!(options.get_database(), Some("db"));
    assert!(matches!(options.get_ssl_mode(), PgSslMode::Disable));
    assert_eq!(options.get_port(), 1);
    assert_eq!(options.get_application_name(), Some("mine"));
    assert!(
        options
            .get_options()
            .is_some_and(|o| o.ends_with("-c statement_timeout=5s")),
        "the caller's options are kept"
    );
    let named = settings().application_name("from-settings");
    let options = Target::with_base(&named, Some(base))
        .unwrap()
        .base_options();
    assert_eq!(options.get_application_name(), Some("from-settings"));
}

/// What a caller's base adds to the environment's `PGOPTIONS` is kept, the rest dropped;
/// the caller's go before the settings'.
#[test]
fn a_callers_options_are_told_from_the_inherited_ones() {
    let env = Some("-c search_path=env");
    for (all, inherited, want) in [
        ("-c search_path=env", env, None),
        ("-c search_path=env -c a=b", env, Some("-c a=b")),
        ("-c a=b", env, Some("-c a=b")),
        ("-c a=b", None, Some("-c a=b")),
        ("-c search_path=env2", env, Some("-c search_path=env2")),
        ("  ", None, None),
        ("-c a=b", Some(" "), Some("-c a=b")),
    ] {
        assert_eq!(
            without_inherited(all, inherited).as_deref(),
            want,
            "{all:?} after {inherited:?}"
        );
    }
    for (first, second, want) in [
        (Some("-c a=1"), Some("-c a=2"), Some("-c a=1 -c a=2")),
        (Some("-c a=1"), None, Some("-c a=1")),
        (None, Some("-c a=2"), Some("-c a=2")),
        (None, None, None),
    ] {
        assert_eq!(
            join_options(first.map(str::to_owned), second).as_deref(),
            want
        );
    }
}

#[test]
fn options_that_cannot_reach_the_server_are_refused_by_name() {
    for options in ["-c a=b\0c", "search_path=x"] {
        let error = Target::from_settings(&settings().options(options)).unwrap_err();
        let text = error.to_string();
        assert!(text.contains("PGOPTIONS"), "{options:?}: {text}");
    }
}

/// A resumed process: wall-clock time jumped, but the long timers (tokio's monotonic clock)
/// have not counted the suspension, so the refresher sleeps on. Short sleeps follow the
/// manual clock.
#[derive(Debug)]
struct Resumed(ManualClock);

impl Clock for Resumed {
    fn now(&self) -> SystemTime {
        self.0.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        if duration <= Duration::from_secs(60) {
            self.0.sleep(duration)
        } else {
            Box::pin(std::future::pending())
        }
    }
}

/// The pool's options get a valid token soon after a wall-clock jump without any checkout
/// through the engine, so `pool().acquire()` does not log in with the expired one.
#[tokio::test]
async fn the_watcher_installs_a_valid_token_after_a_wall_clock_jump() {
    let (clock, source) = FakeSource::with_manual_clock(Some(Duration::from_secs(3600)));
    let engine = PooledEngine::builder(settings())
        .token_source(source.clone())
        .auth_options(
            AuthOptions::default()
                .clock(Arc::new(Resumed(clock.clone())))
                .background_refresh(true),
        )
        .build()
        .await
        .unwrap();
    let secret = || engine.installed_secret().map(|s| s.expose().to_string());
    assert_eq!(secret().as_deref(), Some("fake-token-1"));
    clock.advance(Duration::from_secs(2 * 3600));
    poll_until("the watcher installs fake-token-2", PATIENCE, async || {
        secret().as_deref() == Some("fake-token-2")
    })
    .await;
    engine.dispose().await;
}
