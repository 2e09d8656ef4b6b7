//! `pgauth-conformance`: the programs behind `cargo xtask demo` and `cargo xtask bench`.
//!
//! - `demo --out PATH`: every adapter × every method against one emulator; a table, the rows
//!   as JSON in PATH, a non-zero exit if any row failed.
//! - `bench [--quick] --out PATH [--python PYTHON] [--peer-script PATH]`: figures per adapter
//!   and for the Python peer, as JSON in PATH and as a table.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use cloud_pg_auth::BoxError;
use cloud_pg_auth_conformance::adapters;
use cloud_pg_auth_conformance::bench::{self, AdapterFigures, Opens, Peer, Sizes};
use cloud_pg_auth_conformance::demo::{self, DemoRow};
use cloud_pg_auth_conformance::latency::{self, LatencySizes};
use cloud_pg_auth_conformance::{Adapter, Method};
use cloud_pg_auth_testkit::{Emulator, EmulatorOptions};

const USAGE: &str = "\
usage: pgauth-conformance demo --out PATH
       pgauth-conformance bench [--quick] --out PATH [--python PYTHON] [--peer-script PATH]

demo    every adapter x every login method against one local emulator; prints a table,
        writes the rows as JSON to PATH, exits non-zero if any row failed
bench   figures per adapter (token requests of a cold herd, churn over token lifetimes,
        connect overhead, slow identity endpoint, outage) and for the Python peer;
        --quick reduces the sizes (recorded in the output)
";

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// `demo::run_row`'s future is not `Send` (its step callback is a plain `&dyn Fn`), so demo
/// rows run concurrently on this task rather than as spawned tasks.
type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// What the commands need of one adapter, as function pointers, so the adapter list is data.
struct Entry {
    name: &'static str,
    demo_row: fn(Arc<Emulator>, Method) -> LocalFuture<DemoRow>,
    fallback_row: fn(Arc<Emulator>) -> LocalFuture<DemoRow>,
    bench: for<'a> fn(&'a Emulator, &'a Sizes) -> BoxFuture<'a, AdapterFigures>,
    opens: for<'a> fn(&'a Emulator, usize, usize) -> BoxFuture<'a, Result<Opens, BoxError>>,
    latency: latency::Start,
}

fn entry<A: Adapter>() -> Entry {
    fn demo_row<A: Adapter>(emulator: Arc<Emulator>, method: Method) -> LocalFuture<DemoRow> {
        Box::pin(async move { demo::run_row::<A>(&emulator, method, &say).await })
    }
    fn fallback_row<A: Adapter>(emulator: Arc<Emulator>) -> LocalFuture<DemoRow> {
        Box::pin(async move { demo::run_fallback_row::<A>(&emulator, &say).await })
    }
    fn run_bench<'a, A: Adapter>(
        emulator: &'a Emulator,
        sizes: &'a Sizes,
    ) -> BoxFuture<'a, AdapterFigures> {
        Box::pin(bench::run_adapter::<A>(emulator, sizes, &say))
    }
    fn opens<A: Adapter>(
        emulator: &Emulator,
        n: usize,
        concurrency: usize,
    ) -> BoxFuture<'_, Result<Opens, BoxError>> {
        Box::pin(bench::opens::<A>(emulator, n, concurrency))
    }
    Entry {
        name: A::NAME,
        demo_row: demo_row::<A>,
        fallback_row: fallback_row::<A>,
        bench: run_bench::<A>,
        opens: opens::<A>,
        latency: latency::start::<A>,
    }
}

/// Every adapter, in report order. The one place that names them: an adapter coming or
/// going, or their module moving, is a change to this line.
macro_rules! all_adapters {
    () => {
        vec![
            entry::<adapters::Deadpool>(),
            entry::<adapters::Bb8>(),
            entry::<adapters::DieselAsync>(),
            entry::<adapters::Sqlx>(),
            entry::<adapters::Sqlx08>(),
        ]
    };
}

/// The adapter the Rust side of the Python comparison uses.
const REFERENCE_ADAPTER: &str = "deadpool";

