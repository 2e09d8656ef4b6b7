#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod auth;
pub mod aws;
pub mod azure;
mod cache;
pub mod clock;
#[cfg(feature = "tokio-postgres")]
mod connect;
pub mod engine;
pub mod env;
mod error;
pub mod gcp;
#[cfg(any(feature = "azure", feature = "gcp"))]
mod http;
mod input;
pub mod login;
pub mod metrics;
#[cfg(feature = "tokio-postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-postgres")))]
pub mod migrate;
pub mod net;
mod secret;
pub mod settings;
mod source;
mod status;
#[cfg(test)]
mod test_spans;
#[cfg(any(test, feature = "test-util"))]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;
pub mod tls;
mod token;

pub use auth::{Auth, AuthOptions, source_from_settings};
pub use cache::{CacheOptions, RefreshPolicy, RefreshTask, TokenCache};
#[cfg(feature = "tokio-postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-postgres")))]
pub use connect::{PgConnector, RawConnection};
pub use env::Env;
pub use error::{BoxError, ConfigError, Error, TokenError, TokenErrorKind};
pub use secret::Secret;
pub use settings::{AuthMethod, RootCerts, Settings, SslMode, TargetSessionAttrs};
pub use source::{CallbackSource, SourceInfo, StaticPassword, TokenSource};
pub use status::{AuthStatus, EngineStatus, Health, PoolSettings, PoolStatus};
pub use token::{AccessToken, TokenDetails, UsernameSource};

#[cfg(feature = "tokio-postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-postgres")))]
pub use tokio_postgres;
