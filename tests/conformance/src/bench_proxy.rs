//! The bench's `pgauth proxy` phase: PostgreSQL's own pgbench, once straight to the
//! emulator's front (TLS, a token as the password) and once through the real `pgauth proxy`
//! binary, in the same run against the same emulator, taking turns. Two ratios, proxy ÷
//! direct: `pgbench -S` throughput (goal ≥ 0.9) and connection-open time (`pgbench -C`'s
//! average connection time). Figures only; nothing here asserts them.
//!
//! The proxy runs as the binary people run (built here with `cargo build --release`, a
//! no-op when up to date), so the figures include its process, runtime and logging.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cloud_pg_auth_testkit::Emulator;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// The proxy figures, flattened into `bench.json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProxyFigures {
    /// `pgbench -S` tps through the proxy ÷ direct (goal ≥ 0.9).
    pub proxy_pgbench_select_ratio: Option<f64>,
    /// Average connection-open time through the proxy ÷ direct.
    pub proxy_open_ratio: Option<f64>,
    /// `pgbench -S` tps direct (mean of the rounds).
    pub proxy_pgbench_select_tps_direct: Option<f64>,
    /// `pgbench -S` tps through the proxy (mean of the rounds).
    pub proxy_pgbench_select_tps_proxy: Option<f64>,
    /// `pgbench -C` average connection time direct, ms.
    pub proxy_open_ms_direct: Option<f64>,
    /// `pgbench -C` average connection time through the proxy, ms.
    pub proxy_open_ms_proxy: Option<f64>,
    /// How the figures were taken.
    pub proxy_bench: Option<String>,
    /// What could not be measured.
    pub proxy_errors: Vec<String>,
}

struct Plan {
    clients: u32,
    threads: u32,
    seconds: u32,
    rounds: u32,
}

const DATABASE: &str = "bench_proxy";

/// Runs the phase; `say` prints progress.
pub async fn measure(emulator: &Emulator, quick: bool, say: &dyn Fn(String)) -> ProxyFigures {
    let mut figures = ProxyFigures::default();
    if let Err(e) = run(emulator, quick, say, &mut figures).await {
        figures.proxy_errors.push(e);
    }
    let show = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    say(format!(
        "proxy ÷ direct: pgbench -S tps {} ({} / {}), connection open {} ({} ms / {} ms){}",
        show(figures.proxy_pgbench_select_ratio),
        show(figures.proxy_pgbench_select_tps_proxy),
        show(figures.proxy_pgbench_select_tps_direct),
        show(figures.proxy_open_ratio),
        show(figures.proxy_open_ms_proxy),
        show(figures.proxy_open_ms_direct),
        if figures.proxy_errors.is_empty() {
            String::new()
        } else {
            format!("; not measured: {}", figures.proxy_errors.join("; "))
        }
    ));
    emulator.reset().await;
    figures
}

