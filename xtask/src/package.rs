//! Packaging: every published crate carries its files and builds from its packaged sources.

use std::env;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::verify::packages;
use crate::{cargo, run};

/// Files every published crate must carry.
const PACKAGE_FILES: [&str; 4] = ["README.md", "CHANGELOG.md", "LICENSE-MIT", "LICENSE-APACHE"];

/// Every crate that is not `publish = false` packages (in dependency order, through cargo's
/// temporary local registry) and builds from its packaged sources, as `cargo publish` would.
pub(crate) fn check_packages(metadata: &serde_json::Value) -> Result<()> {
    let mut crates: Vec<(String, String)> = packages(metadata)?
        .into_iter()
        .filter(|(p, member)| {
            // `publish = false` is an empty registry list; absent (null) means crates.io.
            *member && p["publish"].as_array().is_none_or(|r| !r.is_empty())
        })
        .filter_map(|(p, _)| {
            Some((
                p["name"].as_str()?.to_string(),
                p["version"].as_str()?.to_string(),
            ))
        })
        .collect();
    crates.sort();
    for (name, _) in &crates {
        let output = cargo()
            .args(["package", "--list", "--allow-dirty", "--package", name])
            .output()
            .context("could not run cargo package --list")?;
        if !output.status.success() {
            bail!(
                "cargo package --list -p {name} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let listed = String::from_utf8_lossy(&output.stdout);
        let missing: Vec<&str> = PACKAGE_FILES
            .into_iter()
            .filter(|f| !listed.lines().any(|l| l == *f))
            .collect();
        if !missing.is_empty() {
            bail!(
                "the package of {name} lacks {missing:?}; add them to its directory (the licenses as links to the root's LICENSE-MIT and LICENSE-APACHE) and check `include`/`exclude` in its Cargo.toml"
            );
        }
    }
    let target = PathBuf::from(
        metadata["target_directory"]
            .as_str()
            .context("cargo metadata has no target_directory")?,
    )
    .join("package-verify");
    forget_packaged_builds(&target, &crates)?;
    let mut cmd = cargo();
    // --allow-dirty: uncommitted changes are what a contributor is testing.
    cmd.args(["package", "--allow-dirty", "--target-dir"])
        .arg(&target)
        // The packaged crates build outside this workspace, without its [profile.dev]; debug
        // info would only cost time and gigabytes there.
        .env("CARGO_PROFILE_DEV_DEBUG", "false");
    for (name, _) in &crates {
        cmd.args(["--package", name]);
    }
    let names: Vec<&str> = crates.iter().map(|(n, _)| n.as_str()).collect();
    run(
        &format!(
            "cargo package ({}; each built from its packaged sources)",
            names.join(", ")
        ),
        &mut cmd,
    )
}

/// Removes what a previous `cargo package` left that cargo would reuse although the sources
/// changed. A crate that another one depends on is built from cargo's temporary local
/// registry, and cargo treats registry crates as immutable: it neither unpacks a `.crate` of
/// the same version again (`$CARGO_HOME/registry/src/-<hash>/<name>-<version>`) nor rebuilds it
/// (its fingerprint in the target directory), so the dependents would be verified against the
/// old code. The verification builds in a target directory of its own, so removing our
/// crates' fingerprints there costs nothing elsewhere.
fn forget_packaged_builds(target: &Path, crates: &[(String, String)]) -> Result<()> {
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set; set CARGO_HOME")?;
    // Local (file) registries are unpacked under a name with an empty host: "-<hash>".
    let unpacked: Vec<PathBuf> = std::fs::read_dir(cargo_home.join("registry").join("src"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('-'))
        .flat_map(|e| {
            crates
                .iter()
                .map(move |(name, version)| e.path().join(format!("{name}-{version}")))
        })
        .collect();
    let fingerprints = target.join("debug").join(".fingerprint");
    let built: Vec<PathBuf> = std::fs::read_dir(&fingerprints)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            // `<name>-<16 hex digits>`; the name alone would also match `cloud-pg-auth-bb8-…`
            // for `cloud-pg-auth`, which is one of ours too.
            crates.iter().any(|(name, _)| {
                file.strip_prefix(name.as_str())
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|hash| hash.chars().all(|c| c.is_ascii_hexdigit()))
            })
        })
        .map(|e| e.path())
        .collect();
    for dir in unpacked.iter().chain(&built).filter(|d| d.exists()) {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("could not remove {}; remove it by hand", dir.display()))?;
    }
    Ok(())
}
