//! The tools `test` needs on the machine: cargo-deny and the PostgreSQL server binaries.

use std::env;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cargo, root, run};

/// The cargo-deny release xtask installs (outside the clone, see `tools_dir`).
const CARGO_DENY_VERSION: &str = "0.20.2";

/// Where xtask installs its tools: outside the clone, so a fresh clone on a machine that ran
/// the tests before does not build them again. `CLOUD_PG_AUTH_TOOLS` overrides it.
fn tools_dir() -> PathBuf {
    env::var_os("CLOUD_PG_AUTH_TOOLS").map_or_else(
        || PathBuf::from("/var/tmp/cloud-pg-auth-tools"),
        PathBuf::from,
    )
}

/// cargo-deny at `CARGO_DENY_VERSION`, installed from crates.io when missing (3.5 to 5 minutes
/// on 2 cores).
fn ensure_cargo_deny() -> Result<PathBuf> {
    let dir = tools_dir();
    let bin = dir.join("bin").join("cargo-deny");
    let wanted = format!("cargo-deny {CARGO_DENY_VERSION}");
    let installed = Command::new(&bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == wanted);
    if installed {
        return Ok(bin);
    }
    std::fs::create_dir_all(&dir).with_context(|| {
        format!(
            "could not create {}; set CLOUD_PG_AUTH_TOOLS to a writable directory",
            dir.display()
        )
    })?;
    run(
        &format!("cargo install cargo-deny {CARGO_DENY_VERSION} into {}", dir.display()),
        cargo()
            .args(["install", "cargo-deny", "--locked", "--version", CARGO_DENY_VERSION, "--root"])
            .arg(&dir)
            // A private build directory, removed afterwards: not the workspace's target.
            .env_remove("CARGO_TARGET_DIR")
            .current_dir(&dir),
    )
    .context("cargo-deny could not be installed; it needs crates.io (see CONTRIBUTING.md, \"Dependency policy\")")?;
    Ok(bin)
}

/// The policy in `deny.toml`: allowed licenses, and no OpenSSL, native-tls, libpq or `ring`
/// anywhere in the tree (one TLS stack, one crypto provider).
pub(crate) fn check_dependency_policy() -> Result<()> {
    let deny = ensure_cargo_deny()?;
    // Offline: the tree is already fetched by the build; advisories would need the network.
    run(
        "cargo deny check licenses bans (deny.toml)",
        Command::new(deny)
            .current_dir(root())
            .args(["--offline", "--all-features", "check", "licenses", "bans"]),
    )
    .context("the dependency policy in deny.toml does not hold; `cargo tree -i <name> --all-features` shows who pulls a crate")
}

/// The tests start real PostgreSQL servers. Find the binaries, or install them on a fresh
/// Debian machine.
pub(crate) fn ensure_postgres() -> Result<()> {
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
    run(
        "apt-get update",
        Command::new("apt-get").args(["update", "-qq"]),
    )?;
    run(
        "apt-get install postgresql",
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "postgresql",
            ])
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
