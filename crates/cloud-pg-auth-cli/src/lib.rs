//! `pgauth`, the command-line tool of cloud-pg-auth: print a token, run psql with one,
//! print libpq exports, diagnose a login step by step, print the SQL that creates a login
//! role, and run a local PostgreSQL proxy that logs in with fresh tokens (`pgauth proxy`).
//! It reads the same settings as the library (see the workspace README).
//!
//! The commands live here, behind [`run`], so that tests run them in-process with an
//! environment of their choosing; `main.rs` only wires the process to it.
//!
//! Only `pgauth token` prints a token to standard output, and `pgauth env` prints one as
//! `PGPASSWORD` with a warning; everything else (progress, errors, the doctor's report)
//! shows claims and names, never the token.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod args;
mod doctor;
mod proxy;
mod redact;
mod session;
mod sql;
mod tlsprobe;

// The library surface is what `main.rs` and the integration tests need: the commands, the
// proxy as a library (tests run it in-process), and the tables the tests check output against.
pub use doctor::{MAX_ROLES as DOCTOR_MAX_ROLES, STEPS as DOCTOR_STEPS};
pub use proxy::{Listen, Proxy, ProxyError, ProxyHandle, ProxyOptions, ProxyStats};
pub use session::LIBPQ_ENV_VARS;

use std::io::Write;
use std::process::Command as Process;
use std::time::{Duration, SystemTime};

use cloud_pg_auth::clock::rfc3339;
use cloud_pg_auth::engine::chain_text;
use cloud_pg_auth::{Env, Error, Secret, Settings};
use serde_json::json;

use crate::args::{Command, Invocation, ProxyArgs, Topic};
use crate::session::Session;

/// What the process should do once a command has run.
#[derive(Debug)]
#[must_use]
pub enum ExitAction {
    /// Exit with this status.
    Exit(u8),
    /// Replace the process with this one (`pgauth psql`); its status becomes ours.
    Exec(Process),
}

/// Exit status of a failed command or doctor step.
pub const FAILURE: u8 = 1;
/// Exit status of a command line that cannot be run.
pub const USAGE: u8 = 2;

/// Whether `args` start the long-running proxy (not `--print-env`): the process then logs
/// with times and serves on every core.
#[must_use]
pub fn serves(args: &[String]) -> bool {
    matches!(
        args::parse(args),
        Ok(Invocation { command: Command::Proxy(ref p), .. }) if !p.print_env
    )
}

