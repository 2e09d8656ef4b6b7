//! The MSRV check: one `rust-version`, inherited by every member, none newer in the tree.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::root;
use crate::verify::packages;

fn name_version(package: &serde_json::Value) -> String {
    format!(
        "{} {}",
        package["name"].as_str().unwrap_or("?"),
        package["version"].as_str().unwrap_or("?")
    )
}

/// `1.94` or `1.94.1` as (major, minor, patch); a missing patch is 0, as in Cargo.
fn parse_rust_version(text: &str) -> Option<(u64, u64, u64)> {
    let mut parts = text.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = match parts.next() {
        Some(p) => p.parse().ok()?,
        None => 0,
    };
    parts.next().is_none().then_some((major, minor, patch))
}

/// The `rust-version` of `[workspace.package]` in the root manifest.
fn workspace_rust_version(manifest: &str) -> Option<String> {
    let mut in_section = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_section = line == "[workspace.package]";
        } else if in_section && let Some(rest) = line.strip_prefix("rust-version") {
            let value = rest.trim_start().strip_prefix('=')?.trim();
            return Some(value.trim_matches('"').to_string());
        }
    }
    None
}

/// The MSRV as far as it can be checked without that toolchain: one `rust-version`, in the
/// workspace manifest, inherited by every member, and no locked package declaring a newer one.
/// What this does not prove is in CONTRIBUTING.md ("MSRV").
pub(crate) fn check_msrv(metadata: &serde_json::Value) -> Result<()> {
    let manifest_path = root().join("Cargo.toml");
    let manifest = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("could not read {}", manifest_path.display()))?;
    let msrv_text = workspace_rust_version(&manifest).context(
        "the workspace Cargo.toml has no rust-version in [workspace.package]; the MSRV is stated there, once",
    )?;
    let msrv = parse_rust_version(&msrv_text).with_context(|| {
        format!("the workspace rust-version {msrv_text:?} is not a version like 1.94 or 1.94.1")
    })?;
    let mut problems = Vec::new();
    for doc in ["README.md", "CONTRIBUTING.md"] {
        let text = std::fs::read_to_string(root().join(doc))
            .with_context(|| format!("could not read {doc}"))?;
        if !text.contains(&format!("Rust {msrv_text}")) {
            problems.push(format!(
                "{doc} does not name the MSRV as \"Rust {msrv_text}\"; update it with the workspace rust-version"
            ));
        }
    }
    let mut newest: Option<((u64, u64, u64), String)> = None;
    let mut undeclared = 0;
    for (package, member) in packages(metadata)? {
        let declared = package["rust_version"].as_str();
        if member {
            let path = PathBuf::from(package["manifest_path"].as_str().unwrap_or_default());
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("could not read {}", path.display()))?;
            let inherits = text.lines().map(str::trim).any(|l| {
                let l: String = l.chars().filter(|c| !c.is_whitespace()).collect();
                l == "rust-version.workspace=true" || l == "rust-version={workspace=true}"
            });
            if !inherits || declared.and_then(parse_rust_version) != Some(msrv) {
                problems.push(format!(
                    "{}: set `rust-version.workspace = true` (the MSRV is stated once, in [workspace.package])",
                    path.display()
                ));
            }
            continue;
        }
        let Some(declared) = declared else {
            undeclared += 1;
            continue;
        };
        let Some(version) = parse_rust_version(declared) else {
            problems.push(format!(
                "{} declares rust-version {declared:?}, which xtask cannot read",
                name_version(package)
            ));
            continue;
        };
        if version > msrv {
            problems.push(format!(
                "{} needs Rust {declared}: raise rust-version in [workspace.package] and the MSRV in CONTRIBUTING.md, or hold it back with `cargo update -p {} --precise <older version>`",
                name_version(package),
                package["name"].as_str().unwrap_or("?")
            ));
        }
        if newest.as_ref().is_none_or(|(v, _)| version > *v) {
            newest = Some((version, format!("{} ({declared})", name_version(package))));
        }
    }
    if !problems.is_empty() {
        bail!(
            "the MSRV (rust-version {msrv_text}) does not hold:\n  {}",
            problems.join("\n  ")
        );
    }
    eprintln!(
        "xtask: MSRV {msrv_text}: every member inherits it; no locked package declares a newer one (newest: {}); {undeclared} packages declare none and are not checked",
        newest.map_or_else(|| "none".to_string(), |(_, n)| n)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{parse_rust_version, workspace_rust_version};

    #[test]
    fn rust_versions() {
        fn check(input: &str, expected: Option<(u64, u64, u64)>) {
            assert_eq!(parse_rust_version(input), expected, "{input:?}");
        }
        check("1.94", Some((1, 94, 0)));
        check("1.94.1", Some((1, 94, 1)));
        check(" 1.88.0 ", Some((1, 88, 0)));
        check("1", None);
        check("1.94.1.2", None);
        check("1.94-nightly", None);
        check("", None);
    }

    #[test]
    fn workspace_rust_version_is_read_from_its_section_only() {
        fn check(manifest: &str, expected: Option<&str>) {
            assert_eq!(
                workspace_rust_version(manifest).as_deref(),
                expected,
                "{manifest:?}"
            );
        }
        check(
            "[workspace.package]\nedition = \"2024\"\nrust-version = \"1.94.1\"\n",
            Some("1.94.1"),
        );
        check(
            "[package]\nrust-version = \"1.80\"\n[workspace.package]\nrust-version = \"1.94\"\n",
            Some("1.94"),
        );
        check("[package]\nrust-version = \"1.80\"\n", None);
        check("[workspace.package]\nversion = \"0.1.0\"\n[lints]\n", None);
    }
}
