//! The conformance scenarios against `cloud-pg-auth-deadpool`.

use std::sync::Arc;

use async_trait::async_trait;
use cloud_pg_auth::{Auth, BoxError, EngineStatus, Settings, TokenSource};
use cloud_pg_auth_conformance::{Adapter, EngineOptions, Method};
use cloud_pg_auth_deadpool::deadpool::managed::Object;
use cloud_pg_auth_deadpool::{
    MigrationEngine, Migrations, PooledEngine, PooledEngineBuilder, migrations,
};

struct Deadpool;

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
    client: &cloud_pg_auth_deadpool::tokio_postgres::Client,
) -> Result<String, BoxError> {
    Ok(client
        .query_one("SELECT current_user::text", &[])
        .await?
        .get(0))
}

#[async_trait]
impl Adapter for Deadpool {
    const NAME: &'static str = "deadpool";
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
        // No idle connection left, so the checkout opens one; detached instead of returned.
        engine.pool().retain(|_, _| false);
        let client = engine.get().await?;
        let user = select_current_user(&client).await;
        drop(Object::take(client));
        user
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
            migrations: migrations!["../migrations/deadpool/V1__conformance_items.sql"]?,
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

cloud_pg_auth_conformance::conformance_tests!(Deadpool);

/// Password method through the emulator: pooled `current_user`, migrations once, counters,
/// dispose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke() {
    let emulator =
        cloud_pg_auth_conformance::scenarios::emulator(std::time::Duration::from_secs(3600)).await;
    let settings = Method::Password
        .settings_in_new_database(&emulator, "smoke_deadpool")
        .await
        .unwrap();
    let role = emulator.password_role().to_string();

    let migration = Deadpool::migration(settings.clone()).await.unwrap();
    assert_eq!(Deadpool::migrate(&migration).await.unwrap(), 1);
    assert_eq!(Deadpool::migrate(&migration).await.unwrap(), 0);
    assert_eq!(Deadpool::migration_status(&migration).connections_opened, 2);
    Deadpool::dispose_migration(&migration).await;

    let engine = Deadpool::pooled(settings, EngineOptions::default())
        .await
        .unwrap();
    assert_eq!(Deadpool::current_user(&engine).await.unwrap(), role);
    assert_eq!(Deadpool::current_user(&engine).await.unwrap(), role);
    assert_eq!(
        Deadpool::current_user_on_new_connection(&engine)
            .await
            .unwrap(),
        role
    );
    assert_eq!(
        Deadpool::current_user_on_new_connection(&engine)
            .await
            .unwrap(),
        role
    );
    let status = Deadpool::status(&engine);
    assert_eq!(
        (status.connections_opened, status.auth_retries),
        (3, 0),
        "{status:?}"
    );
    assert_eq!(status.auth.method, "password");
    assert_eq!(status.auth.fetch_count, 1);
    Deadpool::dispose(&engine).await;
    let error = Deadpool::current_user(&engine).await.unwrap_err();
    assert!(error.to_string().contains("disposed"), "{error}");
    assert!(!Deadpool::auth(&engine).refresher_running());
    emulator.stop().await.unwrap();
}
