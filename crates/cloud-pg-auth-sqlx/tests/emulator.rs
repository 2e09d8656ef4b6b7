//! The engines over sqlx 0.9 (the crate root) through the local emulator. The cases are
//! shared with `emulator_v0_8.rs`.
#![cfg(feature = "sqlx-0-9")]

use cloud_pg_auth_sqlx as adapter;

#[path = "emulator/cases.rs"]
mod cases;
#[path = "emulator/options.rs"]
mod options;
