//! Project automation, the rust-analyzer way: `cargo xtask <command>`.
#![allow(clippy::print_stderr, clippy::print_stdout)]
//!
//! - `cargo xtask test`: everything a contributor must keep green (format, MSRV declarations,
//!   lints, dependency policy, documentation, all tests, packaging). `.ci/run` runs exactly this.
//! - `cargo xtask demo`: every adapter × every login method against the local emulator;
//!   rows in `target/xtask/demo.json`.
//! - `cargo xtask bench [--quick]`: figures per adapter and for a Python peer (the pattern
//!   Python projects ship), in `target/xtask/bench.json`.
//! - `cargo xtask lint-repo`: the repository checks `test` runs first (no ignored tests,
//!   module docs, paths named in the docs, unused dependencies); see `lint`.

mod lint;
mod msrv;
mod package;
mod runs;
mod tools;
mod verify;

use std::env;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => verify::test(),
        Some("lint-repo") => {
            runs::no_arguments("lint-repo", &args[1..]).and_then(|()| lint::lint_repo())
        }
        Some("docsrs") => runs::docsrs(&args[1..]),
        Some("demo") => runs::demo(&args[1..]),
        Some("bench") => runs::bench(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            usage();
            Ok(())
        }
        Some(other) => {
            usage();
            Err(anyhow::anyhow!("unknown command {other:?}"))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn usage() {
    eprintln!(
        "usage: cargo xtask <command>\n\n\
         commands:\n  \
         test            format check, MSRV declarations, clippy -D warnings, dependency policy (cargo-deny),\n                  \
         rustdoc -D warnings, all unit/integration/doc tests, cargo package of the published crates\n  \
         demo            every adapter x every login method against the local emulator\n                  \
         (rows in target/xtask/demo.json; exits non-zero if a row failed)\n  \
         lint-repo       the repository checks test runs first: no #[ignore]/#[should_panic], a //! line\n                  \
         atop every module, every path named in ARCHITECTURE.md/CONTRIBUTING.md exists, no unused dependency\n  \
         docsrs          the documentation as docs.rs builds it (nightly, --cfg docsrs, all features)\n  \
         bench [--quick] figures per adapter and for a Python peer, same emulator, same run\n                  \
         (target/xtask/bench.json; --quick: reduced sizes, under 2 minutes on 2 cores;\n                  \
         makes a Python virtual environment in target/xtask/peer-venv from PyPI)\n"
    );
}

pub(crate) fn root() -> PathBuf {
    // `cargo run` sets the variable for the process too: with a target directory shared by
    // two checkouts, the binary cargo runs may have been linked in the other one, so the
    // compile-time path is only the fallback.
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

pub(crate) fn cargo() -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

pub(crate) fn run(step: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {step}");
    let started = Instant::now();
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{step} failed ({status})");
    }
    // Per-step times show what each check costs on CI's 2 cores.
    eprintln!(
        "xtask: {step}: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