/// A progress line, flushed at once so it shows while the step runs.
fn say(line: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => run_demo(&args[1..]).await,
        Some("bench") => run_bench(&args[1..]).await,
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            Ok(true)
        }
        _ => Err(anyhow::anyhow!("expected a command\n\n{USAGE}")),
    };
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(error) => {
            eprintln!("pgauth-conformance: error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// `--name value` options and `--flag` switches, nothing positional.
struct Options {
    pairs: Vec<(String, Option<String>)>,
}

impl Options {
    fn parse(args: &[String], flags: &[&str], valued: &[&str]) -> Result<Self> {
        let mut pairs = Vec::new();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (arg.as_str(), None),
            };
            if flags.contains(&name) && inline.is_none() {
                pairs.push((name.to_string(), None));
            } else if valued.contains(&name) {
                let value = match inline {
                    Some(v) => v,
                    None => args
                        .next()
                        .with_context(|| format!("{name} needs a value"))?
                        .clone(),
                };
                pairs.push((name.to_string(), Some(value)));
            } else {
                bail!("unknown argument {arg:?}\n\n{USAGE}");
            }
        }
        Ok(Self { pairs })
    }

    fn flag(&self, name: &str) -> bool {
        self.pairs.iter().any(|(n, _)| n == name)
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let json = serde_json::to_string_pretty(value)?;
    std::fs::write(path, json + "\n").with_context(|| format!("write {}", path.display()))
}

async fn start_emulator(options: EmulatorOptions) -> Result<Arc<Emulator>> {
    let emulator = Emulator::start(options)
        .await
        .context("start the emulator (PostgreSQL server binaries are needed: cargo xtask demo finds or installs them)")?;
    Ok(Arc::new(emulator))
}

async fn stop_emulator(emulator: Arc<Emulator>) -> Result<()> {
    let emulator =
        Arc::try_unwrap(emulator).map_err(|_| anyhow::anyhow!("the emulator is still in use"))?;
    emulator.stop().await.context("stop the emulator")
}

/// Polls every future on this task until all are done; results in the futures' order.
async fn join_all<T>(futures: Vec<LocalFuture<T>>) -> Vec<T> {
    let mut pending: Vec<Option<LocalFuture<T>>> = futures.into_iter().map(Some).collect();
    let mut done: Vec<Option<T>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (slot, result) in pending.iter_mut().zip(done.iter_mut()) {
            if let Some(future) = slot
                && let std::task::Poll::Ready(value) = future.as_mut().poll(cx)
            {
                *result = Some(value);
                *slot = None;
            }
        }
        if pending.iter().all(Option::is_none) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

async fn run_demo(args: &[String]) -> Result<bool> {
    let options = Options::parse(args, &[], &["--out"])?;
    let out = PathBuf::from(options.value("--out").context("demo needs --out PATH")?);
    let adapters: Vec<Entry> = all_adapters!();
    if adapters.is_empty() {
        bail!("no adapters are registered");
    }
    let started = Instant::now();
    let emulator = start_emulator(EmulatorOptions {
        token_lifetime: demo::TOKEN_LIFETIME,
        ..EmulatorOptions::default()
    })
    .await?;
    say(format!(
        "demo: {} adapters x {} methods, one emulator (tokens live {} s), adapters concurrently per method",
        adapters.len(),
        Method::DEMO.len(),
        demo::TOKEN_LIFETIME.as_secs()
    ));
    let mut rows: Vec<DemoRow> = Vec::new();
    let mut checks = Vec::new();
    for method in Method::DEMO {
        // Methods run one after another, so every token request the emulator sees in this
        // window belongs to this method's rows, whichever adapter made it.
        let before = emulator.stats().token_requests.total;
        let these = join_all(
            adapters
                .iter()
                .map(|a| (a.demo_row)(Arc::clone(&emulator), method))
                .collect(),
        )
        .await;
        let seen = emulator.stats().token_requests.total - before;
        // Every method whose tokens come from the emulator's identity endpoints.
        if Method::ENDPOINT.contains(&method) {
            let reported: u64 = these.iter().map(|r| r.token_requests).sum();
            checks.push((method.name(), reported, seen));
        }
        rows.extend(these);
    }
    // The fallback rows take the identity endpoint down: one adapter at a time, alone.
    for adapter in &adapters {
        rows.push((adapter.fallback_row)(Arc::clone(&emulator)).await);
    }
    let elapsed = started.elapsed();
    stop_emulator(emulator).await?;

    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.adapter.to_string(),
                r.method.to_string(),
                if r.ok { "ok".into() } else { "FAILED".into() },
                r.current_user.clone().unwrap_or_else(|| "-".into()),
                r.connections_opened.to_string(),
                r.token_requests.to_string(),
                r.migrations_applied.to_string(),
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    println!();
    print!(
        "{}",
        bench::table(
            &[
                "adapter",
                "method",
                "ok",
                "current_user",
                "connections",
                "token requests",
                "migrations",
                "error"
            ],
            &table_rows
        )
    );
    println!();
    let mut checks_ok = true;
    for (method, reported, seen) in &checks {
        let verdict = if reported == seen {
            "match"
        } else {
            "MISMATCH"
        };
        checks_ok &= reported == seen;
        println!(
            "cross-check {method}: the rows' credentials report {reported} token fetches, the emulator saw {seen} requests: {verdict}"
        );
    }
    write_json(&out, &rows)?;
    let failed = rows.iter().filter(|r| !r.ok).count();
    println!(
        "{} rows, {} failed, in {:.1} s; rows written to {}",
        rows.len(),
        failed,
        elapsed.as_secs_f64(),
        out.display()
    );
    std::io::stdout().flush()?;
    Ok(failed == 0 && checks_ok)
}

async fn run_bench(args: &[String]) -> Result<bool> {
    let options = Options::parse(args, &["--quick"], &["--out", "--python", "--peer-script"])?;
    let quick = options.flag("--quick");
    let out = PathBuf::from(options.value("--out").context("bench needs --out PATH")?);
    let peer = Peer {
        python: PathBuf::from(options.value("--python").unwrap_or("python3")),
        script: options.value("--peer-script").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../xtask/peer/phoenix_peer.py"),
            PathBuf::from,
        ),
    };
    let sizes = if quick { Sizes::quick() } else { Sizes::full() };
    let adapters: Vec<Entry> = all_adapters!();
    let started = Instant::now();
    let emulator = start_emulator(EmulatorOptions::default()).await?;
    say(format!(
        "bench{}: {} adapters one after another, then the Python peer and {REFERENCE_ADAPTER} on the same workload",
        if quick { " --quick" } else { "" },
        adapters.len()
    ));
    let mut figures = std::collections::BTreeMap::new();
    for adapter in &adapters {
        figures.insert(
            adapter.name.to_string(),
            (adapter.bench)(&emulator, &sizes).await,
        );
    }
    say(format!(
        "python peer: herd of {} on pool_size {}, then {} opens {} at a time",
        sizes.herd_checkouts, sizes.herd_pool_max, sizes.opens, sizes.opens_concurrency
    ));
    let peer_figures = peer.measure(&emulator, &sizes).await;
    let starts: Vec<(&'static str, latency::Start)> =
        adapters.iter().map(|a| (a.name, a.latency)).collect();
    let latency_sizes = if quick {
        LatencySizes::quick()
    } else {
        LatencySizes::full()
    };
    let latency = latency::measure(&emulator, &starts, latency_sizes, &say).await;
    let mut rust_opens = None;
    let mut peer_errors = Vec::new();
    if let Some(reference) = adapters.iter().find(|a| a.name == REFERENCE_ADAPTER) {
        say(format!(
            "{REFERENCE_ADAPTER}: {} opens {} at a time",
            sizes.opens, sizes.opens_concurrency
        ));
        match (reference.opens)(&emulator, sizes.opens, sizes.opens_concurrency).await {
            Ok(o) => rust_opens = Some(o),
            Err(e) => peer_errors.push(format!(
                "rust opens: {}",
                cloud_pg_auth::engine::chain_text(e.as_ref())
            )),
        }
    }
    let proxy = cloud_pg_auth_conformance::bench_proxy::measure(&emulator, quick, &say).await;
    stop_emulator(emulator).await?;
    let mut report = bench::Report {
        machine: bench::Machine::detect(),
        command: format!("cargo xtask bench{}", if quick { " --quick" } else { "" }),
        quick,
        adapters: figures,
        peer_python: peer_figures,
        rust_opens_per_s: rust_opens.as_ref().map(|o| o.opens_per_s),
        rust_opens,
        latency: Some(latency),
        proxy,
        reduced: sizes.reductions(),
        sizes,
        notes: bench::notes().into_iter().chain(latency::notes()).collect(),
        seconds: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    };
    report.peer_python.errors.extend(peer_errors);
    write_json(&out, &report)?;
    println!();
    print!("{}", report.tables());
    if let Some(latency) = &report.latency {
        println!(
            "\nopen time and pooled query round trip, adapters taking turns ({} opens, {} queries each):",
            latency.sizes.open_samples, latency.sizes.query_samples
        );
        print!("{}", latency.table());
    }
    println!(
        "\n{} on {} ({} cores, {}); {:.1} s; figures written to {}",
        report.command,
        report.machine.cpu_model,
        report.machine.cores,
        report.machine.os,
        report.seconds,
        out.display()
    );
    if !report.reduced.is_empty() {
        println!("reduced for --quick: {}", report.reduced.join(", "));
    }
    std::io::stdout().flush()?;
    Ok(true)
}
