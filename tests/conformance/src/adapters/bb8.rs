//! `cloud-pg-auth-bb8` seen through the [`Adapter`](crate::Adapter) trait.

use std::sync::Arc;

use super::{build_migration, build_pooled, select_current_user, shared_engine_methods, show};
use crate::{Adapter, EngineOptions};
use async_trait::async_trait;
use cloud_pg_auth::{BoxError, EngineStatus, Settings, TokenSource};
use cloud_pg_auth_bb8::{
    MigrationEngine, MigrationReport, Migrations, Pool, PooledEngine, migrations,
};

/// The `cloud-pg-auth-bb8` adapter.
#[derive(Debug)]
pub struct Bb8;

/// A migration engine and the conformance migrations it runs.
#[derive(Debug)]
pub struct Migration {
    engine: MigrationEngine,
    migrations: Migrations,
}

/// A held connection and its `SELECT 1`, prepared on first use (bb8's client has no
/// statement cache).
#[derive(Debug)]
pub struct Held {
    connection: cloud_pg_auth_bb8::Connection<'static>,
    statement: Option<cloud_pg_auth::tokio_postgres::Statement>,
}

#[async_trait]
impl Adapter for Bb8 {
    const NAME: &'static str = "bb8";
    const POOL_HIDES_LOGIN_ERRORS: bool = true;
    type Pooled = PooledEngine;
    type Pool = Pool;
    type Migration = Migration;
    type Held = Held;

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
        // bb8 cannot discard a pooled connection on request: open one with the pool's manager
        // (the same connector and credential), outside the pool, and drop it.
        let client = engine.pool().dedicated_connection().await?;
        select_current_user(&client).await
    }

    async fn hold(engine: &PooledEngine) -> Result<Held, BoxError> {
        Ok(Held {
            connection: engine.get_owned().await?,
            statement: None,
        })
    }

    async fn select_one(held: &mut Held) -> Result<(), BoxError> {
        let statement = match &held.statement {
            Some(statement) => statement.clone(),
            None => held
                .statement
                .insert(held.connection.prepare("SELECT 1").await?)
                .clone(),
        };
        held.connection.query_one(&statement, &[]).await?;
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
