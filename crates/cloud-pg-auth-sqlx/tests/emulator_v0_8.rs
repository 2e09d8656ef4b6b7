//! The engines over sqlx 0.8 (`v0_8`) through the local emulator. The cases are shared with
//! `emulator.rs`.
#![cfg(feature = "sqlx-0-8")]

use cloud_pg_auth_sqlx::v0_8 as adapter;

#[path = "emulator/cases.rs"]
mod cases;
#[path = "emulator/options.rs"]
mod options;
