//! `cloud-pg-auth-diesel-async` seen through the [`Adapter`](crate::Adapter) trait.

use std::sync::Arc;

use crate::{Adapter, EngineOptions};
use async_trait::async_trait;
use cloud_pg_auth::{Auth, BoxError, EngineStatus, Settings, TokenSource};
use cloud_pg_auth_diesel_async::diesel::sql_types::{Integer, Text};
use cloud_pg_auth_diesel_async::diesel_async::RunQueryDsl;
use cloud_pg_auth_diesel_async::diesel_migrations::{self, EmbeddedMigrations, embed_migrations};
use cloud_pg_auth_diesel_async::{
    Connection, MigrationEngine, PooledEngine, PooledEngineBuilder, diesel,
};

pub(crate) const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/diesel-async");

/// The `cloud-pg-auth-diesel-async` adapter.
#[derive(Debug)]
pub struct DieselAsync;

fn with_options(builder: PooledEngineBuilder, options: EngineOptions) -> PooledEngineBuilder {
    builder
        .max_size(options.max_size)
        .auth_options(options.auth)
        .connection_timeout(options.connection_timeout)
}

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
    type Migration = MigrationEngine;
    type Held = Connection;

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

    async fn migration(settings: Settings) -> Result<MigrationEngine, BoxError> {
        Ok(MigrationEngine::from_settings(settings).await?)
    }

    async fn migrate(engine: &MigrationEngine) -> Result<usize, BoxError> {
        Ok(engine.run_migrations(MIGRATIONS).await?.len())
    }

    fn migration_status(engine: &MigrationEngine) -> EngineStatus {
        engine.status()
    }

    async fn dispose_migration(engine: &MigrationEngine) {
        engine.dispose().await;
    }
}
