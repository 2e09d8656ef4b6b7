//! A caller's sqlx options through the engine, against the emulator: their `after_connect`
//! runs after the engine's hook, their base `PgConnectOptions` keep their non-routing fields;
//! and the libpq options sqlx lacks, applied by the engine's relay: the server gets exactly
//! the settings' `options`, and `target_session_attrs` is checked after the login.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::adapter::{Error, PooledEngine, sqlx};
use super::cases::{emulator, settings};
use cloud_pg_auth::TargetSessionAttrs;
use cloud_pg_auth::engine::chain_text;
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// How many statements sqlx keeps prepared in its cache after running one statement with a
/// parameter twice on a new connection.
async fn cached_statements(engine: &PooledEngine) -> usize {
    let mut connection = engine.get().await.unwrap();
    for _ in 0..2 {
        let one: i32 = sqlx::query_scalar("SELECT $1::int4")
            .bind(1_i32)
            .fetch_one(&mut *connection)
            .await
            .unwrap();
        assert_eq!(one, 1);
    }
    connection.cached_statements_size()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_base_options_keep_their_fields_but_not_the_route() {
    let emulator = emulator().await;
    // Routing fields pointing elsewhere: the settings' win.
    let base = PgConnectOptions::new_without_pgpass()
        .host("elsewhere.invalid")
        .port(1)
        .username("someone-else")
        .password("not-this-one")
        .database("nowhere")
        .statement_cache_capacity(0)
        .application_name("from-base")
        .options([("search_path", "pgauth_base")]);
    let engine = PooledEngine::builder(settings(&emulator))
        .connect_options(base)
        .build()
        .await
        .unwrap();
    assert_eq!(cached_statements(&engine).await, 0, "statement cache off");
    let mut connection = engine.get().await.unwrap();
    let (user, path, app): (String, String, String) = sqlx::query_as(
        "SELECT current_user::text, current_setting('search_path'), current_setting('application_name')",
    )
    .fetch_one(&mut *connection)
    .await
    .unwrap();
    assert_eq!(user, emulator.password_role());
    assert_eq!(path, "pgauth_base");
    assert_eq!(app, "from-base");
    drop(connection);
    engine.dispose().await;

    // Without a base, sqlx's default cache names the statement.
    let engine = PooledEngine::from_settings(settings(&emulator))
        .await
        .unwrap();
    assert_eq!(cached_statements(&engine).await, 1, "statement cache on");
    engine.dispose().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_after_connect_runs_after_the_engines_and_its_error_fails_the_checkout() {
    let emulator = emulator().await;
    let hooked = Arc::new(AtomicU64::new(0));
    let engine = PooledEngine::builder(settings(&emulator))
        .configure(|options| {
            // Replaced by the engine's hook, which runs the builder's.
            options.after_connect(|_, _| Box::pin(async { panic!("replaced") }))
        })
        .after_connect({
            let hooked = Arc::clone(&hooked);
            move |connection, _| {
                let hooked = Arc::clone(&hooked);
                Box::pin(async move {
                    hooked.fetch_add(1, Ordering::SeqCst);
                    sqlx::query("SET application_name = 'hooked'")
                        .execute(connection)
                        .await?;
                    Ok(())
                })
            }
        })
        .build()
        .await
        .unwrap();
    let mut connection = engine.get().await.unwrap();
    let app: String = sqlx::query_scalar("SELECT current_setting('application_name')")
        .fetch_one(&mut *connection)
        .await
        .unwrap();
    assert_eq!(app, "hooked");
    assert_eq!(hooked.load(Ordering::SeqCst), 1);
    assert_eq!(
        engine.status().connections_opened,
        1,
        "the engine's hook ran too"
    );
    drop(connection);
    engine.dispose().await;

    let engine = PooledEngine::builder(settings(&emulator))
        .connection_timeout(Duration::from_millis(500))
        .after_connect(|_, _| {
            Box::pin(async { Err(sqlx::Error::Protocol("refused by the hook".into())) })
        })
        .build()
        .await
        .unwrap();
    let error = engine.get().await.err().unwrap();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    engine.dispose().await;
}

/// Whatever `options` sqlx sends (the process's `PGOPTIONS` lands there, and sqlx's setter
/// only appends to it), the server gets exactly the settings' `options`, or none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_gets_exactly_the_settings_options() {
    let emulator = emulator().await;
    for (label, ours, want) in [
        (
            "the settings' options",
            Some(r"-c search_path=from_settings -c pgauth.note=a\ b"),
            "from_settings",
        ),
        ("no options", None, r#""$user", public"#),
    ] {
        let mut settings = settings(&emulator);
        if let Some(ours) = ours {
            settings = settings.options(ours);
        }
        let engine = PooledEngine::from_settings(settings).await.unwrap();
        // sqlx's options as a PGOPTIONS in the environment makes them, plus more.
        let from_sqlx = (*engine.pool().connect_options())
            .clone()
            .options([("search_path", "from_sqlx"), ("pgauth.note", "from_sqlx")]);
        let mut direct = PgConnection::connect_with(&from_sqlx).await.unwrap();
        let mut pooled = engine.get().await.unwrap();
        for (how, connection) in [("direct", &mut direct), ("pooled", &mut *pooled)] {
            let (path, note): (String, Option<String>) = sqlx::query_as(
                "SELECT current_setting('search_path'), current_setting('pgauth.note', true)",
            )
            .fetch_one(&mut *connection)
            .await
            .unwrap();
            assert_eq!(path, want, "{label}, {how}");
            let note = note.filter(|n| !n.is_empty());
            assert_eq!(note.as_deref(), ours.map(|_| "a b"), "{label}, {how}");
        }
        drop(pooled);
        direct.close().await.unwrap();
        engine.dispose().await;
    }
}

/// `target_session_attrs` is checked after the login, as libpq does it
/// (`SHOW transaction_read_only`): a session that is not what the settings ask for is refused
/// with an error naming the setting, through the engine and through sqlx's pool directly,
/// and never pooled. `default_transaction_read_only=on` in the settings' options makes the
/// session read-only, as a standby's is (after an HA failover, say).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_session_attrs_is_checked_after_the_login() {
    use TargetSessionAttrs::{Any, ReadOnly, ReadWrite};
    let emulator = emulator().await;
    let read_only = "-c default_transaction_read_only=on";
    for (label, attrs, options, refused_with) in [
        ("read-write on a writable session", ReadWrite, None, None),
        (
            "read-write on a read-only session",
            ReadWrite,
            Some(read_only),
            Some("but the server is read-only"),
        ),
        (
            "read-only on a read-only session",
            ReadOnly,
            Some(read_only),
            None,
        ),
        (
            "read-only on a writable session",
            ReadOnly,
            None,
            Some("but the server accepts writes"),
        ),
        ("any on a read-only session", Any, Some(read_only), None),
    ] {
        let mut settings = settings(&emulator).target_session_attrs(attrs);
        if let Some(options) = options {
            settings = settings.options(options);
        }
        let engine = PooledEngine::from_settings(settings).await.unwrap();
        match refused_with {
            None => {
                let mut connection = engine
                    .get()
                    .await
                    .unwrap_or_else(|e| panic!("{label}: {}", chain_text(&e)));
                let read_only: String =
                    sqlx::query_scalar("SELECT current_setting('transaction_read_only')")
                        .fetch_one(&mut *connection)
                        .await
                        .unwrap();
                assert_eq!(read_only == "on", options.is_some(), "{label}");
                drop(connection);
            }
            Some(part) => {
                let error = engine.get().await.expect_err(label);
                let text = chain_text(&error);
                let named = format!("target_session_attrs={}", attrs.as_str());
                assert!(
                    text.contains(&named) && text.contains(part),
                    "{label}: {text}"
                );
                assert!(!error.is_auth_failure(), "{label}: not a refused login");
                let direct = engine.pool().acquire().await.expect_err(label);
                assert!(direct.to_string().contains(&named), "{label}: {direct}");
                assert_eq!(engine.pool().size(), 0, "{label}: never pooled");
                assert_eq!(engine.status().connections_opened, 0, "{label}");
            }
        }
        engine.dispose().await;
    }
}

/// A socket directory host goes through the relay too, so it gets the same `options` and
/// `target_session_attrs` handling (the server trusts the superuser on its socket).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_directory_host_gets_the_same_options() {
    use cloud_pg_auth_testkit::postgres::{PostgresServer, ServerOptions};
    let server = PostgresServer::start(ServerOptions::default())
        .await
        .unwrap();
    let settings = cloud_pg_auth::testing::offline_password_settings("unused")
        .host(server.socket_dir().to_str().unwrap())
        .port(server.port())
        .user(server.superuser())
        .dbname("postgres")
        .options("-c search_path=over_the_socket -c default_transaction_read_only=on");
    let engine = PooledEngine::from_settings(settings.clone()).await.unwrap();
    let mut connection = engine.get().await.unwrap();
    let path: String = sqlx::query_scalar("SELECT current_setting('search_path')")
        .fetch_one(&mut *connection)
        .await
        .unwrap();
    assert_eq!(path, "over_the_socket");
    drop(connection);
    engine.dispose().await;

    let engine =
        PooledEngine::from_settings(settings.target_session_attrs(TargetSessionAttrs::ReadWrite))
            .await
            .unwrap();
    let text = chain_text(&engine.get().await.expect_err("a read-only session"));
    assert!(
        text.contains("target_session_attrs=read-write") && text.contains("read-only"),
        "{text}"
    );
    engine.dispose().await;
    server.stop().await.unwrap();
}
