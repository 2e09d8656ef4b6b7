//! The demo's fallback-role row: Azure managed identity with `PGAUTH_FALLBACK_USER`; the
//! identity endpoint goes down past the token's expiry (on a manual clock) and a new
//! connection logs in as the fallback role; the endpoint comes back and tokens do again.

use std::time::Duration;

use cloud_pg_auth::BoxError;
use cloud_pg_auth::engine::chain_text;
use cloud_pg_auth_testkit::{Emulator, Faults};

use super::{DemoRow, TOKEN_LIFETIME};
use crate::scenarios::{advance_past, manual_clock, settings_with_fallback_role};
use crate::{Adapter, EngineOptions, Method};

/// The row's method column.
pub const FALLBACK_ROW: &str = "fallback-role";

/// Runs the fallback row for one adapter. It takes the emulator's identity endpoint down:
/// run it alone, never beside other rows.
pub async fn run_fallback_row<A: Adapter>(
    emulator: &Emulator,
    progress: &(dyn Fn(String) + Sync),
) -> DemoRow {
    let mut row = DemoRow {
        adapter: A::NAME,
        method: FALLBACK_ROW,
        ok: false,
        current_user: None,
        connections_opened: 0,
        token_requests: 0,
        migrations_applied: 0,
        error: None,
    };
    let outcome = steps::<A>(emulator, &mut row, progress).await;
    // Whatever happened, the endpoint is up again with the demo's lifetime for later rows.
    let restored = emulator
        .set_faults(Faults {
            down: Some(false),
            token_lifetime: Some(TOKEN_LIFETIME.as_secs()),
            ..Faults::default()
        })
        .await;
    match outcome.and(restored.map(drop).map_err(BoxError::from)) {
        Ok(()) => row.ok = true,
        Err(error) => row.error = Some(chain_text(error.as_ref())),
    }
    row
}

async fn steps<A: Adapter>(
    emulator: &Emulator,
    row: &mut DemoRow,
    progress: &(dyn Fn(String) + Sync),
) -> Result<(), BoxError> {
    let say = |step: &str| progress(format!("{:<13} {:<24} {step}", A::NAME, FALLBACK_ROW));
    let token_role = Method::AzureManagedIdentity.expected_role(emulator);
    let fallback_role = Method::Password.expected_role(emulator);
    let (clock, auth) = manual_clock();
    let engine = A::pooled(
        settings_with_fallback_role(emulator),
        EngineOptions {
            auth,
            ..EngineOptions::default()
        },
    )
    .await?;
    let result = async {
        expect_user::<A>(&engine, &token_role, "with the endpoint up").await?;
        say("identity endpoint down, clock past the token's expiry: a new connection");
        emulator
            .set_faults(Faults {
                down: Some(true),
                ..Faults::default()
            })
            .await?;
        let expires_at = A::status(&engine)
            .auth
            .expires_at
            .ok_or("no token expiry")?;
        advance_past(&clock, expires_at);
        expect_user::<A>(&engine, &fallback_role, "during the outage").await?;
        row.current_user = Some(fallback_role.clone());
        if A::status(&engine).auth.fallback_count == 0 {
            return Err("the fallback use was not counted".into());
        }
        say("identity endpoint back, clock past the backoff: tokens again");
        emulator
            .set_faults(Faults {
                down: Some(false),
                token_lifetime: Some(3 * 3600),
                ..Faults::default()
            })
            .await?;
        clock.advance(Duration::from_secs(120));
        expect_user::<A>(&engine, &token_role, "after the outage").await
    }
    .await;
    let status = A::status(&engine);
    A::dispose(&engine).await;
    row.connections_opened = status.connections_opened;
    row.token_requests = status.auth.fetch_count;
    result
}

async fn expect_user<A: Adapter>(
    engine: &A::Pooled,
    expected: &str,
    when: &str,
) -> Result<(), BoxError> {
    let user = A::current_user_on_new_connection(engine).await?;
    if user == expected {
        Ok(())
    } else {
        Err(format!("{when}: logged in as {user}, expected {expected}").into())
    }
}
