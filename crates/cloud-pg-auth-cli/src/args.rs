//! Command-line parsing, by hand: five commands and a dozen flags do not pay for clap's
//! compile time on the machines this workspace is built on.

mod create_role;
mod help;
#[cfg(test)]
mod tests;

use create_role::parse_create_role;
pub(crate) use create_role::{CreateRole, Grant, PrincipalType, RoleMethod};
pub(crate) use help::help;

use std::fmt;

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    /// `pgauth help [TOPIC]`, `--help`.
    Help(Topic),
    /// `pgauth --version`.
    Version,
    /// `pgauth token [--json]`.
    Token {
        /// Print a JSON object instead of the bare token.
        json: bool,
    },
    /// `pgauth psql [-- ARGS...]`.
    Psql {
        /// The arguments handed to psql.
        args: Vec<String>,
    },
    /// `pgauth env`.
    Env,
    /// `pgauth doctor [--json]`.
    Doctor {
        /// Print one JSON object instead of the step lines.
        json: bool,
    },
    /// `pgauth sql create-role ...`.
    CreateRole(CreateRole),
    /// `pgauth proxy ...`.
    Proxy(ProxyArgs),
}

/// `pgauth proxy` arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ProxyArgs {
    /// `--listen ADDR`.
    pub listen: Option<std::net::SocketAddr>,
    /// `--socket DIR`.
    pub socket: Option<std::path::PathBuf>,
    /// `--allow-remote`.
    pub allow_remote: bool,
    /// `--tls-cert FILE`.
    pub tls_cert: Option<std::path::PathBuf>,
    /// `--tls-key FILE`.
    pub tls_key: Option<std::path::PathBuf>,
    /// `--max-connections N`.
    pub max_connections: Option<usize>,
    /// `--connect-timeout SECS`.
    pub connect_timeout: Option<u64>,
    /// `--shutdown-timeout SECS`.
    pub shutdown_timeout: Option<u64>,
    /// `--database NAME`, repeatable.
    pub databases: Vec<String>,
    /// `--print-env`.
    pub print_env: bool,
}

/// Parsed command line: the command and the global flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invocation {
    /// The command.
    pub command: Command,
    /// `-q`/`--quiet`: no progress lines on standard error.
    pub quiet: bool,
}

/// A help page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Topic {
    /// The overview.
    Main,
    /// `pgauth token`.
    Token,
    /// `pgauth psql`.
    Psql,
    /// `pgauth env`.
    Env,
    /// `pgauth doctor`.
    Doctor,
    /// `pgauth sql create-role`.
    Sql,
    /// `pgauth proxy`.
    Proxy,
}

/// A command line that cannot be run: the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsageError {
    /// What is wrong.
    pub message: String,
    /// The help page to point at.
    pub topic: Topic,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for UsageError {}

/// `--flag=value` as the flag and its inline value; any other argument as it is.
fn split_flag(arg: &str) -> (&str, Option<String>) {
    match arg.split_once('=') {
        Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
        _ => (arg, None),
    }
}

/// The value of `flag`: its inline value, else the next argument (`i` moves past it).
fn flag_value(
    args: &[&str],
    i: &mut usize,
    inline: Option<String>,
    topic: Topic,
    flag: &str,
) -> Result<String, UsageError> {
    if let Some(value) = inline {
        return Ok(value);
    }
    *i += 1;
    args.get(*i)
        .map(|v| (*v).to_string())
        .ok_or_else(|| usage(topic, format!("{flag} needs a value")))
}

fn usage(topic: Topic, message: impl Into<String>) -> UsageError {
    UsageError {
        message: message.into(),
        topic,
    }
}

/// Parses the arguments after the program name.
pub(crate) fn parse(args: &[String]) -> Result<Invocation, UsageError> {
    let mut quiet = false;
    let mut rest: Vec<&str> = Vec::new();
    let mut after_dashes: Option<Vec<String>> = None;
    for (i, arg) in args.iter().enumerate() {
        if arg == "--" {
            after_dashes = Some(args[i + 1..].to_vec());
            break;
        }
        match arg.as_str() {
            "-q" | "--quiet" => quiet = true,
            other => rest.push(other),
        }
    }
    let command = parse_command(&rest, after_dashes)?;
    Ok(Invocation { command, quiet })
}

