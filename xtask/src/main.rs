//! Project automation, the rust-analyzer way: `cargo xtask <command>`.
#![allow(clippy::print_stderr, clippy::print_stdout)]
//!
//! - `cargo xtask test`: everything a contributor must keep green (format, lints, all tests,
//!   dependency hygiene). `.ci/run` runs exactly this.
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
         test            format check, clippy -D warnings, all unit/integration/doc tests, dependency checks\n  \
         demo            every adapter x every login method against the local emulator\n                  \
         (rows in target/xtask/demo.json; exits non-zero if a row failed)\n  \
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
    run(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--", "--check"]),
    )?;
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
    check_dependency_hygiene()?;
    run(
        "cargo test (unit, integration and doc tests)",
        cargo().args(["test", "--workspace", "--all-features"]),
    )?;
    eprintln!("xtask: all checks passed");
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

/// No OpenSSL, native-tls or libpq, and one rustls crypto provider.
fn check_dependency_hygiene() -> Result<()> {
    eprintln!("xtask: dependency hygiene (no openssl, native-tls, pq-sys or ring)");
    let output = cargo()
        .args([
            "tree",
            "--workspace",
            "--all-features",
            "--edges",
            "normal,build",
            "--prefix",
            "none",
        ])
        .output()
        .context("could not run cargo tree")?;
    if !output.status.success() {
        bail!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let tree = String::from_utf8_lossy(&output.stdout);
    let banned: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| {
            matches!(
                *name,
                "openssl" | "openssl-sys" | "native-tls" | "pq-sys" | "ring"
            )
        })
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
