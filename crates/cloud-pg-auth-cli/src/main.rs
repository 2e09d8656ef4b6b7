//! `pgauth`: the process side of the tool. Parsing and the commands live in the library
//! (`cloud_pg_auth_cli::run`) so tests can run them in-process.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::process::ExitCode;

use cloud_pg_auth::Env;
use cloud_pg_auth_cli::{ExitAction, FAILURE, USAGE, run, serves};

fn main() -> ExitCode {
    let mut args = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(arg) => args.push(arg),
            Err(arg) => {
                eprintln!("pgauth: the argument {arg:?} is not valid UTF-8");
                return ExitCode::from(USAGE);
            }
        }
    }
    // The proxy is a long-running service: one info line per connection, with the time,
    // many sessions on all cores. The other commands live seconds on one thread.
    let serving = serves(&args);

    // The library's own warnings (a GUID user name, a refused login being retried) are
    // useful to a person at a terminal; PGAUTH_LOG=debug shows more.
    let default_filter = if serving {
        "warn,cloud_pg_auth_cli=info,cloud_pg_auth=info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGAUTH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if serving {
        subscriber.init();
    } else {
        subscriber.without_time().init();
    }

    let runtime = if serving {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    }
    .enable_all()
    .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgauth: cannot start the async runtime: {e}");
            return ExitCode::from(FAILURE);
        }
    };
    let env = Env::from_process();
    let outcome = {
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr();
        runtime.block_on(run(&args, &env, &mut out, &mut err))
    };
    drop(runtime);
    match outcome {
        ExitAction::Exit(code) => ExitCode::from(code),
        ExitAction::Exec(command) => exec(command),
    }
}

#[cfg(unix)]
fn exec(mut command: std::process::Command) -> ExitCode {
    use std::os::unix::process::CommandExt as _;
    // exec replaces this process, so psql owns the terminal and its exit status is ours.
    let error = command.exec();
    eprintln!(
        "pgauth: cannot run psql: {error}; install the PostgreSQL client (Debian/Ubuntu: apt-get install postgresql-client) or put psql on PATH"
    );
    ExitCode::from(127)
}

#[cfg(not(unix))]
fn exec(mut command: std::process::Command) -> ExitCode {
    match command.status() {
        Ok(status) => ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8),
        Err(error) => {
            eprintln!("pgauth: cannot run psql: {error}; put psql on PATH");
            ExitCode::from(127)
        }
    }
}
