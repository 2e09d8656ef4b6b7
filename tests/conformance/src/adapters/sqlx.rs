//! `cloud-pg-auth-sqlx` seen through the [`Adapter`](crate::Adapter) trait, once per sqlx
//! version: the crate root (sqlx 0.9) as `sqlx`, its `v0_8` module as `sqlx-0.8`. The impl is
//! written once, as a macro over the version's module, as the crate writes its engines once.

/// The adapter over one version module of `cloud-pg-auth-sqlx`.
macro_rules! sqlx_adapter {
    ($(#[$doc:meta])* $module:ident, $adapter:ident, $name:literal, $($version:ident)::+) => {
        $(#[$doc])*
        pub(super) mod $module {
            use std::path::Path;
            use std::sync::Arc;

            use crate::adapters::{build_migration, build_pooled, shared_engine_methods};
            use crate::{Adapter, EngineOptions};
            use async_trait::async_trait;
            use cloud_pg_auth::{BoxError, EngineStatus, Settings, TokenSource};
            use $($version)::+::sqlx::migrate::Migrator;
            use $($version)::+::{
                Connection, MigrationEngine, MigrationReport, Pool, PooledEngine, sqlx,
            };

            $(#[$doc])*
            #[derive(Debug)]
            pub struct $adapter;

            /// A migration engine and the conformance migrations it runs.
            #[derive(Debug)]
            pub struct Migration {
                engine: MigrationEngine,
                migrator: Migrator,
            }


            async fn select_current_user(connection: &mut Connection) -> Result<String, BoxError> {
                Ok(sqlx::query_scalar("SELECT current_user::text")
                    .fetch_one(&mut **connection)
                    .await?)
            }

            #[async_trait]
            impl Adapter for $adapter {
                const NAME: &'static str = $name;
                type Pooled = PooledEngine;
                type Pool = Pool;
                type Migration = Migration;
                type Held = Connection;

                async fn pooled(
                    settings: Settings,
                    options: EngineOptions,
                ) -> Result<PooledEngine, BoxError> {
                    Ok(build_pooled!(PooledEngine, settings, options)?)
                }

                async fn current_user(engine: &PooledEngine) -> Result<String, BoxError> {
                    let mut connection = engine.get().await?;
                    select_current_user(&mut connection).await
                }

                async fn show(engine: &PooledEngine, name: &str) -> Result<String, BoxError> {
                    let mut connection = engine.get().await?;
                    Ok(sqlx::query_scalar("SELECT current_setting($1)")
                        .bind(name)
                        .fetch_one(&mut *connection)
                        .await?)
                }

                async fn current_user_on_new_connection(
                    engine: &PooledEngine,
                ) -> Result<String, BoxError> {
                    // No idle connection left, so the checkout opens one; closed instead of
                    // returned.
                    while let Some(idle) = engine.pool().try_acquire() {
                        idle.close().await?;
                    }
                    let mut connection = engine.get().await?;
                    let user = select_current_user(&mut connection).await;
                    connection.close().await?;
                    user
                }

                async fn hold(engine: &PooledEngine) -> Result<Connection, BoxError> {
                    Ok(engine.get().await?)
                }

                async fn select_one(held: &mut Connection) -> Result<(), BoxError> {
                    // sqlx's statement cache: prepared on the first call.
                    sqlx::query("SELECT 1").execute(&mut **held).await?;
                    Ok(())
                }

                fn pool(engine: &PooledEngine) -> Pool {
                    engine.pool().clone()
                }

                async fn current_user_through_pool(pool: &Pool) -> Result<String, BoxError> {
                    let mut connection = pool.acquire().await?;
                    Ok(sqlx::query_scalar("SELECT current_user::text")
                        .fetch_one(&mut *connection)
                        .await?)
                }

                shared_engine_methods!();

                async fn dispose(engine: &PooledEngine) {
                    engine.dispose().await;
                }

                async fn migration_with_source(
                    settings: Settings,
                    token_source: Option<Arc<dyn TokenSource>>,
                ) -> Result<Migration, BoxError> {
                    let engine = build_migration!(MigrationEngine, settings, token_source)?;
                    // The same migration files for both versions (same format, same table).
                    let migrator = Migrator::new(Path::new(concat!(
                        env!("CARGO_MANIFEST_DIR"),
                        "/migrations/sqlx"
                    )))
                    .await?;
                    Ok(Migration { engine, migrator })
                }

                async fn migrate(migration: &Migration) -> Result<MigrationReport, BoxError> {
                    Ok(migration
                        .engine
                        .run_migrations(&migration.migrator)
                        .await?)
                }

                fn migration_status(migration: &Migration) -> EngineStatus {
                    migration.engine.status()
                }

                async fn dispose_migration(migration: &Migration) {
                    migration.engine.dispose().await;
                }
            }
        }
    };
}

sqlx_adapter!(
    /// The `cloud-pg-auth-sqlx` adapter over sqlx 0.9 (the crate root).
    v0_9, Sqlx, "sqlx", cloud_pg_auth_sqlx
);
sqlx_adapter!(
    /// The `cloud-pg-auth-sqlx` adapter over sqlx 0.8 (`cloud_pg_auth_sqlx::v0_8`).
    v0_8, Sqlx08, "sqlx-0.8", cloud_pg_auth_sqlx::v0_8
);
