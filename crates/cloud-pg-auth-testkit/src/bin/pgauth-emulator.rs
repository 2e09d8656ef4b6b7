//! `pgauth-emulator`: runs the emulator and prints `export NAME='value'` lines, then
//! `# ready`, and keeps running until SIGINT/SIGTERM or until stdin closes.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use cloud_pg_auth_testkit::{Cloud, Emulator, EmulatorOptions, Faults};
use tokio::io::AsyncReadExt as _;
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "\
usage: pgauth-emulator [options]

Starts a local emulator of Azure managed identity / Entra and AWS RDS IAM token checks in
front of a real PostgreSQL server, prints `export NAME='value'` lines and `# ready`, and
runs until SIGINT/SIGTERM or until stdin closes; then removes everything it created.

options:
  --cloud public|usgov|china   audience and authority names to imitate (default public)
  --token-lifetime SECS        lifetime of issued Entra tokens (default 3600)
  --token-leeway SECS          clock leeway when checking Entra tokens (default 0)
  --aws-region REGION          region of the emulated RDS instance (default us-east-1)
  --aws-signing-host HOST      also accept RDS tokens signed for HOST[:PORT] (repeatable)
  --server-name NAME           also name NAME in the front's certificate and accept RDS tokens
                               signed for it: reach it with PGHOST=NAME PGHOSTADDR=127.0.0.1
                               (repeatable)
  --pg-port PORT               port of the PostgreSQL front (default: free port)
  --identity-port PORT         port of the managed-identity endpoints (default: free port)
  --entra-port PORT            port of the Entra endpoint (default: free port)
  --control-port PORT          port of the control endpoint (default: free port)
  --latency-ms MS              fault: latency added to identity requests
  --fault-status STATUS        fault: answer token requests with STATUS (400/404/410/429/500/503)
  --fault-count N              fault: for the next N token requests only
  --retry-after SECS           fault: Retry-After sent with 429/503
  --down                       fault: start with the identity listeners closed
  --ignore-stdin               keep running when stdin closes (stop with a signal)
  -h, --help                   this text
";

struct Args {
    opts: EmulatorOptions,
    ignore_stdin: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut opts = EmulatorOptions::default();
    let mut faults = Faults::default();
    let mut ignore_stdin = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> anyhow::Result<String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args.next().with_context(|| format!("{name} needs a value")),
            }
        };
        let num = |v: String| -> anyhow::Result<u64> {
            v.parse()
                .with_context(|| format!("{name}: {v:?} is not a non-negative integer"))
        };
        match name.as_str() {
            "-h" | "--help" => {
                #[allow(clippy::print_stdout)]
                {
                    print!("{USAGE}");
                }
                std::process::exit(0);
            }
            "--cloud" => opts.cloud = value()?.parse::<Cloud>()?,
            "--token-lifetime" => {
                let secs = num(value()?)?;
                if secs == 0 {
                    bail!("--token-lifetime must be positive");
                }
                opts.token_lifetime = Duration::from_secs(secs);
            }
            "--token-leeway" => opts.token_leeway = Duration::from_secs(num(value()?)?),
            "--aws-region" => opts.aws_region = value()?,
            "--aws-signing-host" => opts.extra_aws_signing_hosts.push(value()?),
            "--server-name" => {
                let name = value()?;
                opts.extra_aws_signing_hosts.push(name.clone());
                opts.extra_server_names.push(name);
            }
            "--pg-port" => opts.pg_port = Some(num(value()?)?.try_into()?),
            "--identity-port" => opts.identity_port = Some(num(value()?)?.try_into()?),
            "--entra-port" => opts.entra_port = Some(num(value()?)?.try_into()?),
            "--control-port" => opts.control_port = Some(num(value()?)?.try_into()?),
            "--latency-ms" => faults.latency_ms = Some(num(value()?)?),
            "--fault-status" => faults.status = Some(num(value()?)?.try_into()?),
            "--fault-count" => faults.count = Some(num(value()?)?),
            "--retry-after" => faults.retry_after = Some(num(value()?)?),
            "--down" => faults.down = Some(true),
            "--ignore-stdin" => ignore_stdin = true,
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    opts.faults = faults;
    Ok(Args { opts, ignore_stdin })
}

async fn wait_for_stop(ignore_stdin: bool) -> anyhow::Result<&'static str> {
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let stdin_closed = async {
        if ignore_stdin {
            return std::future::pending::<()>().await;
        }
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 1024];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    Ok(tokio::select! {
        _ = sigint.recv() => "SIGINT",
        _ = sigterm.recv() => "SIGTERM",
        _ = sighup.recv() => "SIGHUP",
        _ = stdin_closed => "stdin closed",
    })
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PGAUTH_EMULATOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = parse_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    let result = runtime.block_on(async move {
        // Signals and stdin are watched from the start: a stop during startup drops the
        // half-started emulator, which removes what it created.
        let mut stop = tokio::spawn(wait_for_stop(args.ignore_stdin));
        let emulator = tokio::select! {
            e = Emulator::start(args.opts) => e.context("start the emulator")?,
            why = &mut stop => {
                let why = why.context("signal task")??;
                tracing::info!("stopped during startup: {why}");
                return Ok(());
            }
        };
        {
            let mut out = std::io::stdout().lock();
            for line in emulator.export_lines() {
                writeln!(out, "{line}")?;
            }
            writeln!(out, "# ready")?;
            out.flush()?;
        }
        let why = stop.await.context("signal task")??;
        tracing::info!("stopping: {why}");
        emulator.stop().await.context("stop the emulator")?;
        Ok::<(), anyhow::Error>(())
    });
    // A pending read on stdin would otherwise keep the runtime from shutting down.
    runtime.shutdown_timeout(Duration::from_millis(200));
    result
}
