//! Logins through every method, the counters they leave, and settings refused at build.

use std::sync::Arc;
use std::time::Duration;

use cloud_pg_auth::{AuthMethod, Settings, SslMode};

use super::{emulator, settle, text, tokens_made};
use crate::{Adapter, EngineOptions, Method};

/// Every method logs in as its mapped role through the pool and through the migration
/// engine; migrations apply once; status shows the method and counters.
pub async fn logins_for_every_method<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(3600)).await;
    for method in Method::ALL {
        let db = format!("logins_{}", method.name().replace('-', "_"));
        let settings = method
            .settings_in_new_database(&emulator, &db)
            .await
            .unwrap();
        let role = method.expected_role(&emulator);
        let engine = A::pooled(settings.clone(), EngineOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{} {}: {}", A::NAME, method.name(), text(&e)));
        for _ in 0..3 {
            let user = A::current_user_on_new_connection(&engine)
                .await
                .unwrap_or_else(|e| panic!("{} {}: {}", A::NAME, method.name(), text(&e)));
            assert_eq!(user, role, "{} {}", A::NAME, method.name());
        }
        assert_eq!(A::current_user(&engine).await.unwrap(), role);
        let status = A::status(&engine);
        assert_eq!(status.auth.method, method.status_method(), "{status:?}");
        assert!(status.connections_opened >= 3, "{status:?}");
        assert!(status.pool.is_some(), "{status:?}");
        // Derived from the token (xms_mirid) or the principal's email (Google).
        if matches!(
            method,
            Method::AzureManagedIdentity | Method::GcpCloudSql | Method::GcpAlloyDb
        ) {
            assert_eq!(
                status.auth.username.as_deref(),
                Some(role.as_str()),
                "derived: {status:?}"
            );
        }
        A::dispose(&engine).await;

        let migration = A::migration(settings).await.unwrap_or_else(|e| {
            panic!(
                "{} {} migration engine: {}",
                A::NAME,
                method.name(),
                text(&e)
            )
        });
        let first = A::migrate(&migration)
            .await
            .unwrap_or_else(|e| panic!("{}", text(&e)));
        let again = A::migrate(&migration).await.unwrap();
        assert_eq!(
            (first.applied.len(), again.applied.len()),
            (1, 0),
            "migrations apply once"
        );
        assert!(A::migration_status(&migration).pool.is_none());
        A::dispose_migration(&migration).await;
    }
    emulator.stop().await.unwrap();
}

/// 200 concurrent checkouts on a cold pool cause exactly one token request (or one signing),
/// for every method whose tokens come from an identity endpoint or are signed locally.
pub async fn cold_herd_makes_one_token_request<A: Adapter>() {
    for method in Method::ENDPOINT.into_iter().chain(Method::SIGNED) {
        cold_herd_for::<A>(method).await;
    }
}

async fn cold_herd_for<A: Adapter>(method: Method) {
    let emulator = emulator(Duration::from_secs(3600)).await;
    let settings = method.settings(&emulator);
    let engine = Arc::new(
        A::pooled(
            settings,
            EngineOptions {
                max_size: 20,
                connection_timeout: Duration::from_secs(60),
                ..EngineOptions::default()
            },
        )
        .await
        .unwrap(),
    );
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let engine = Arc::clone(&engine);
            tokio::spawn(async move { A::current_user(&engine).await.map_err(|e| text(&e)) })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(
        tokens_made::<A>(&emulator, &engine, method),
        1,
        "{method:?}: {:?}",
        emulator.stats()
    );
    A::dispose(&engine).await;
}

