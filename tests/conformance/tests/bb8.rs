//! The conformance scenarios against `cloud-pg-auth-bb8`.

use std::sync::Arc;

use async_trait::async_trait;
use cloud_pg_auth::{Auth, BoxError, EngineStatus, Settings, TokenSource};
use cloud_pg_auth_bb8::{
    MigrationEngine, Migrations, PooledEngine, PooledEngineBuilder, migrations,
};
use cloud_pg_auth_conformance::{Adapter, EngineOptions, Method};

struct Bb8;

/// A migration engine and the conformance migrations it runs.
struct Migration {
    engine: MigrationEngine,
    migrations: Migrations,
}

fn with_options(builder: PooledEngineBuilder, options: EngineOptions) -> PooledEngineBuilder {
    builder
        .max_size(options.max_size)
        .auth_options(options.auth)
        .connection_timeout(options.connection_timeout)
}

async fn select_current_user(
    client: &cloud_pg_auth_bb8::tokio_postgres::Client,
) -> Result<String, BoxError> {
    Ok(client
        .query_one("SELECT current_user::text", &[])
        .await?
        .get(0))
}

#[async_trait]
impl Adapter for Bb8 {
    const NAME: &'static str = "bb8";
    type Pooled = PooledEngine;
    type Migration = Migration;

    async fn pooled(settings: Settings, options: EngineOptions) -> Result<PooledEngine, BoxError> {
        Ok(with_options(PooledEngine::builder(settings), options)
            .build()
            .await?)
    }

    async fn pooled_with_source(
        settings: Settings,
        source: Arc<dyn TokenSource>,
        options: EngineOptions,
    ) -> Result<PooledEngine, BoxError> {
        Ok(with_options(PooledEngine::builder(settings), options)
            .token_source(source)
            .build()
            .await?)
    }

    async fn current_user(engine: &PooledEngine) -> Result<String, BoxError> {
        let client = engine.get().await?;
        select_current_user(&client).await
    }

    async fn current_user_on_new_connection(engine: &PooledEngine) -> Result<String, BoxError> {
        // bb8 cannot discard a pooled connection on request: open one with the pool's manager
        // (the same connector and credential), outside the pool, and drop it.
        let client = engine.pool().dedicated_connection().await?;
        select_current_user(&client).await
    }

    fn status(engine: &PooledEngine) -> EngineStatus {
        engine.status()
    }

    fn debug(engine: &PooledEngine) -> String {
        format!("{engine:?}")
    }

    fn auth(engine: &PooledEngine) -> Auth {
        engine.auth().clone()
    }

    async fn dispose(engine: &PooledEngine) {
        engine.dispose().await;
    }

    async fn migration(settings: Settings) -> Result<Migration, BoxError> {
        Ok(Migration {
            engine: MigrationEngine::from_settings(settings).await?,
            migrations: migrations!["../migrations/bb8/V1__conformance_items.sql"]?,
        })
    }

    async fn migrate(migration: &Migration) -> Result<usize, BoxError> {
        Ok(migration
            .engine
            .run_migrations(&migration.migrations)
            .await?
            .applied
            .len())
    }

    fn migration_status(migration: &Migration) -> EngineStatus {
        migration.engine.status()
    }

    async fn dispose_migration(migration: &Migration) {
        migration.engine.dispose().await;
    }
}

cloud_pg_auth_conformance::conformance_tests!(Bb8);

/// Password method through the emulator: pooled `current_user`, migrations once, counters,
/// dispose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke() {
    let emulator =
        cloud_pg_auth_conformance::scenarios::emulator(std::time::Duration::from_secs(3600)).await;
    let settings = Method::Password
        .settings_in_new_database(&emulator, "smoke_bb8")
        .await
        .unwrap();
    let role = emulator.password_role().to_string();

    let migration = Bb8::migration(settings.clone()).await.unwrap();
    assert_eq!(Bb8::migrate(&migration).await.unwrap(), 1);
    assert_eq!(Bb8::migrate(&migration).await.unwrap(), 0);
    assert_eq!(Bb8::migration_status(&migration).connections_opened, 2);
    Bb8::dispose_migration(&migration).await;

    let engine = Bb8::pooled(settings, EngineOptions::default())
        .await
        .unwrap();
    assert_eq!(Bb8::current_user(&engine).await.unwrap(), role);
    assert_eq!(Bb8::current_user(&engine).await.unwrap(), role);
    assert_eq!(
        Bb8::current_user_on_new_connection(&engine).await.unwrap(),
        role
    );
    assert_eq!(
        Bb8::current_user_on_new_connection(&engine).await.unwrap(),
        role
    );
    let status = Bb8::status(&engine);
    assert_eq!(
        (status.connections_opened, status.auth_retries),
        (3, 0),
        "{status:?}"
    );
    assert_eq!(status.auth.method, "password");
    assert_eq!(status.auth.fetch_count, 1);
    Bb8::dispose(&engine).await;
    let error = Bb8::current_user(&engine).await.unwrap_err();
    assert!(error.to_string().contains("disposed"), "{error}");
    assert!(!Bb8::auth(&engine).refresher_running());
    emulator.stop().await.unwrap();
}
