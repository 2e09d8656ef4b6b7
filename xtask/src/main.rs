//! Project automation, the rust-analyzer way: `cargo xtask <command>`.
#![allow(clippy::print_stderr, clippy::print_stdout)]
//!
//! - `cargo xtask test`: everything a contributor must keep green (format, lints, all tests,
//!   dependency hygiene). `.ci/run` runs exactly this.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
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

fn usage() {
    eprintln!(
        "usage: cargo xtask <command>\n\n\
         commands:\n  \
         test    format check, clippy -D warnings, all unit/integration/doc tests, dependency checks\n"
    );
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn run(step: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: {step}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{step} failed ({status})");
    }
    Ok(())
}

fn test() -> Result<()> {
    ensure_postgres()?;
    run("cargo fmt --check", cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(
        "cargo clippy (all targets, all features, -D warnings)",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    run(
        "cargo check cloud-pg-auth without default features",
        cargo().args(["check", "--quiet", "-p", "cloud-pg-auth", "--no-default-features"]),
    )?;
    check_dependency_hygiene()?;
    run(
        "cargo test (unit, integration and doc tests)",
        cargo().args(["test", "--workspace", "--all-features"]),
    )?;
    eprintln!("xtask: all checks passed");
    Ok(())
}

/// No OpenSSL, native-tls or libpq, and one rustls crypto provider.
fn check_dependency_hygiene() -> Result<()> {
    eprintln!("xtask: dependency hygiene (no openssl, native-tls, pq-sys or ring)");
    let output = cargo()
        .args(["tree", "--workspace", "--all-features", "--edges", "normal,build", "--prefix", "none"])
        .output()
        .context("could not run cargo tree")?;
    if !output.status.success() {
        bail!("cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let tree = String::from_utf8_lossy(&output.stdout);
    let banned: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| matches!(*name, "openssl" | "openssl-sys" | "native-tls" | "pq-sys" | "ring"))
        .collect();
    if !banned.is_empty() {
        bail!(
            "banned crates in the dependency tree: {banned:?}; run `cargo tree -i <name> --all-features` to see who pulls them"
        );
    }
    Ok(())
}

/// The tests start real PostgreSQL servers. Find the binaries, or install them on a fresh
/// Debian machine.
fn ensure_postgres() -> Result<()> {
    if find_initdb().is_some() {
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !is_root || Command::new("apt-get").arg("--version").output().is_err() {
        bail!(
            "PostgreSQL server binaries (initdb, postgres) not found; install PostgreSQL 15 or later (Debian: apt-get install postgresql) or put its bin directory on PATH"
        );
    }
    eprintln!("xtask: installing PostgreSQL from Debian's packages");
    run("apt-get update", Command::new("apt-get").args(["update", "-qq"]))?;
    run(
        "apt-get install postgresql",
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", "postgresql"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    if find_initdb().is_none() {
        bail!("PostgreSQL was installed but initdb is still not found");
    }
    Ok(())
}

fn find_initdb() -> Option<PathBuf> {
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if dir.join("initdb").is_file() {
            return Some(dir.join("initdb"));
        }
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/initdb"))
        .filter(|p| p.is_file())
        .collect();
    candidates.sort();
    candidates.pop().or_else(|| {
        env::var_os("PATH").and_then(|paths| {
            env::split_paths(&paths)
                .map(|p| p.join("initdb"))
                .find(|p| p.is_file())
        })
    })
}
