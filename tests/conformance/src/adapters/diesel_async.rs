//! `cloud-pg-auth-diesel-async` seen through the [`Adapter`](crate::Adapter) trait.

use std::sync::Arc;

use super::{build_migration, build_pooled, shared_engine_methods};
use crate::{Adapter, EngineOptions};
use async_trait::async_trait;
use cloud_pg_auth::{BoxError, EngineStatus, Settings, TokenSource};
use cloud_pg_auth_diesel_async::diesel::sql_types::{Integer, Text};
use cloud_pg_auth_diesel_async::diesel_async::RunQueryDsl;
use cloud_pg_auth_diesel_async::diesel_migrations::{self, EmbeddedMigrations, embed_migrations};
use cloud_pg_auth_diesel_async::{
    Connection, MigrationEngine, MigrationReport, Pool, PooledEngine, diesel,
};

pub(crate) const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/diesel-async");

/// The `cloud-pg-auth-diesel-async` adapter.
#[derive(Debug)]
pub struct DieselAsync;

async fn select_current_user(connection: &mut Connection) -> Result<String, BoxError> {
    Ok(
        diesel::select(diesel::dsl::sql::<Text>("current_user::text"))
            .get_result::<String>(connection)
            .await?,
    )
}

#[async_trait]
impl Adapter for DieselAsync {
    const NAME: &'static str = "diesel-async";
    type Pooled = PooledEngine;
    type Pool = Pool;
    type Migration = MigrationEngine;
    type Held = Connection;

    async fn pooled(settings: Settings, options: EngineOptions) -> Result<PooledEngine, BoxError> {
        Ok(build_pooled!(PooledEngine, settings, options)?)
    }

    async fn current_user(engine: &PooledEngine) -> Result<String, BoxError> {
        let mut connection = engine.get().await?;
        select_current_user(&mut connection).await
    }

    async fn show(engine: &PooledEngine, name: &str) -> Result<String, BoxError> {
        let mut connection = engine.get().await?;
        let setting = diesel::dsl::sql::<Text>("current_setting(")
            .bind::<Text, _>(name.to_string())
            .sql(")");
        Ok(diesel::select(setting)
            .get_result::<String>(&mut connection)
            .await?)
    }

    async fn current_user_on_new_connection(engine: &PooledEngine) -> Result<String, BoxError> {
        // No idle connection left, so the checkout opens one; taken out of the pool after.
        engine.pool().retain(|_, _| false);
        let mut connection = engine.get().await?;
        let user = select_current_user(&mut connection).await;
        drop(cloud_pg_auth_diesel_async::deadpool::managed::Object::take(
            connection,
        ));
        user
    }

    async fn hold(engine: &PooledEngine) -> Result<Connection, BoxError> {
        Ok(engine.get().await?)
    }

    async fn select_one(held: &mut Connection) -> Result<(), BoxError> {
        diesel::select(diesel::dsl::sql::<Integer>("1"))
            .get_result::<i32>(held)
            .await?;
        Ok(())
    }

    fn pool(engine: &PooledEngine) -> Pool {
        engine.pool().clone()
    }

    async fn current_user_through_pool(pool: &Pool) -> Result<String, BoxError> {
        let mut connection = pool.get().await?;
        select_current_user(&mut connection).await
    }

    shared_engine_methods!();

    async fn dispose(engine: &PooledEngine) {
        engine.dispose().await;
    }

    async fn migration_with_source(
        settings: Settings,
        token_source: Option<Arc<dyn TokenSource>>,
    ) -> Result<MigrationEngine, BoxError> {
        Ok(build_migration!(MigrationEngine, settings, token_source)?)
    }

    async fn migrate(engine: &MigrationEngine) -> Result<MigrationReport, BoxError> {
        Ok(engine.run_migrations(MIGRATIONS).await?)
    }

    fn migration_status(engine: &MigrationEngine) -> EngineStatus {
        engine.status()
    }

    async fn dispose_migration(engine: &MigrationEngine) {
        engine.dispose().await;
    }
}
