//! The scenario list. Each function is one behaviour every adapter must show; the
//! [`conformance_tests!`](crate::conformance_tests) macro turns them into tests per adapter.
//!
//! No scenario synchronises on sleeps or counts over a wall-clock window: they wait on the
//! emulator's counters, the engine's status or a flag with [`poll_until`], and move token time
//! with a [`ManualClock`]. Figures only wall time can give (rates, latencies) belong to
//! `cargo xtask bench`.

mod contract;
mod custom_source;
mod fallback;
mod health;
mod lifecycle;
mod logins;
mod migration_role;
mod options;
mod refresh;
mod secrets;

pub use contract::{
    dispose_with_a_leaked_connection_returns, drop_with_pool_and_auth_clones_stops_the_refresher,
    migration_report_has_one_shape, pool_options_are_checked,
};
pub use custom_source::custom_source_with_settings_from_the_environment;
pub use fallback::{fallback_logs_in_as_its_own_role, settings_with_fallback_role};
pub use health::{health_follows_the_credential, health_shows_the_pool_settings};
pub use lifecycle::{
    DropRecorder, dispose_leaves_no_task_and_no_credential,
    drop_without_dispose_stops_the_refresher, runtime_affinity,
};
pub use logins::{
    bad_settings_are_refused, cold_herd_makes_one_token_request, counters_add_up,
    logins_for_every_method, plaintext_is_refused,
};
pub use migration_role::{migrations_run_as_a_password_owner, migrations_run_as_their_own_role};
pub use options::connection_options_reach_the_server;
pub use refresh::{
    outage_is_ridden_out_while_the_token_is_valid, postgres_restart_is_survived,
    rollover_keeps_opening_connections, slow_endpoint_does_not_delay_opens, throttling_is_honoured,
};
pub use secrets::no_token_in_debug_or_logs;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cloud_pg_auth::clock::{Clock, ManualClock};
use cloud_pg_auth::engine::chain_text;
use cloud_pg_auth::{AuthOptions, BoxError};
pub use cloud_pg_auth_testkit::poll_until;
use cloud_pg_auth_testkit::{Emulator, EmulatorOptions};

use crate::{Adapter, EngineOptions, Method};

/// How long a scenario waits for something that normally takes milliseconds: a guard against
/// a hang, not a measurement.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Starts an emulator whose Azure tokens live `lifetime`.
pub async fn emulator(lifetime: Duration) -> Emulator {
    Emulator::start(EmulatorOptions {
        token_lifetime: lifetime,
        ..EmulatorOptions::default()
    })
    .await
    .expect("the emulator starts")
}

/// A manual clock standing at the real time (the emulator's tokens carry real expiry times),
/// and credential options on it.
#[must_use]
pub fn manual_clock() -> (ManualClock, AuthOptions) {
    let clock = ManualClock::new(SystemTime::now());
    let options = AuthOptions::default().clock(Arc::new(clock.clone()));
    (clock, options)
}

/// An Azure managed-identity engine whose credential reads a manual clock, after one open
/// (so its first token is cached).
pub async fn warm_engine_on_manual_clock<A: Adapter>(
    emulator: &Emulator,
    method: Method,
) -> (ManualClock, A::Pooled) {
    let settings = method.settings(emulator);
    let (clock, auth) = manual_clock();
    let options = EngineOptions {
        auth,
        ..EngineOptions::default()
    };
    let engine = A::pooled(settings, options).await.unwrap();
    A::current_user_on_new_connection(&engine).await.unwrap();
    (clock, engine)
}

/// Brings the identity endpoint back after an outage scenario, with tokens valid on `clock`
/// (by then an hour ahead of the emulator's), and moves `clock` past any backoff, so the next
/// new connection fetches a token.
pub async fn endpoint_back_past_backoff(emulator: &Emulator, clock: &ManualClock) {
    emulator
        .set_faults(cloud_pg_auth_testkit::Faults {
            down: Some(false),
            token_lifetime: Some(3 * 3600),
            ..cloud_pg_auth_testkit::Faults::default()
        })
        .await
        .unwrap();
    clock.advance(Duration::from_secs(120));
}

/// Moves `clock` to `at` plus one second (nothing when `at` has passed).
pub fn advance_past(clock: &ManualClock, at: SystemTime) {
    let now = clock.now();
    clock.advance(at.duration_since(now).unwrap_or_default() + Duration::from_secs(1));
}

/// Waits until every connection the engine opened is idle in its pool: the explicit settle
/// step after a checkout, since some pools (sqlx) take a connection back from a task of their
/// own after the checkout is dropped.
pub async fn settle<A: Adapter>(engine: &A::Pooled) {
    poll_until(
        "the connections are back in the pool",
        PATIENCE,
        async || {
            A::status(engine)
                .pool
                .is_some_and(|pool| pool.idle == pool.size)
        },
    )
    .await;
}

pub(crate) fn token_requests(emulator: &Emulator) -> u64 {
    emulator.stats().token_requests.total
}

/// The tokens `engine` has made so far: the emulator's count of identity-endpoint requests for
/// an endpoint method (which must agree with the engine's own count), else the engine's count
/// of fetches (a locally signed token).
pub(crate) fn tokens_made<A: Adapter>(
    emulator: &Emulator,
    engine: &A::Pooled,
    method: Method,
) -> u64 {
    let fetched = A::status(engine).auth.fetch_count;
    if Method::ENDPOINT.contains(&method) {
        let requested = token_requests(emulator);
        assert_eq!(
            requested,
            fetched,
            "{}: {method:?}: endpoint and engine counts",
            A::NAME
        );
        requested
    } else {
        fetched
    }
}

pub(crate) fn text(error: &BoxError) -> String {
    chain_text(error.as_ref())
}

/// Generates the conformance tests for one adapter: one test per scenario.
#[macro_export]
macro_rules! conformance_tests {
    ($adapter:ty) => {
        $crate::conformance_tests!(@multi_thread $adapter;
            logins_for_every_method,
            counters_add_up,
            cold_herd_makes_one_token_request,
            rollover_keeps_opening_connections,
            outage_is_ridden_out_while_the_token_is_valid,
            throttling_is_honoured,
            slow_endpoint_does_not_delay_opens,
            postgres_restart_is_survived,
            dispose_leaves_no_task_and_no_credential,
            drop_without_dispose_stops_the_refresher,
            drop_with_pool_and_auth_clones_stops_the_refresher,
            dispose_with_a_leaked_connection_returns,
            pool_options_are_checked,
            migration_report_has_one_shape,
            no_token_in_debug_or_logs,
            plaintext_is_refused,
            bad_settings_are_refused,
            migrations_run_as_their_own_role,
            migrations_run_as_a_password_owner,
            health_follows_the_credential,
            health_shows_the_pool_settings,
            custom_source_with_settings_from_the_environment,
            fallback_logs_in_as_its_own_role,
            connection_options_reach_the_server,
        );

        // Builds its own runtimes: the point is a runtime that ends under a credential.
        #[test]
        fn runtime_affinity() {
            $crate::scenarios::runtime_affinity::<$adapter>();
        }
    };
    (@multi_thread $adapter:ty; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                $crate::scenarios::$scenario::<$adapter>().await;
            }
        )*
    };
}