/// Runs the command line `args` (without the program name) with the settings in `env`,
/// writing results to `out` and progress, warnings and errors to `err`.
pub async fn run(
    args: &[String],
    env: &Env,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> ExitAction {
    let invocation = match args::parse(args) {
        Ok(i) => i,
        Err(e) => {
            let _ = writeln!(err, "pgauth: {e}");
            let _ = writeln!(
                err,
                "  see: pgauth {}--help",
                match e.topic {
                    Topic::Main => "",
                    Topic::Token => "token ",
                    Topic::Psql => "psql ",
                    Topic::Env => "env ",
                    Topic::Doctor => "doctor ",
                    Topic::Sql => "sql create-role ",
                    Topic::Proxy => "proxy ",
                }
            );
            return ExitAction::Exit(USAGE);
        }
    };
    let Invocation { command, quiet } = invocation;
    let mut progress = |line: &str| {
        if !quiet {
            let _ = writeln!(err, "pgauth: {line}");
        }
    };
    match command {
        Command::Help(topic) => {
            let _ = out.write_all(args::help(topic).as_bytes());
            ExitAction::Exit(0)
        }
        Command::Version => {
            let _ = writeln!(out, "pgauth {}", env!("CARGO_PKG_VERSION"));
            ExitAction::Exit(0)
        }
        Command::CreateRole(request) => match sql::create_role(&request) {
            Ok(text) => {
                let _ = out.write_all(text.as_bytes());
                ExitAction::Exit(0)
            }
            Err(message) => {
                let _ = writeln!(err, "pgauth: {message}");
                ExitAction::Exit(USAGE)
            }
        },
        Command::Doctor { json } => {
            let report = doctor::run(env, out, json).await;
            ExitAction::Exit(if report.ok { 0 } else { FAILURE })
        }
        Command::Token { json } => {
            let session = match open(env, &mut progress).await {
                Ok(s) => s,
                Err(e) => return fail(err, &e),
            };
            let result = token(&session, json, out);
            session.auth.dispose().await;
            match result {
                Ok(()) => ExitAction::Exit(0),
                Err(e) => fail(err, &e),
            }
        }
        Command::Env => {
            let session = match open(env, &mut progress).await {
                Ok(s) => s,
                Err(e) => return fail(err, &e),
            };
            let vars = session::libpq_vars(&session.settings, session.method, &session.token);
            session.auth.dispose().await;
            match vars {
                Ok(vars) => {
                    // A warning even with --quiet: this puts a secret on the screen or in a file.
                    let _ = writeln!(
                        err,
                        "pgauth: warning: the output holds a token in PGPASSWORD, a password{}; do not paste it into logs or tickets",
                        session
                            .token
                            .expires_at()
                            .map(|t| format!(" valid until {}", rfc3339(t)))
                            .unwrap_or_default()
                    );
                    // `eval "$(pgauth env)"` must leave no other libpq variable behind: an
                    // inherited PGSERVICE or PGHOSTADDR would send the token elsewhere.
                    for name in session::libpq_vars_to_unset(&vars) {
                        let _ = writeln!(out, "unset {name}");
                    }
                    for (name, value) in vars {
                        let _ = writeln!(out, "export {name}={}", shell_quote(&value));
                    }
                    ExitAction::Exit(0)
                }
                Err(e) => fail(err, &e),
            }
        }
        Command::Proxy(args) => proxy_command(&args, env, out, err, quiet).await,
        Command::Psql { args } => {
            let session = match open(env, &mut progress).await {
                Ok(s) => s,
                Err(e) => return fail(err, &e),
            };
            let command = psql_command(&session, &args);
            session.auth.dispose().await;
            match command {
                Ok(command) => ExitAction::Exec(command),
                Err(e) => fail(err, &e),
            }
        }
    }
}

async fn open(env: &Env, progress: &mut dyn FnMut(&str)) -> Result<Session, Error> {
    let session = Session::open(env).await?;
    let status = session.auth.status();
    let user = session.user().unwrap_or_else(|_| "?".to_string());
    let expires = session
        .token
        .expires_at()
        .map(|t| {
            format!(
                ", expires {} ({})",
                rfc3339(t),
                session::until(t, SystemTime::now())
            )
        })
        .unwrap_or_default();
    // The source's label holds its endpoint URL, which may carry user:password@.
    progress(&redact::url_passwords(&format!(
        "token from {} for {user} at {}:{}{expires}",
        session.auth.source_info().label(),
        session.settings.get_host().unwrap_or_default(),
        session.settings.get_port(),
    )));
    if status.method == "password" {
        progress("PGAUTH_METHOD resolves to password: the \"token\" is PGPASSWORD itself");
    }
    Ok(session)
}

fn token(session: &Session, json: bool, out: &mut dyn Write) -> Result<(), Error> {
    let secret = session.token.secret().expose();
    if !json {
        let _ = writeln!(out, "{secret}");
        return Ok(());
    }
    let status = session.auth.status();
    let details = session.token.details();
    let (username, source) = match session.settings.get_user() {
        Some(user) => (Some(user), Some("settings")),
        None => (
            details.get_username(),
            details.get_username_source().map(|s| s.as_str()),
        ),
    };
    let value = json!({
        "method": session.method.as_str(),
        "cloud": status.cloud,
        "identity": status.identity,
        "username": username,
        "username_source": source,
        "expires_at": session.token.expires_at().map(rfc3339),
        "token": secret,
    });
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&value).unwrap_or_default()
    );
    Ok(())
}

/// The psql process for `session`: the token and the connection settings in its
/// environment, the user's `args` on its command line. psql is looked up on `PATH`.
fn psql_command(session: &Session, args: &[String]) -> Result<Process, Error> {
    let mut command = Process::new("psql");
    command.args(args);
    // The token goes in the environment: /proc/PID/environ is readable only by the same
    // user, while /proc/PID/cmdline is readable by everyone on the machine.
    let vars = session::libpq_vars(&session.settings, session.method, &session.token)?;
    // Whatever else libpq would read from our own environment (PGSERVICE, PGHOSTADDR,
    // PGSSLCERT...) could redirect the token or weaken TLS; psql gets only what we set.
    for name in session::libpq_vars_to_unset(&vars) {
        command.env_remove(name);
    }
    for (name, value) in vars {
        command.env(name, value);
    }
    Ok(command)
}