fn parse_command(args: &[&str], after_dashes: Option<Vec<String>>) -> Result<Command, UsageError> {
    let Some((&first, tail)) = args.split_first() else {
        if after_dashes.is_some() {
            return Err(usage(
                Topic::Main,
                "'--' without a command; write pgauth psql -- ARGS to pass arguments to psql",
            ));
        }
        return Ok(Command::Help(Topic::Main));
    };
    let wants_help = tail.iter().any(|a| matches!(*a, "-h" | "--help"));
    let no_dashes = |topic: Topic, cmd: &str| -> Result<(), UsageError> {
        if after_dashes.is_some() {
            return Err(usage(
                topic,
                format!("pgauth {cmd} takes no arguments after '--' (only pgauth psql does)"),
            ));
        }
        Ok(())
    };
    match first {
        "-h" | "--help" => Ok(Command::Help(Topic::Main)),
        "-V" | "--version" | "version" => Ok(Command::Version),
        "help" => match tail {
            [] => Ok(Command::Help(Topic::Main)),
            [topic] => topic_named(topic)
                .map(Command::Help)
                .ok_or_else(|| usage(Topic::Main, format!("no help page {topic:?}"))),
            _ => Err(usage(Topic::Main, "pgauth help takes one command name")),
        },
        "token" => {
            if wants_help {
                return Ok(Command::Help(Topic::Token));
            }
            no_dashes(Topic::Token, "token")?;
            let json = flags(Topic::Token, tail, &["--json"])?.contains(&"--json");
            Ok(Command::Token { json })
        }
        "env" => {
            if wants_help {
                return Ok(Command::Help(Topic::Env));
            }
            no_dashes(Topic::Env, "env")?;
            flags(Topic::Env, tail, &[])?;
            Ok(Command::Env)
        }
        "doctor" => {
            if wants_help {
                return Ok(Command::Help(Topic::Doctor));
            }
            no_dashes(Topic::Doctor, "doctor")?;
            let json = flags(Topic::Doctor, tail, &["--json"])?.contains(&"--json");
            Ok(Command::Doctor { json })
        }
        "psql" => {
            if wants_help {
                return Ok(Command::Help(Topic::Psql));
            }
            if let Some(arg) = tail.first() {
                // Ambiguity between our flags and psql's is resolved by '--', like cargo run.
                return Err(usage(
                    Topic::Psql,
                    format!(
                        "unexpected argument {arg:?}; give psql's arguments after '--', for example: pgauth psql -- {}",
                        tail.join(" ")
                    ),
                ));
            }
            Ok(Command::Psql {
                args: after_dashes.unwrap_or_default(),
            })
        }
        "sql" => {
            let Some((&sub, options)) = tail.split_first() else {
                return Err(usage(
                    Topic::Sql,
                    "pgauth sql needs a subcommand; the one there is: create-role",
                ));
            };
            if matches!(sub, "-h" | "--help") || wants_help {
                return Ok(Command::Help(Topic::Sql));
            }
            if sub != "create-role" {
                return Err(usage(
                    Topic::Sql,
                    format!("unknown sql subcommand {sub:?}; the one there is: create-role"),
                ));
            }
            no_dashes(Topic::Sql, "sql create-role")?;
            parse_create_role(options).map(Command::CreateRole)
        }
        "proxy" => {
            if wants_help {
                return Ok(Command::Help(Topic::Proxy));
            }
            no_dashes(Topic::Proxy, "proxy")?;
            parse_proxy(tail).map(Command::Proxy)
        }
        other => Err(usage(
            Topic::Main,
            format!(
                "unknown command {other:?}; the commands are token, psql, env, doctor, sql and proxy"
            ),
        )),
    }
}

fn topic_named(name: &str) -> Option<Topic> {
    Some(match name {
        "token" => Topic::Token,
        "psql" => Topic::Psql,
        "env" => Topic::Env,
        "doctor" => Topic::Doctor,
        "sql" | "create-role" => Topic::Sql,
        "proxy" => Topic::Proxy,
        _ => return None,
    })
}