/// Counters of a short password session add up: one fetch, two migration connections, one
/// connection per forced open, a held connection that answers queries, and a disposed engine
/// that refuses checkouts.
pub async fn counters_add_up<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(3600)).await;
    let db = format!("counters_{}", A::NAME.replace(['-', '.'], "_"));
    let settings = Method::Password
        .settings_in_new_database(&emulator, &db)
        .await
        .unwrap();
    let role = emulator.password_role().to_string();

    let migration = A::migration(settings.clone()).await.unwrap();
    assert_eq!(A::migrate(&migration).await.unwrap().applied.len(), 1);
    assert_eq!(A::migrate(&migration).await.unwrap().applied.len(), 0);
    assert_eq!(A::migration_status(&migration).connections_opened, 2);
    A::dispose_migration(&migration).await;

    let engine = A::pooled(settings, EngineOptions::default()).await.unwrap();
    assert_eq!(A::current_user(&engine).await.unwrap(), role);
    // Every pool has the connection back before the next checkout, so that one reuses it.
    settle::<A>(&engine).await;
    assert_eq!(A::current_user(&engine).await.unwrap(), role);
    settle::<A>(&engine).await;
    assert_eq!(
        A::current_user_on_new_connection(&engine).await.unwrap(),
        role
    );
    assert_eq!(
        A::current_user_on_new_connection(&engine).await.unwrap(),
        role
    );
    let status = A::status(&engine);
    // The reused connection plus two forced opens.
    assert_eq!(status.connections_opened, 3, "{status:?}");
    assert_eq!(status.auth_retries, 0, "{status:?}");
    assert_eq!(status.auth.method, "password");
    assert_eq!(status.auth.fetch_count, 1);
    // A held connection answers repeated queries (what the bench times).
    let mut held = A::hold(&engine).await.unwrap();
    for _ in 0..3 {
        A::select_one(&mut held).await.unwrap();
    }
    drop(held);
    A::dispose(&engine).await;
    let error = A::current_user(&engine).await.unwrap_err();
    assert!(text(&error).contains("disposed"), "{}", text(&error));
    assert!(!A::auth(&engine).refresher_running());
    emulator.stop().await.unwrap();
}

/// Tokens never cross the network in clear: refused at start, and refused by a server that
/// requires TLS when a loopback test set-up opts out.
pub async fn plaintext_is_refused<A: Adapter>() {
    let emulator = emulator(Duration::from_secs(3600)).await;
    let settings = Method::AzureManagedIdentity.settings(&emulator);
    let clear = settings.clone().ssl_mode(SslMode::Disable);
    let error = A::pooled(clear.clone(), EngineOptions::default())
        .await
        .err()
        .expect("refused at start");
    assert!(text(&error).contains("PGSSLMODE"), "{}", text(&error));
    let opted_out = clear.insecure_loopback(true);
    let engine = A::pooled(opted_out, EngineOptions::default())
        .await
        .unwrap();
    let error = A::current_user(&engine).await.unwrap_err();
    assert!(
        text(&error).contains("no encryption"),
        "the server refuses plaintext: {}",
        text(&error)
    );
    A::dispose(&engine).await;
    emulator.stop().await.unwrap();
}

/// Bad settings fail when the engine is built, naming the setting.
pub async fn bad_settings_are_refused<A: Adapter>() {
    async fn check<A: Adapter>(settings: Settings, expected: &str) {
        match A::pooled(settings.clone(), EngineOptions::default()).await {
            Ok(_) => panic!("{settings:?} was accepted"),
            Err(e) => assert!(text(&e).contains(expected), "{}: {}", expected, text(&e)),
        }
        match A::migration(settings.clone()).await {
            Ok(_) => panic!("{settings:?} was accepted by the migration engine"),
            Err(e) => assert!(text(&e).contains(expected), "{}: {}", expected, text(&e)),
        }
    }
    let azure = Settings::default()
        .host("srv.postgres.database.azure.com")
        .method(AuthMethod::Azure);
    check::<A>(azure.clone().password("hunter2"), "PGPASSWORD").await;
    check::<A>(azure.clone().ssl_mode(SslMode::Prefer), "PGSSLMODE").await;
    check::<A>(
        Settings::default()
            .method(AuthMethod::Aws)
            .host("db.abc.eu-west-1.rds.amazonaws.com"),
        "PGUSER",
    )
    .await;
    check::<A>(
        Settings::default()
            .method(AuthMethod::Password)
            .host("db")
            .user("u"),
        "PGPASSWORD",
    )
    .await;
    check::<A>(Settings::default().user("u").password("hunter2"), "PGHOST").await;
    check::<A>(
        azure.clone().insecure_loopback(true),
        "PGAUTH_INSECURE_LOOPBACK",
    )
    .await;
    // verify-ca with a token checks only the chain: never against the public roots.
    check::<A>(azure.clone().ssl_mode(SslMode::VerifyCa), "PGSSLMODE").await;
    // Host lists are not supported yet, and refused the same way by every adapter.
    check::<A>(
        Settings::default()
            .host("h1.example.com,h2.example.com")
            .user("u")
            .password("hunter2"),
        "several hosts",
    )
    .await;
    // The opt-out is for loopback: the address dialled decides, not the name.
    check::<A>(
        Settings::default()
            .host("localhost")
            .hostaddr("10.0.0.5".parse().unwrap())
            .method(AuthMethod::Azure)
            .ssl_mode(SslMode::Disable)
            .insecure_loopback(true),
        "PGAUTH_INSECURE_LOOPBACK",
    )
    .await;
}