/// `pgauth proxy`: serves until SIGINT or SIGTERM; `--print-env` prints and exits.
async fn proxy_command(
    args: &ProxyArgs,
    env: &Env,
    out: &mut dyn Write,
    err: &mut dyn Write,
    quiet: bool,
) -> ExitAction {
    let settings = match Settings::from_env_vars(env) {
        Ok(s) => s,
        Err(e) => return fail(err, &Error::Config(e)),
    };
    let listen = match (&args.socket, args.listen) {
        (Some(dir), listen) => Listen::Unix {
            dir: dir.clone(),
            port: listen.map_or(proxy::DEFAULT_PORT, |a| a.port()),
        },
        (None, Some(addr)) => Listen::Tcp(addr),
        (None, None) => Listen::default(),
    };
    let local_password = env.get(proxy::PASSWORD_VAR).map(Secret::new);
    if args.print_env {
        let (user, databases) = match proxy::served(&settings, &args.databases).await {
            Ok(served) => served,
            Err(e) => return proxy_fail(err, &e),
        };
        let vars = proxy::client_env(&listen, &user, &databases[0], args.tls_cert.is_some());
        // Nothing inherited (PGSERVICE, PGHOSTADDR, PGPASSWORD...) may send the client elsewhere.
        for name in session::libpq_vars_to_unset(&vars) {
            let _ = writeln!(out, "unset {name}");
        }
        for (name, value) in vars {
            let _ = writeln!(out, "export {name}={}", shell_quote(&value));
        }
        if local_password.is_some() {
            let _ = writeln!(
                err,
                "pgauth: the proxy asks clients for {}; give it as PGPASSWORD",
                proxy::PASSWORD_VAR
            );
        }
        return ExitAction::Exit(0);
    }
    let options = ProxyOptions {
        listen: listen.clone(),
        allow_remote: args.allow_remote,
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        local_password,
        max_connections: args.max_connections.unwrap_or(100),
        connect_timeout: args.connect_timeout.map(Duration::from_secs),
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout.unwrap_or(30)),
        databases: args.databases.clone(),
        ..ProxyOptions::default()
    };
    let proxy = match Proxy::bind(&settings, options).await {
        Ok(p) => p,
        Err(e) => return proxy_fail(err, &e),
    };
    let listening = match (&listen, proxy.local_addr()) {
        (Listen::Tcp(_), Some(addr)) => addr.to_string(),
        _ => listen.to_string(),
    };
    if !quiet {
        let _ = writeln!(
            err,
            "pgauth: proxy listening on {listening}: role {} to {} at {} ({}); SIGINT or SIGTERM stops it",
            proxy.user(),
            proxy.databases().join(", "),
            proxy.upstream(),
            proxy.auth_status().method,
        );
        let _ = err.flush();
    }
    proxy.run_until(shutdown_signal()).await;
    ExitAction::Exit(0)
}

fn proxy_fail(err: &mut dyn Write, error: &ProxyError) -> ExitAction {
    match error {
        ProxyError::Core(e) => fail(err, e),
        ProxyError::Options(_) => {
            let _ = writeln!(err, "pgauth: {error}");
            let _ = writeln!(err, "  see: pgauth proxy --help");
            ExitAction::Exit(USAGE)
        }
        other => {
            let _ = writeln!(err, "pgauth: error: {}", chain_text(other));
            ExitAction::Exit(FAILURE)
        }
    }
}

/// SIGINT or SIGTERM, whichever comes first.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
    }
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn fail(err: &mut dyn Write, error: &Error) -> ExitAction {
    let _ = writeln!(
        err,
        "pgauth: error: {}",
        redact::url_passwords(&chain_text(error))
    );
    if let Error::Config(e) = error {
        let _ = writeln!(
            err,
            "  change {} and try again; pgauth doctor checks every step",
            e.setting()
        );
    } else {
        let _ = writeln!(err, "  run pgauth doctor to find which step fails");
    }
    ExitAction::Exit(FAILURE)
}

/// Quotes `value` for a POSIX shell: single quotes, with `'` written as `'\''`.
#[must_use]
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}
