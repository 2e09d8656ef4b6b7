//! `pgauth`, the command-line tool of cloud-pg-auth: print a token, run psql with one,
//! print libpq exports, diagnose a login step by step, and print the SQL that creates a
//! login role. It reads the same settings as the library (see the workspace README).
//!
//! The commands live here, behind [`run`], so that tests run them in-process with an
//! environment of their choosing; `main.rs` only wires the process to it.
//!
//! Only `pgauth token` prints a token to standard output, and `pgauth env` prints one as
//! `PGPASSWORD` with a warning; everything else (progress, errors, the doctor's report)
//! shows claims and names, never the token.

pub mod args;
pub mod doctor;
pub mod redact;
pub mod session;
pub mod sql;
pub mod tlsprobe;

use std::io::Write;
use std::process::Command as Process;
use std::time::SystemTime;

use cloud_pg_auth::{Env, Error, chain_text, rfc3339};
use serde_json::json;

use crate::args::{Command, Invocation, Topic};
use crate::session::Session;

/// What the process should do once a command has run.
#[derive(Debug)]
#[must_use]
pub enum Outcome {
    /// Exit with this status.
    Exit(u8),
    /// Replace the process with this one (`pgauth psql`); its status becomes ours.
    Exec(Process),
}

/// Exit status of a failed command or doctor step.
pub const FAILURE: u8 = 1;
/// Exit status of a command line that cannot be run.
pub const USAGE: u8 = 2;

/// Runs the command line `args` (without the program name) with the settings in `env`,
/// writing results to `out` and progress, warnings and errors to `err`.
pub async fn run(args: &[String], env: &Env, out: &mut dyn Write, err: &mut dyn Write) -> Outcome {
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
                }
            );
            return Outcome::Exit(USAGE);
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
            Outcome::Exit(0)
        }
        Command::Version => {
            let _ = writeln!(out, "pgauth {}", env!("CARGO_PKG_VERSION"));
            Outcome::Exit(0)
        }
        Command::CreateRole(request) => match sql::create_role(&request) {
            Ok(text) => {
                let _ = out.write_all(text.as_bytes());
                Outcome::Exit(0)
            }
            Err(message) => {
                let _ = writeln!(err, "pgauth: {message}");
                Outcome::Exit(USAGE)
            }
        },
        Command::Doctor { json } => {
            let report = doctor::run(env, out, json).await;
            Outcome::Exit(if report.ok { 0 } else { FAILURE })
        }
        Command::Token { json } => {
            let session = match open(env, &mut progress).await {
                Ok(s) => s,
                Err(e) => return fail(err, &e),
            };
            let result = token(&session, json, out);
            session.auth.dispose().await;
            match result {
                Ok(()) => Outcome::Exit(0),
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
                    Outcome::Exit(0)
                }
                Err(e) => fail(err, &e),
            }
        }
        Command::Psql { args } => {
            let session = match open(env, &mut progress).await {
                Ok(s) => s,
                Err(e) => return fail(err, &e),
            };
            let command = psql_command(&session, &args);
            session.auth.dispose().await;
            match command {
                Ok(command) => Outcome::Exec(command),
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
        session.settings.host.as_deref().unwrap_or_default(),
        session.settings.port,
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
    let (username, source) = match &session.settings.user {
        Some(user) => (Some(user.clone()), Some("settings")),
        None => (
            details.username.clone(),
            details.username_source.map(|s| s.as_str()),
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
pub fn psql_command(session: &Session, args: &[String]) -> Result<Process, Error> {
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

fn fail(err: &mut dyn Write, error: &Error) -> Outcome {
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
    Outcome::Exit(FAILURE)
}

/// Quotes `value` for a POSIX shell: single quotes, with `'` written as `'\''`.
#[must_use]
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}
