//! The commands that run the conformance binary (`demo`, `bench`) and `docsrs`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::tools::ensure_postgres;
use crate::{cargo, root, run, usage};

/// Where demo and bench write: `target/xtask` under the workspace root, whatever
/// `CARGO_TARGET_DIR` says, so the files are always found in the same place.
fn xtask_dir() -> Result<PathBuf> {
    let dir = root().join("target").join("xtask");
    std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    Ok(dir)
}

pub(crate) fn no_arguments(command: &str, args: &[String]) -> Result<()> {
    if let Some(extra) = args.first() {
        usage();
        bail!("{command} takes no argument, got {extra:?}");
    }
    Ok(())
}

/// The documentation as docs.rs builds it (`[package.metadata.docs.rs]`: nightly rustdoc, all
/// features, `--cfg docsrs`), warnings denied. Not part of `test`: CI has stable Rust only.
pub(crate) fn docsrs(args: &[String]) -> Result<()> {
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

pub(crate) fn demo(args: &[String]) -> Result<()> {
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

pub(crate) fn bench(args: &[String]) -> Result<()> {
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