async fn run(
    emulator: &Emulator,
    quick: bool,
    say: &dyn Fn(String),
    figures: &mut ProxyFigures,
) -> Result<(), String> {
    emulator.reset().await;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as u32;
    let plan = if quick {
        Plan {
            clients: 8,
            threads: cores.clamp(1, 4),
            seconds: 3,
            rounds: 1,
        }
    } else {
        Plan {
            clients: 8,
            threads: cores.clamp(1, 4),
            seconds: 15,
            rounds: 3,
        }
    };
    let bin_dir = cloud_pg_auth_testkit::postgres::find_bin_dir().map_err(|e| e.to_string())?;
    let pgbench = bin_dir.join("pgbench");
    let pgauth = pgauth_binary().await?;
    let role = emulator.azure_role().to_string();
    let admin = emulator
        .postgres()
        .admin_client()
        .await
        .map_err(|e| e.to_string())?;
    // Two statements, two calls: one simple query holding both would run them in one
    // transaction block, where CREATE DATABASE is refused.
    for statement in [
        format!("DROP DATABASE IF EXISTS {DATABASE}"),
        format!("CREATE DATABASE {DATABASE} OWNER \"{role}\""),
    ] {
        admin
            .batch_execute(&statement)
            .await
            .map_err(|e| format!("{statement}: {}", cloud_pg_auth::engine::chain_text(&e)))?;
    }

    let mut base: Vec<(String, String)> = emulator.env();
    base.retain(|(k, _)| k != "PGDATABASE");
    base.push(("PGAUTH_METHOD".into(), "azure".into()));
    base.push(("PGDATABASE".into(), DATABASE.into()));
    base.push(("PATH".into(), std::env::var("PATH").unwrap_or_default()));
    // The direct side: the same token the proxy would fetch, handed to libpq as a password.
    let token = output(&pgauth, &["-q", "token"], &base).await?;
    let token = token.trim().to_string();
    let direct: Vec<(String, String)> = vec![
        ("PGHOST".into(), emulator.pg_host().to_string()),
        ("PGPORT".into(), emulator.pg_port().to_string()),
        ("PGUSER".into(), role.clone()),
        ("PGDATABASE".into(), DATABASE.into()),
        ("PGSSLMODE".into(), "verify-full".into()),
        (
            "PGSSLROOTCERT".into(),
            emulator.ca_path().display().to_string(),
        ),
        ("PGPASSWORD".into(), token),
    ];
    let (mut proxy, port) = start_proxy(&pgauth, &base).await?;
    let through: Vec<(String, String)> = vec![
        ("PGHOST".into(), "127.0.0.1".into()),
        ("PGPORT".into(), port.to_string()),
        ("PGUSER".into(), role.clone()),
        ("PGDATABASE".into(), DATABASE.into()),
        ("PGSSLMODE".into(), "disable".into()),
    ];
    let result = async {
        output(&pgbench, &["-i", "-s", "1", "-q"], &direct).await?;
        let (c, j, t) = (
            plan.clients.to_string(),
            plan.threads.to_string(),
            plan.seconds.to_string(),
        );
        let select = ["-S", "-n", "-c", &c, "-j", &j, "-T", &t];
        let open = ["-S", "-n", "-C", "-c", "1", "-T", &t];
        say(format!(
            "proxy: pgbench -S -c {c} -j {j} -T {t} and pgbench -S -C -c 1 -T {t}, direct and through pgauth proxy, {} round(s)",
            plan.rounds
        ));
        let (mut tps_d, mut tps_p, mut open_d, mut open_p) = (0.0, 0.0, 0.0, 0.0);
        for _ in 0..plan.rounds {
            tps_d += tps(&output(&pgbench, &select, &direct).await?)?;
            tps_p += tps(&output(&pgbench, &select, &through).await?)?;
            open_d += connection_ms(&output(&pgbench, &open, &direct).await?)?;
            open_p += connection_ms(&output(&pgbench, &open, &through).await?)?;
        }
        let n = f64::from(plan.rounds);
        let (tps_d, tps_p, open_d, open_p) = (tps_d / n, tps_p / n, open_d / n, open_p / n);
        figures.proxy_pgbench_select_tps_direct = Some(round(tps_d, 1));
        figures.proxy_pgbench_select_tps_proxy = Some(round(tps_p, 1));
        figures.proxy_open_ms_direct = Some(round(open_d, 3));
        figures.proxy_open_ms_proxy = Some(round(open_p, 3));
        figures.proxy_pgbench_select_ratio = (tps_d > 0.0).then(|| round(tps_p / tps_d, 3));
        figures.proxy_open_ratio = (open_d > 0.0).then(|| round(open_p / open_d, 3));
        figures.proxy_bench = Some(format!(
            "pgbench -S -c {c} -j {j} -T {t} (tps) and pgbench -S -C -c 1 -T {t} (average connection time), azure token, scale 1, {} round(s) taking turns; direct = libpq to the emulator's front with verify-full, proxy = libpq plaintext on loopback to pgauth proxy, which opens the front with verify-full",
            plan.rounds
        ));
        Ok::<(), String>(())
    }
    .await;
    let _ = proxy.start_kill();
    let _ = proxy.wait().await;
    result
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

/// `tps = 1234.5 (without initial connection time)`.
fn tps(text: &str) -> Result<f64, String> {
    text.lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no tps in pgbench's output: {text}"))
}

/// `average connection time = 1.234 ms` (pgbench 14 and later, with -C).
fn connection_ms(text: &str) -> Result<f64, String> {
    text.lines()
        .find_map(|l| l.strip_prefix("average connection time = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no average connection time in pgbench's output: {text}"))
}

/// Runs `program args` with exactly `vars`; its standard output, or an error with its
/// standard error.
async fn output(
    program: &Path,
    args: &[&str],
    vars: &[(String, String)],
) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("{}: {e}", program.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {}: {}",
            program.display(),
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts `pgauth proxy` on a free loopback port and reads the port from its first line.
async fn start_proxy(pgauth: &Path, vars: &[(String, String)]) -> Result<(Child, u16), String> {
    let mut child = Command::new(pgauth)
        .args([
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--max-connections",
            "200",
        ])
        .env_clear()
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        // One info line per connection is the proxy's normal log; pgbench -C opens many.
        .env("PGAUTH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{}: {e}", pgauth.display()))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    let port = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(rest) = line.strip_prefix("pgauth: proxy listening on 127.0.0.1:") {
                return rest
                    .split(':')
                    .next()
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or(format!("unexpected line: {line}"));
            }
        }
        Err("pgauth proxy ended before listening".to_string())
    })
    .await
    .map_err(|_| "pgauth proxy did not start within 60 s".to_string())??;
    // Keep draining its standard error so the proxy never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, port))
}

/// The `pgauth` binary, built (release) next to this one.
async fn pgauth_binary() -> Result<PathBuf, String> {
    let here = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = here.parent().ok_or("no directory for the current binary")?;
    let candidate = dir.join("pgauth");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-q",
            "-p",
            "cloud-pg-auth-cli",
            "--bin",
            "pgauth",
        ])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .status()
        .await
        .map_err(|e| format!("cargo build pgauth: {e}"))?;
    if !status.success() {
        return Err("cargo build --release -p cloud-pg-auth-cli failed".into());
    }
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(format!("no pgauth binary at {}", candidate.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbench_output_is_read() {
        let out = "number of transactions actually processed: 100/100\nlatency average = 0.5 ms\naverage connection time = 1.234 ms\ntps = 1234.5 (without initial connection time)\n";
        assert_eq!(tps(out), Ok(1234.5));
        assert_eq!(connection_ms(out), Ok(1.234));
        assert!(tps("nothing").is_err());
        assert!(connection_ms("tps = 1").is_err());
    }
}