/// Checks that `args` are all among `allowed` (boolean flags), returning them.
fn flags<'a>(topic: Topic, args: &[&'a str], allowed: &[&str]) -> Result<Vec<&'a str>, UsageError> {
    for arg in args {
        if !allowed.contains(arg) {
            let expected = if allowed.is_empty() {
                "it takes no options".to_string()
            } else {
                format!("it takes {}", allowed.join(", "))
            };
            return Err(usage(
                topic,
                format!("unexpected argument {arg:?}; {expected}"),
            ));
        }
    }
    Ok(args.to_vec())
}

fn parse_proxy(args: &[&str]) -> Result<ProxyArgs, UsageError> {
    let mut parsed = ProxyArgs::default();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i];
        let (flag, inline) = split_flag(arg);
        match flag {
            "--allow-remote" | "--print-env" if inline.is_none() => {
                if flag == "--allow-remote" {
                    parsed.allow_remote = true;
                } else {
                    parsed.print_env = true;
                }
                i += 1;
                continue;
            }
            "--listen" | "--socket" | "--tls-cert" | "--tls-key" | "--max-connections"
            | "--connect-timeout" | "--shutdown-timeout" | "--database" => {}
            _ => {
                return Err(usage(
                    Topic::Proxy,
                    format!(
                        "unexpected argument {arg:?}; proxy takes --listen, --socket, --allow-remote, --tls-cert, --tls-key, --max-connections, --connect-timeout, --shutdown-timeout, --database and --print-env"
                    ),
                ));
            }
        }
        let value = flag_value(args, &mut i, inline, Topic::Proxy, flag)?;
        let number = |what: &str| -> Result<u64, UsageError> {
            value.parse::<u64>().map_err(|_| {
                usage(
                    Topic::Proxy,
                    format!("{flag} {value:?}: give {what} as a whole number"),
                )
            })
        };
        let twice = |taken: bool| -> Result<(), UsageError> {
            if taken {
                Err(usage(Topic::Proxy, format!("{flag} is given twice")))
            } else {
                Ok(())
            }
        };
        match flag {
            "--listen" => {
                twice(parsed.listen.is_some())?;
                parsed.listen =
                    Some(crate::proxy::parse_listen(&value).map_err(|m| usage(Topic::Proxy, m))?);
            }
            "--socket" => {
                twice(parsed.socket.is_some())?;
                parsed.socket = Some(value.into());
            }
            "--tls-cert" => {
                twice(parsed.tls_cert.is_some())?;
                parsed.tls_cert = Some(value.into());
            }
            "--tls-key" => {
                twice(parsed.tls_key.is_some())?;
                parsed.tls_key = Some(value.into());
            }
            "--max-connections" => {
                twice(parsed.max_connections.is_some())?;
                let n = number("a count of sessions")?;
                if n == 0 {
                    return Err(usage(Topic::Proxy, "--max-connections must be at least 1"));
                }
                parsed.max_connections = Some(usize::try_from(n).unwrap_or(usize::MAX));
            }
            "--connect-timeout" => {
                twice(parsed.connect_timeout.is_some())?;
                let n = number("seconds")?;
                if n == 0 {
                    return Err(usage(
                        Topic::Proxy,
                        "--connect-timeout must be at least 1 second",
                    ));
                }
                parsed.connect_timeout = Some(n);
            }
            "--shutdown-timeout" => {
                twice(parsed.shutdown_timeout.is_some())?;
                parsed.shutdown_timeout = Some(number("seconds")?);
            }
            _ => {
                if value.is_empty() {
                    return Err(usage(Topic::Proxy, "--database needs a name"));
                }
                parsed.databases.push(value);
            }
        }
        i += 1;
    }
    if parsed.socket.is_some() && parsed.allow_remote {
        return Err(usage(
            Topic::Proxy,
            "--allow-remote is for a tcp address; a Unix socket is local already",
        ));
    }
    Ok(parsed)
}
