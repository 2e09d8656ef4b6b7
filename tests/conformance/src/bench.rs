//! `cargo xtask bench`: figures, not assertions. Each adapter is measured against one
//! emulator, one phase at a time (faults and counters are the emulator's, so phases never
//! overlap), and the Python peer (`xtask/peer/phoenix_peer.py`) runs against the same
//! emulator in the same run, so the figures are comparable.
//!
//! Token requests are always read as a difference of the emulator's counter around the
//! phase, so nothing depends on a reset happening at the right moment. Figures that only wall
//! time can give (rates, latencies, behaviour over a token's lifetime) belong here, not in the
//! conformance tests. New phases go in modules of their own (`latency.rs`, `bench_proxy.rs`).

mod figures;
mod machine;
mod peer;
mod phases;
mod report;
mod stats;

pub use figures::*;
pub use machine::{Machine, cpu_model, os_name};
pub use peer::{Peer, PeerFigures, last_json_object};
pub use phases::{opens, run_adapter};
pub use report::{Report, notes, table};
pub use stats::{Sizes, percentile};
