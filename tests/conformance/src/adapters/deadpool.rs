//! `cloud-pg-auth-deadpool` seen through the [`Adapter`](crate::Adapter) trait.

use std::sync::Arc;

use super::{build_migration, build_pooled, select_current_user, shared_engine_methods, show};
use crate::{Adapter, EngineOptions};
use async_trait::async_trait;
use cloud_pg_auth::{BoxError, EngineStatus, Settings, TokenSource};
use cloud_pg_auth_deadpool::deadpool::managed::Object;
use cloud_pg_auth_deadpool::{
    MigrationEngine, MigrationReport, Migrations, Pool, PooledEngine, migrations,
};

/// The `cloud-pg-auth-deadpool` adapter.
#[derive(Debug)]
pub struct Deadpool;

/// A migration engine and the conformance migrations it runs.
#[derive(Debug)]
pub struct Migration {
    engine: MigrationEngine,
    migrations: Migrations,
}

#[async_trait]
impl Adapter for Deadpool {
    const NAME: &'static str = "deadpool";
    type Pooled = PooledEngine;
    type Pool = Pool;
    type Migration = Migration;
    type Held = cloud_pg_auth_deadpool::Connection;

    async fn pooled(settings: Settings, options: EngineOptions) -> Result<PooledEngine, BoxError> {
        Ok(build_pooled!(PooledEngine, settings, options)?)
    }

    async fn current_user(engine: &PooledEngine) -> Result<String, BoxError> {
        let client = engine.get().await?;
        select_current_user(&client).await
    }

    async fn show(engine: &PooledEngine, name: &str) -> Result<String, BoxError> {
        let client = engine.get().await?;
        show(&client, name).await
    }

    async fn current_user_on_new_connection(engine: &PooledEngine) -> Result<String, BoxError> {
        // No idle connection left, so the checkout opens one; detached instead of returned.
        engine.pool().retain(|_, _| false);
        let client = engine.get().await?;
        let user = select_current_user(&client).await;
        drop(Object::take(client));
        user
    }

    async fn hold(engine: &PooledEngine) -> Result<Self::Held, BoxError> {
        Ok(engine.get().await?)
    }

    async fn select_one(held: &mut Self::Held) -> Result<(), BoxError> {
        // deadpool-postgres's statement cache, like sqlx's: prepared once per connection.
        let statement = held.prepare_cached("SELECT 1").await?;
        held.query_one(&statement, &[]).await?;
        Ok(())
    }

    fn pool(engine: &PooledEngine) -> Pool {
        engine.pool().clone()
    }

    async fn current_user_through_pool(pool: &Pool) -> Result<String, BoxError> {
        let client = pool.get().await?;
        select_current_user(&client).await
    }

    shared_engine_methods!();

    async fn dispose(engine: &PooledEngine) {
        engine.dispose().await;
    }

    async fn migration_with_source(
        settings: Settings,
        token_source: Option<Arc<dyn TokenSource>>,
    ) -> Result<Migration, BoxError> {
        Ok(Migration {
            engine: build_migration!(MigrationEngine, settings, token_source)?,
            migrations: migrations!["../../migrations/tokio-postgres/V1__conformance_items.sql"]?,
        })
    }

    async fn migrate(migration: &Migration) -> Result<MigrationReport, BoxError> {
        Ok(migration
            .engine
            .run_migrations(&migration.migrations)
            .await?)
    }

    fn migration_status(migration: &Migration) -> EngineStatus {
        migration.engine.status()
    }

    async fn dispose_migration(migration: &Migration) {
        migration.engine.dispose().await;
    }
}
