//! The fallback role (issue 13, item 3): with the identity endpoint down and no valid token,
//! new connections log in with `PGAUTH_FALLBACK_PASSWORD` as `PGAUTH_FALLBACK_USER` (a
//! password role: the token's Entra-mapped role accepts no password), counted and degraded;
//! once the endpoint is back, with tokens as the token's role again. Token time moves on a
//! manual clock; every wait is on the engine's status.

use std::time::Duration;

use cloud_pg_auth::{Env, Health, Settings};
use cloud_pg_auth_testkit::{Emulator, Faults};

use super::{advance_past, emulator, endpoint_back_past_backoff, manual_clock, text};
use crate::{Adapter, EngineOptions, Method};

fn down(on: bool) -> Faults {
    Faults {
        down: Some(on),
        ..Faults::default()
    }
}

/// Azure managed identity (the user comes from the token) with the emulator's password role
/// as the fallback, read from the environment as an application would.
#[must_use]
pub fn settings_with_fallback_role(emulator: &Emulator) -> Settings {
    let mut env = Method::AzureManagedIdentity.env(emulator);
    env.push((
        "PGAUTH_FALLBACK_USER".into(),
        emulator.password_role().into(),
    ));
    env.push((
        "PGAUTH_FALLBACK_PASSWORD".into(),
        emulator.password().into(),
    ));
    Settings::from_env_vars(&Env::from_pairs(env)).expect("the fallback settings are valid")
}

/// Endpoint down and the token expired: a new connection logs in as the fallback role,
/// counted, the engine degraded; endpoint back and the clock past the backoff: new
/// connections log in as the token's role again, healthy.
pub async fn fallback_logs_in_as_its_own_role<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(3600)).await;
    let token_role = Method::AzureManagedIdentity.expected_role(&emulator);
    let fallback_role = Method::Password.expected_role(&emulator);
    let (clock, auth) = manual_clock();
    let options = EngineOptions {
        auth,
        ..EngineOptions::default()
    };
    let engine = A::pooled(settings_with_fallback_role(&emulator), options)
        .await
        .unwrap();
    let user = A::current_user_on_new_connection(&engine).await.unwrap();
    assert_eq!(
        user,
        token_role,
        "{}: a token while the endpoint is up",
        A::NAME
    );
    let status = A::status(&engine);
    assert_eq!(status.auth.fallback_count, 0, "{}: {status:?}", A::NAME);
    assert!(status.auth.fallback_configured);
    assert_eq!(
        status.auth.fallback_user.as_deref(),
        Some(fallback_role.as_str())
    );
    assert!(!status.auth.fallback_in_use, "{}: {status:?}", A::NAME);

    emulator.set_faults(down(true)).await.unwrap();
    advance_past(&clock, status.auth.expires_at.unwrap());
    let user = A::current_user_on_new_connection(&engine)
        .await
        .unwrap_or_else(|e| panic!("{}: the fallback logs in: {}", A::NAME, text(&e)));
    assert_eq!(user, fallback_role, "{}: the fallback's own role", A::NAME);
    let status = A::status(&engine);
    assert!(status.auth.fallback_count >= 1, "{}: {status:?}", A::NAME);
    assert!(status.auth.fallback_in_use, "{}: {status:?}", A::NAME);
    assert!(!status.auth.token_valid);
    assert_eq!(status.health, Health::Degraded, "{}: {status:?}", A::NAME);
    assert!(
        status
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("fallback password")),
        "{}: {status:?}",
        A::NAME
    );

    // Back up, with tokens valid on the clock (now an hour ahead of the emulator's), and past
    // any backoff: the next new connection fetches a token and logs in as its role.
    endpoint_back_past_backoff(&emulator, &clock).await;
    let user = A::current_user_on_new_connection(&engine)
        .await
        .unwrap_or_else(|e| panic!("{}: tokens again: {}", A::NAME, text(&e)));
    assert_eq!(user, token_role, "{}: the token's role again", A::NAME);
    let status = A::status(&engine);
    assert!(status.auth.token_valid, "{}: {status:?}", A::NAME);
    assert!(!status.auth.fallback_in_use, "{}: {status:?}", A::NAME);
    assert_eq!(status.health, Health::Healthy, "{}: {status:?}", A::NAME);
    assert_eq!(
        emulator.stats().logins_rejected.values().sum::<u64>(),
        0,
        "{}: {:?}",
        A::NAME,
        emulator.stats()
    );
    A::dispose(&engine).await;
    emulator.stop().await.unwrap();
}
