//! The adapters (sqlx twice: 0.9 and 0.8) behind the [`Adapter`](crate::Adapter) trait, for
//! the tests, the demo and the bench.

mod bb8;
mod deadpool;
mod diesel_async;
mod sqlx;

pub use bb8::Bb8;
pub use deadpool::Deadpool;
pub use diesel_async::DieselAsync;
pub use sqlx::v0_8::Sqlx08;
pub use sqlx::v0_9::Sqlx;

/// A pooled engine builder with the scenario's [`EngineOptions`](crate::EngineOptions)
/// applied through the builder methods every adapter shares, then built.
macro_rules! build_pooled {
    ($engine:ty, $settings:expr, $options:expr) => {{
        let options: $crate::EngineOptions = $options;
        let mut builder = <$engine>::builder($settings)
            .max_size(options.max_size)
            .max_lifetime(options.max_lifetime)
            .connection_timeout(options.connection_timeout)
            .dispose_timeout(options.dispose_timeout)
            .auth_options(options.auth);
        if let Some(source) = options.token_source {
            builder = builder.token_source(source);
        }
        builder.build().await
    }};
}
pub(crate) use build_pooled;

/// The `Adapter` methods every adapter answers with the same engine method, now that the four
/// engines share one surface (`status`, `auth`, `is_disposed`, and `Debug`). Expanded inside
/// each `impl Adapter`; `dispose` stays written out, since `#[async_trait]` must see it.
macro_rules! shared_engine_methods {
    () => {
        fn status(engine: &Self::Pooled) -> cloud_pg_auth::EngineStatus {
            engine.status()
        }

        fn debug(engine: &Self::Pooled) -> String {
            format!("{engine:?}")
        }

        fn auth(engine: &Self::Pooled) -> cloud_pg_auth::Auth {
            engine.auth().clone()
        }

        fn is_disposed(engine: &Self::Pooled) -> bool {
            engine.is_disposed()
        }
    };
}
pub(crate) use shared_engine_methods;

/// A migration engine builder given the scenario's token source, if any, then built.
macro_rules! build_migration {
    ($engine:ty, $settings:expr, $source:expr) => {{
        let mut builder = <$engine>::builder($settings);
        if let Some(source) = $source {
            builder = builder.token_source(source);
        }
        builder.build().await
    }};
}
pub(crate) use build_migration;

/// A server setting over a tokio-postgres client (the deadpool and bb8 adapters).
async fn show(
    client: &cloud_pg_auth::tokio_postgres::Client,
    name: &str,
) -> Result<String, cloud_pg_auth::BoxError> {
    Ok(client
        .query_one("SELECT current_setting($1)", &[&name])
        .await?
        .get(0))
}

/// `SELECT current_user` over a tokio-postgres client (the deadpool and bb8 adapters).
async fn select_current_user(
    client: &cloud_pg_auth::tokio_postgres::Client,
) -> Result<String, cloud_pg_auth::BoxError> {
    Ok(client
        .query_one("SELECT current_user::text", &[])
        .await?
        .get(0))
}
