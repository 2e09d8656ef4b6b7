//! `cloud-pg-auth-sqlx` seen through the [`Adapter`](crate::Adapter) trait.

use std::path::Path;
use std::sync::Arc;

use crate::{Adapter, EngineOptions};
use async_trait::async_trait;
use cloud_pg_auth::{Auth, BoxError, EngineStatus, Settings, TokenSource};
use cloud_pg_auth_sqlx::sqlx::migrate::Migrator;
use cloud_pg_auth_sqlx::{Connection, MigrationEngine, PooledEngine, PooledEngineBuilder, sqlx};

/// The `cloud-pg-auth-sqlx` adapter.
#[derive(Debug)]
pub struct Sqlx;

/// A migration engine and the conformance migrations it runs.
#[derive(Debug)]
pub struct Migration {
    engine: MigrationEngine,
    migrator: Migrator,
}

fn with_options(builder: PooledEngineBuilder, options: EngineOptions) -> PooledEngineBuilder {
    builder
        .max_size(options.max_size)
        .auth_options(options.auth)
        .connection_timeout(options.connection_timeout)
}

async fn select_current_user(connection: &mut Connection) -> Result<String, BoxError> {
    Ok(sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut **connection)
        .await?)
}

#[async_trait]
impl Adapter for Sqlx {
    const NAME: &'static str = "sqlx";
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
        let mut connection = engine.get().await?;
        select_current_user(&mut connection).await
    }

    async fn current_user_on_new_connection(engine: &PooledEngine) -> Result<String, BoxError> {
        // No idle connection left, so the checkout opens one; closed instead of returned.
        while let Some(idle) = engine.pool().try_acquire() {
            idle.close().await?;
        }
        let mut connection = engine.get().await?;
        let user = select_current_user(&mut connection).await;
        connection.close().await?;
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
        let engine = MigrationEngine::from_settings(settings).await?;
        let migrator = Migrator::new(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/sqlx"
        )))
        .await?;
        Ok(Migration { engine, migrator })
    }

    async fn migrate(migration: &Migration) -> Result<usize, BoxError> {
        Ok(migration
            .engine
            .run_migrations(&migration.migrator)
            .await?
            .len())
    }

    fn migration_status(migration: &Migration) -> EngineStatus {
        migration.engine.status()
    }

    async fn dispose_migration(migration: &Migration) {
        migration.engine.dispose().await;
    }
}
