//! The four adapters behind the [`Adapter`](crate::Adapter) trait, for the tests, the demo
//! and the bench.

mod bb8;
mod deadpool;
mod diesel_async;
mod sqlx;

pub use bb8::Bb8;
pub use deadpool::Deadpool;
pub use diesel_async::DieselAsync;
pub use sqlx::Sqlx;
