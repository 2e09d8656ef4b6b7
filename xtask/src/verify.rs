//! `cargo xtask test`: every check a contributor must keep green, in order.

use anyhow::{Context, Result, bail};

use crate::{cargo, lint, msrv, package, run, tools};

pub(crate) fn test() -> Result<()> {
    lint::lint_repo()?;
    tools::ensure_postgres()?;
    run(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    let metadata = cargo_metadata()?;
    msrv::check_msrv(&metadata)?;
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
        cargo().args([
            "check",
            "--quiet",
            "-p",
            "cloud-pg-auth",
            "--no-default-features",
        ]),
    )?;
    tools::check_dependency_policy()?;
    run(
        "cargo doc (every crate, all features, rustdoc warnings denied)",
        cargo()
            .args(["doc", "--workspace", "--all-features", "--no-deps"])
            // Broken intra-doc links are warnings; docs.rs shows them as dead text.
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    run(
        "cargo test (unit, integration and doc tests)",
        cargo().args(["test", "--workspace", "--all-features"]),
    )?;
    package::check_packages(&metadata)?;
    eprintln!("xtask: all checks passed");
    Ok(())
}

/// `cargo metadata` of the whole locked tree, every feature on, every platform.
pub(crate) fn cargo_metadata() -> Result<serde_json::Value> {
    let output = cargo()
        .args(["metadata", "--format-version", "1", "--all-features"])
        .output()
        .context("could not run cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout)
        .context("cargo metadata printed something other than JSON")
}

/// The packages of `cargo metadata`, and whether each is a workspace member.
pub(crate) fn packages(metadata: &serde_json::Value) -> Result<Vec<(&serde_json::Value, bool)>> {
    let members: Vec<&str> = metadata["workspace_members"]
        .as_array()
        .context("cargo metadata has no workspace_members")?
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    Ok(metadata["packages"]
        .as_array()
        .context("cargo metadata has no packages")?
        .iter()
        .map(|p| (p, members.contains(&p["id"].as_str().unwrap_or_default())))
        .collect())
}
