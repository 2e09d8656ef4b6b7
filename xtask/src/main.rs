//! Project automation, the rust-analyzer way: `cargo xtask <command>`.
#![allow(clippy::print_stderr, clippy::print_stdout)]
//!
//! - `cargo xtask test`: everything a contributor must keep green (format, MSRV declarations,
//!   lints, dependency policy, documentation, all tests, packaging). `.ci/run` runs exactly this.
//! - `cargo xtask demo`: every adapter × every login method against the local emulator;
//!   rows in `target/xtask/demo.json`.
//! - `cargo xtask bench [--quick]`: figures per adapter and for a Python peer (the pattern
//!   Python projects ship), in `target/xtask/bench.json`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(),
        Some("docsrs") => docsrs(&args[1..]),
        Some("demo") => demo(&args[1..]),
        Some("bench") => bench(&args[1..]),
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
         test            format check, MSRV declarations, clippy -D warnings, dependency policy (cargo-deny),\n                  \
         rustdoc -D warnings, all unit/integration/doc tests, cargo package of the published crates\n  \
         demo            every adapter x every login method against the local emulator\n                  \
         (rows in target/xtask/demo.json; exits non-zero if a row failed)\n  \
         docsrs          the documentation as docs.rs builds it (nightly, --cfg docsrs, all features)\n  \
         bench [--quick] figures per adapter and for a Python peer, same emulator, same run\n                  \
         (target/xtask/bench.json; --quick: reduced sizes, under 2 minutes on 2 cores;\n                  \
         makes a Python virtual environment in target/xtask/peer-venv from PyPI)\n"
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

fn test() -> Result<()> {
    ensure_postgres()?;
    run(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
    let metadata = cargo_metadata()?;
    check_msrv(&metadata)?;
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
    check_dependency_policy()?;
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
    check_packages(&metadata)?;
    eprintln!("xtask: all checks passed");
    Ok(())
}

/// `cargo metadata` of the whole locked tree, every feature on, every platform.
fn cargo_metadata() -> Result<serde_json::Value> {
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
fn packages(metadata: &serde_json::Value) -> Result<Vec<(&serde_json::Value, bool)>> {
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
fn check_msrv(metadata: &serde_json::Value) -> Result<()> {
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

/// Files every published crate must carry.
const PACKAGE_FILES: [&str; 4] = ["README.md", "CHANGELOG.md", "LICENSE-MIT", "LICENSE-APACHE"];

/// Every crate that is not `publish = false` packages (in dependency order, through cargo's
/// temporary local registry) and builds from its packaged sources, as `cargo publish` would.
fn check_packages(metadata: &serde_json::Value) -> Result<()> {
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

/// Where demo and bench write: `target/xtask` under the workspace root, whatever
/// `CARGO_TARGET_DIR` says, so the files are always found in the same place.
fn xtask_dir() -> Result<PathBuf> {
    let dir = root().join("target").join("xtask");
    std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    Ok(dir)
}

fn no_arguments(command: &str, args: &[String]) -> Result<()> {
    if let Some(extra) = args.first() {
        usage();
        bail!("{command} takes no argument, got {extra:?}");
    }
    Ok(())
}

/// The documentation as docs.rs builds it (`[package.metadata.docs.rs]`: nightly rustdoc, all
/// features, `--cfg docsrs`), warnings denied. Not part of `test`: CI has stable Rust only.
fn docsrs(args: &[String]) -> Result<()> {
    no_arguments("docsrs", args)?;
    let nightly = Command::new("rustup")
        .args(["run", "nightly", "rustdoc", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !nightly {
        bail!(
            "docs.rs builds with nightly Rust, and no nightly toolchain was found; install one with `rustup toolchain install nightly --profile minimal`"
        );
    }
    run(
        "cargo +nightly doc (every crate, all features, --cfg docsrs, warnings denied)",
        Command::new("rustup")
            .current_dir(root())
            .args([
                "run",
                "nightly",
                "cargo",
                "doc",
                "--workspace",
                "--all-features",
                "--no-deps",
            ])
            // The stable cargo's path would win over the nightly one.
            .env_remove("CARGO")
            .env("RUSTDOCFLAGS", "--cfg docsrs -D warnings"),
    )
}

fn demo(args: &[String]) -> Result<()> {
    no_arguments("demo", args)?;
    ensure_postgres()?;
    let out = xtask_dir()?.join("demo.json");
    let started = Instant::now();
    // The debug profile: the demo shares its build with the tests.
    run(
        "cargo run pgauth-conformance demo",
        cargo()
            .args([
                "run",
                "-p",
                "cloud-pg-auth-conformance",
                "--bin",
                "pgauth-conformance",
                "--",
                "demo",
                "--out",
            ])
            .arg(&out),
    )?;
    eprintln!(
        "xtask: demo passed in {:.0} s (build included); rows in {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

fn bench(args: &[String]) -> Result<()> {
    let quick = match args {
        [] => false,
        [flag] if flag == "--quick" => true,
        _ => {
            usage();
            bail!("bench takes only --quick, got {args:?}");
        }
    };
    ensure_postgres()?;
    let python = ensure_peer_venv()?;
    let out = xtask_dir()?.join("bench.json");
    let started = Instant::now();
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--release",
        "-p",
        "cloud-pg-auth-conformance",
        "--bin",
        "pgauth-conformance",
        "--",
        "bench",
    ]);
    if quick {
        cmd.arg("--quick");
    }
    cmd.arg("--out")
        .arg(&out)
        .arg("--python")
        .arg(&python)
        .arg("--peer-script")
        .arg(root().join("xtask").join("peer").join("phoenix_peer.py"));
    run("cargo run --release pgauth-conformance bench", &mut cmd)?;
    eprintln!(
        "xtask: bench finished in {:.0} s (build included); figures in {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

/// The Python peer's packages, installed from PyPI into a private virtual environment.
const PEER_PACKAGES: &[&str] = &[
    "sqlalchemy",
    "asyncpg",
    "azure-identity",
    "aiohttp",
    "greenlet",
];

/// Makes `target/xtask/peer-venv` with the peer's packages unless it is already complete;
/// returns its interpreter. A stamp written after a successful install marks it complete,
/// so an interrupted install is redone rather than half-used.
fn ensure_peer_venv() -> Result<PathBuf> {
    let venv = xtask_dir()?.join("peer-venv");
    let python = venv.join("bin").join("python");
    let stamp = venv.join("pgauth-installed.txt");
    let wanted = PEER_PACKAGES.join("\n");
    if python.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(python);
    }
    let created = Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv)
        .status();
    match created {
        Ok(status) if status.success() => {}
        Ok(status) => bail!(
            "python3 -m venv {} failed ({status}); on Debian the venv module is in the python3-venv package",
            venv.display()
        ),
        Err(e) => {
            bail!("could not run python3 ({e}); the bench's Python peer needs Python 3.9 or later")
        }
    }
    run(
        "pip install the Python peer's packages",
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(PEER_PACKAGES),
    )?;
    std::fs::write(&stamp, wanted)
        .with_context(|| format!("could not write {}", stamp.display()))?;
    Ok(python)
}

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
fn check_dependency_policy() -> Result<()> {
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
