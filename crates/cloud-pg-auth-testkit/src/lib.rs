#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod aws;
pub mod azure;
mod control;
pub mod emulator;
mod error;
mod front;
pub mod gcp;
pub mod http;
mod identity;
pub mod pg_tls;
pub mod postgres;
mod state;
pub mod tls;
mod util;

pub use azure::{Cloud, IdentityKind, MintOptions};
pub use emulator::{Emulator, EmulatorOptions};
pub use error::Error;
pub use state::{EndpointCounts, FaultState, Faults, Stats};
pub use util::{PATIENCE, poll_until};
