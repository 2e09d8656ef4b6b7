//! Command-line parsing, by hand: five commands and a dozen flags do not pay for clap's
//! compile time on the machines this workspace is built on.

use std::fmt;

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
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
pub struct ProxyArgs {
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
pub struct Invocation {
    /// The command.
    pub command: Command,
    /// `-q`/`--quiet`: no progress lines on standard error.
    pub quiet: bool,
}

/// A help page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
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

/// The cloud an administrator creates a role for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleMethod {
    /// Azure Database for PostgreSQL (`pgaadauth_create_principal*`).
    Azure,
    /// AWS RDS / Aurora (`GRANT rds_iam`).
    Aws,
}

/// The object type given to `pgaadauth_create_principal_with_oid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalType {
    /// A managed identity or an app registration (service principal).
    Service,
    /// A user.
    User,
    /// An Entra group.
    Group,
}

impl PrincipalType {
    /// The name the Azure function takes.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::User => "user",
            Self::Group => "group",
        }
    }
}

/// Privileges granted with the role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// `SELECT` on the tables of schema `public`.
    Read,
    /// `read` plus `INSERT`, `UPDATE`, `DELETE` and sequence use.
    Write,
    /// `write` plus `CREATE` in schema `public` and every privilege on its objects (the
    /// role that runs migrations).
    Owner,
}

/// `pgauth sql create-role` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRole {
    /// `--method`.
    pub method: RoleMethod,
    /// `--name`: the role name.
    pub name: String,
    /// `--object-id`: map the role to this Entra object id (Azure only).
    pub object_id: Option<String>,
    /// `--type` (Azure only, with `--object-id`; default `service`).
    pub principal_type: Option<PrincipalType>,
    /// `--database`: where the grants apply.
    pub database: Option<String>,
    /// `--grant`.
    pub grant: Option<Grant>,
}

/// A command line that cannot be run: the message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError {
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

fn usage(topic: Topic, message: impl Into<String>) -> UsageError {
    UsageError {
        message: message.into(),
        topic,
    }
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Invocation, UsageError> {
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

fn parse_create_role(args: &[&str]) -> Result<CreateRole, UsageError> {
    let mut method = None;
    let mut name = None;
    let mut object_id = None;
    let mut principal_type = None;
    let mut database = None;
    let mut grant = None;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i];
        // Both `--name X` and `--name=X`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg, None),
        };
        let known = [
            "--method",
            "--name",
            "--object-id",
            "--type",
            "--database",
            "--grant",
        ];
        if !known.contains(&flag) {
            return Err(usage(
                Topic::Sql,
                format!(
                    "unexpected argument {arg:?}; create-role takes --method, --name, --object-id, --type, --database and --grant"
                ),
            ));
        }
        let value = match inline {
            Some(v) => v,
            None => {
                i += 1;
                args.get(i)
                    .map(|v| (*v).to_string())
                    .ok_or_else(|| usage(Topic::Sql, format!("{flag} needs a value")))?
            }
        };
        let slot_taken = |taken: bool| -> Result<(), UsageError> {
            if taken {
                Err(usage(Topic::Sql, format!("{flag} is given twice")))
            } else {
                Ok(())
            }
        };
        match flag {
            "--method" => {
                slot_taken(method.is_some())?;
                method = Some(match value.to_ascii_lowercase().as_str() {
                    "azure" | "entra" => RoleMethod::Azure,
                    "aws" | "iam" => RoleMethod::Aws,
                    _ => {
                        return Err(usage(
                            Topic::Sql,
                            format!("--method {value:?}: use azure or aws"),
                        ));
                    }
                });
            }
            "--name" => {
                slot_taken(name.is_some())?;
                name = Some(value);
            }
            "--object-id" => {
                slot_taken(object_id.is_some())?;
                object_id = Some(value);
            }
            "--type" => {
                slot_taken(principal_type.is_some())?;
                principal_type = Some(match value.to_ascii_lowercase().as_str() {
                    "service" => PrincipalType::Service,
                    "user" => PrincipalType::User,
                    "group" => PrincipalType::Group,
                    _ => {
                        return Err(usage(
                            Topic::Sql,
                            format!("--type {value:?}: use service, user or group"),
                        ));
                    }
                });
            }
            "--database" => {
                slot_taken(database.is_some())?;
                database = Some(value);
            }
            _ => {
                slot_taken(grant.is_some())?;
                grant = Some(match value.to_ascii_lowercase().as_str() {
                    "read" => Grant::Read,
                    "write" => Grant::Write,
                    "owner" => Grant::Owner,
                    _ => {
                        return Err(usage(
                            Topic::Sql,
                            format!("--grant {value:?}: use read, write or owner"),
                        ));
                    }
                });
            }
        }
        i += 1;
    }
    let method = method.ok_or_else(|| usage(Topic::Sql, "--method azure|aws is required"))?;
    let name = name.ok_or_else(|| usage(Topic::Sql, "--name NAME is required"))?;
    if method == RoleMethod::Aws && (object_id.is_some() || principal_type.is_some()) {
        return Err(usage(
            Topic::Sql,
            "--object-id and --type are for --method azure; an rds iam role is mapped by its name",
        ));
    }
    if principal_type.is_some() && object_id.is_none() {
        return Err(usage(
            Topic::Sql,
            "--type goes with --object-id; without an object id, azure looks the name up and knows its type",
        ));
    }
    if database.is_some() && grant.is_none() {
        return Err(usage(
            Topic::Sql,
            "--database says where --grant applies; add --grant read, write or owner",
        ));
    }
    Ok(CreateRole {
        method,
        name,
        object_id,
        principal_type,
        database,
        grant,
    })
}

fn parse_proxy(args: &[&str]) -> Result<ProxyArgs, UsageError> {
    let mut parsed = ProxyArgs::default();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i];
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg, None),
        };
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
        let value = match inline {
            Some(v) => v,
            None => {
                i += 1;
                args.get(i)
                    .map(|v| (*v).to_string())
                    .ok_or_else(|| usage(Topic::Proxy, format!("{flag} needs a value")))?
            }
        };
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

/// The text of a help page.
#[must_use]
pub fn help(topic: Topic) -> &'static str {
    match topic {
        Topic::Main => MAIN_HELP,
        Topic::Token => TOKEN_HELP,
        Topic::Psql => PSQL_HELP,
        Topic::Env => ENV_HELP,
        Topic::Doctor => DOCTOR_HELP,
        Topic::Sql => SQL_HELP,
        Topic::Proxy => PROXY_HELP,
    }
}

const MAIN_HELP: &str = "\
pgauth: passwordless PostgreSQL logins with Microsoft Entra tokens (Azure Database for
PostgreSQL) and IAM auth tokens (AWS RDS and Aurora), from the same settings as the
cloud-pg-auth library.

usage: pgauth [-q] <command> [options]

commands:
  token [--json]        print a token for the configured server (the only command that prints one)
  psql [-- ARGS...]     run psql with a fresh token in its environment, never on its command line
  env                   print export lines for libpq tools, PGPASSWORD included
  doctor [--json]       check the set-up step by step and say what to fix
  sql create-role ...   print the SQL an administrator runs to create the login role
  proxy [options]       a local PostgreSQL endpoint that logs in with fresh tokens (psql, pg_dump,
                        GUI clients, other languages); --print-env prints the settings to use it
  help [COMMAND]        this text, or a command's

options:
  -q, --quiet           no progress lines on standard error
  -h, --help            help
  -V, --version         version

settings (environment, as for the library):
  PGAUTH_METHOD         azure, aws, password or auto (auto: *.postgres.database.azure.com -> azure,
                        *.rds.amazonaws.com -> aws)
  PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGSSLMODE PGSSLROOTCERT DATABASE_URL   as in libpq
  PGAUTH_AZURE_CREDENTIAL PGAUTH_AZURE_CLOUD AZURE_CLIENT_ID AZURE_TENANT_ID ...   Azure
  AWS_REGION AWS_PROFILE PGAUTH_AWS_SIGNING_PORT ...                                AWS
  PGAUTH_LOG            log level of the library's messages on standard error (default warn)

examples:
  pgauth doctor
  PGAUTH_METHOD=azure PGHOST=mydb.postgres.database.azure.com pgauth psql -- -c 'select current_user'
  PGPASSWORD=\"$(pgauth -q token)\" pg_dump -Fc app > app.dump
  pgauth sql create-role --method azure --name my-app-identity --database app --grant write

exit status: 0 success, 1 failure (a doctor step or the command failed), 2 bad usage;
pgauth psql exits with psql's status.
See docs/azure.md, docs/aws.md and docs/troubleshooting.md.
";

const TOKEN_HELP: &str = "\
usage: pgauth token [--json]

Prints a token for the resolved method (Azure: a Microsoft Entra access token; AWS: an RDS
IAM auth token signed for PGHOST:PGPORT and PGUSER). This is the only command that prints a
token: treat the output as a password.

options:
  --json   an object with method, cloud, identity, username, username_source, expires_at
           and token

examples:
  PGPASSWORD=\"$(pgauth -q token)\" psql \"host=$PGHOST user=my-app-identity sslmode=verify-full\"
  pgauth token --json | jq '{username, expires_at}'
";

const PSQL_HELP: &str = "\
usage: pgauth psql [-- PSQL-ARGS...]

Runs psql with a fresh token. The token goes into psql's environment (PGPASSWORD), never
on its command line, which other users of the machine can read. Also set for psql: PGHOST,
PGHOSTADDR (when configured), PGPORT, PGUSER (PGUSER, or the name the token implies),
PGDATABASE, PGAPPNAME, PGCONNECT_TIMEOUT, PGSSLROOTCERT (when configured; \"system\" for the
built-in roots) and PGSSLMODE=verify-full unless verify-full is set, or verify-ca with
PGSSLROOTCERT naming a CA file. Every other libpq variable (PGSERVICE, PGSERVICEFILE,
PGOPTIONS, PGSSLCERT, ...) is removed from psql's environment, so nothing inherited sends the
token elsewhere. psql is found on PATH.

examples:
  pgauth psql
  pgauth psql -- -c 'select current_user'
  pgauth psql -- -d otherdb -f migrate.sql
";

const ENV_HELP: &str = "\
usage: pgauth env

Prints export lines for tools that read libpq's variables (psql, pg_dump, pgcli, libpq
drivers): PGHOST, PGHOSTADDR (when configured), PGPORT, PGUSER, PGDATABASE, PGSSLMODE,
PGSSLROOTCERT and PGPASSWORD with a fresh token, and an unset line for every other libpq
variable (PGSERVICE, PGSERVICEFILE, ...), so that none left in the shell sends the token
elsewhere. It warns on standard error, since it prints a secret. The token expires
(Azure: about an hour or more; AWS: 15 minutes); run it again when it does.

Use it in a subshell: with PGPASSWORD set, the library and pgauth itself refuse a token
method (a password and a token at once).

examples:
  ( eval \"$(pgauth env)\" && pg_dump -Fc app > app.dump )
";

const DOCTOR_HELP: &str = "\
usage: pgauth doctor [--json]

Checks the set-up one step at a time, prints a line per step and stops at the first
failure with what to do:
  1 settings       method, host, cloud, which variables were read
  2 credential     the identity the token comes from
  3 token          one token obtained; a summary of its claims (never the token)
  4 audience       Azure: the token's audience is the server's cloud; AWS: it is signed for
                   this host, port, user and region
  5 tls            TLS handshake, the certificate's names and how it was checked
  6 login          a login with the token; the server's words when it refuses
  7 current_user   who the session is
  8 roles          role memberships (rds_iam on AWS) and privileges in the database
Exit status 0 only if every step passed.

options:
  --json   one JSON object: {\"ok\", \"failed_step\", \"steps\": [{\"name\", \"status\", \"summary\", \"details\", \"fix\"}]}

examples:
  pgauth doctor
  PGAUTH_METHOD=aws PGUSER=app_user pgauth doctor --json | jq .failed_step
";

const SQL_HELP: &str = "\
usage: pgauth sql create-role --method azure|aws --name NAME [--object-id ID]
                              [--type service|user|group] [--database DB] [--grant read|write|owner]

Prints the SQL an administrator runs to create the login role; it runs nothing. Names are
quoted, so any name is safe to paste.

  Azure: run as the Microsoft Entra administrator, connected to the database postgres.
         pgaadauth_create_principal(NAME) looks NAME up in the tenant (a managed identity's
         or app's display name, a user's UPN, a group's name); with --object-id,
         pgaadauth_create_principal_with_oid maps NAME to that object id (--type, default
         service: managed identities and app registrations).
  AWS:   CREATE USER NAME and GRANT rds_iam TO NAME. NAME must be letters, digits, - . _ ~
         (an IAM token carries it unencoded).
  --grant read    SELECT on schema public's tables (now and future ones created by the
                  administrator)
  --grant write   read, plus INSERT, UPDATE, DELETE and sequences
  --grant owner   write, plus CREATE in schema public (the role that runs migrations)
  --database DB   the database the grants are for (default: postgres)

examples:
  pgauth sql create-role --method azure --name my-app-identity --grant write --database app
  pgauth sql create-role --method azure --name my-app --object-id 6f1b5c1e-1234-4f00-8c4e-0a1b2c3d4e5f
  pgauth sql create-role --method aws --name app_user --grant read --database app | psql -h admin-host
";

const PROXY_HELP: &str = "\
usage: pgauth proxy [--listen ADDR | --socket DIR] [--max-connections N] [--connect-timeout SECS]
                    [--shutdown-timeout SECS] [--database NAME]... [--tls-cert FILE --tls-key FILE]
                    [--allow-remote] [--print-env]

Accepts PostgreSQL connections on this machine and, for each, logs in to the configured server
(the same settings and methods as the library and the other commands) with a fresh token over
verified TLS, then relays the session both ways. Clients connect without a password: they set
PGHOST, PGPORT, PGUSER and PGDATABASE as --print-env prints. The token never leaves the proxy
except to the server.

Clients may ask only for the role the proxy logs in as (PGUSER, or the token's identity on
Azure) and the configured database (PGDATABASE, or the role's name) plus each --database;
anything else gets a PostgreSQL error (SQLSTATE 28000). Cancels (Ctrl-C in psql,
pg_cancel_backend) work: the proxy forwards a CancelRequest upstream over TLS for keys it
handed out.

options:
  --listen ADDR            IP:PORT or PORT (default 127.0.0.1:5431). 5431 is clear of a local
                           server (5432), further Debian/Ubuntu clusters (5433 upward), Redshift
                           (5439) and PgBouncer (6432)
  --socket DIR             listen on the Unix socket DIR/.s.PGSQL.PORT instead (PORT from
                           --listen, default 5431); clients use PGHOST=DIR
  --max-connections N      sessions at once (default 100); one more gets SQLSTATE 53300
  --connect-timeout SECS   upstream login limit, token included (default PGCONNECT_TIMEOUT or 10)
  --shutdown-timeout SECS  on SIGINT/SIGTERM, stop accepting and let sessions finish for this
                           long, then close them (default 30)
  --database NAME          also serve this database (repeatable)
  --tls-cert FILE, --tls-key FILE
                           local TLS (PEM); clients then may use sslmode=require or verify-full
  --allow-remote           listen on an address other than loopback; needs --tls-cert,
                           --tls-key and PGAUTH_PROXY_PASSWORD, and clients from other machines
                           must use TLS
  --print-env              print the export lines a client needs, and exit

environment: the settings of the other commands (PGHOST, PGAUTH_METHOD, ...);
PGAUTH_PROXY_PASSWORD, a password clients must give (required with --allow-remote);
PGAUTH_LOG (default info: one line per connection, never a token).

examples:
  pgauth proxy
  eval \"$(pgauth proxy --print-env)\" && psql -c 'select current_user' && pg_dump -Fc > app.dump
  pgauth proxy --socket /run/pgauth --database reporting
See docs/proxy.md.
";

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    /// Parses `line` (split on spaces) and compares with `expected`: a command and the
    /// quiet flag, or a fragment of the usage error and the help page it points at.
    fn check(line: &str, expected: Result<(Command, bool), (&str, Topic)>) {
        match (parse(&argv(line)), expected) {
            (Ok(got), Ok((command, quiet))) => {
                assert_eq!(got, Invocation { command, quiet }, "{line:?}");
            }
            (Err(got), Err((fragment, topic))) => {
                assert!(got.message.contains(fragment), "{line:?}: {got}");
                assert_eq!(got.topic, topic, "{line:?}");
            }
            (got, _) => panic!("{line:?}: unexpected {got:?}"),
        }
    }

    fn role(method: RoleMethod, name: &str) -> CreateRole {
        CreateRole {
            method,
            name: name.to_string(),
            object_id: None,
            principal_type: None,
            database: None,
            grant: None,
        }
    }

    #[test]
    fn command_lines() {
        check("", Ok((Command::Help(Topic::Main), false)));
        check("--help", Ok((Command::Help(Topic::Main), false)));
        check("help doctor", Ok((Command::Help(Topic::Doctor), false)));
        check("doctor --help", Ok((Command::Help(Topic::Doctor), false)));
        check("sql --help", Ok((Command::Help(Topic::Sql), false)));
        check("sql create-role -h", Ok((Command::Help(Topic::Sql), false)));
        check("-V", Ok((Command::Version, false)));
        check("token", Ok((Command::Token { json: false }, false)));
        check("-q token --json", Ok((Command::Token { json: true }, true)));
        check("token --quiet", Ok((Command::Token { json: false }, true)));
        check("env", Ok((Command::Env, false)));
        check("doctor --json", Ok((Command::Doctor { json: true }, false)));
        check("psql", Ok((Command::Psql { args: vec![] }, false)));
        check(
            "psql -- -c select -q --help",
            Ok((
                Command::Psql {
                    args: argv("-c select -q --help"),
                },
                false,
            )),
        );
        check(
            "sql create-role --method azure --name my-app",
            Ok((
                Command::CreateRole(role(RoleMethod::Azure, "my-app")),
                false,
            )),
        );
        check(
            "sql create-role --method=AWS --name=app_user --database app --grant write",
            Ok((
                Command::CreateRole(CreateRole {
                    database: Some("app".into()),
                    grant: Some(Grant::Write),
                    ..role(RoleMethod::Aws, "app_user")
                }),
                false,
            )),
        );
        check(
            "sql create-role --method azure --name g --object-id 6f1b5c1e-1234-4f00-8c4e-0a1b2c3d4e5f --type group --grant owner",
            Ok((
                Command::CreateRole(CreateRole {
                    object_id: Some("6f1b5c1e-1234-4f00-8c4e-0a1b2c3d4e5f".into()),
                    principal_type: Some(PrincipalType::Group),
                    grant: Some(Grant::Owner),
                    ..role(RoleMethod::Azure, "g")
                }),
                false,
            )),
        );
    }

    #[test]
    fn bad_command_lines_say_what_to_write() {
        check("frobnicate", Err(("unknown command", Topic::Main)));
        check("help nothing", Err(("no help page", Topic::Main)));
        check(
            "token --yaml",
            Err(("unexpected argument \"--yaml\"", Topic::Token)),
        );
        check("env --json", Err(("takes no options", Topic::Env)));
        check("doctor -- x", Err(("after '--'", Topic::Doctor)));
        check("-- x", Err(("without a command", Topic::Main)));
        check(
            "psql -c select",
            Err(("pgauth psql -- -c select", Topic::Psql)),
        );
        check("sql", Err(("create-role", Topic::Sql)));
        check("sql drop-role", Err(("unknown sql subcommand", Topic::Sql)));
        check("sql create-role --name x", Err(("--method", Topic::Sql)));
        check(
            "sql create-role --method azure",
            Err(("--name", Topic::Sql)),
        );
        check(
            "sql create-role --method gcp --name x",
            Err(("use azure or aws", Topic::Sql)),
        );
        check(
            "sql create-role --method azure --name",
            Err(("needs a value", Topic::Sql)),
        );
        check(
            "sql create-role --method azure --name a --name b",
            Err(("given twice", Topic::Sql)),
        );
        check(
            "sql create-role --method aws --name a --object-id 6f1b5c1e-1234-4f00-8c4e-0a1b2c3d4e5f",
            Err(("for --method azure", Topic::Sql)),
        );
        check(
            "sql create-role --method azure --name a --type user",
            Err(("goes with --object-id", Topic::Sql)),
        );
        check(
            "sql create-role --method azure --name a --database app",
            Err(("add --grant", Topic::Sql)),
        );
        check(
            "sql create-role --method azure --name a --grant admin",
            Err(("read, write or owner", Topic::Sql)),
        );
        check(
            "sql create-role --method azure --name a --type robot --object-id x",
            Err(("service, user or group", Topic::Sql)),
        );
        check(
            "sql create-role --method azure --name a --superuser",
            Err(("unexpected argument", Topic::Sql)),
        );
    }

    #[test]
    fn proxy_command_lines() {
        check("proxy", Ok((Command::Proxy(ProxyArgs::default()), false)));
        check("proxy --help", Ok((Command::Help(Topic::Proxy), false)));
        check("help proxy", Ok((Command::Help(Topic::Proxy), false)));
        check(
            "proxy --listen 6000 --database a --database=b --max-connections 5 --print-env",
            Ok((
                Command::Proxy(ProxyArgs {
                    listen: Some("127.0.0.1:6000".parse().unwrap()),
                    databases: vec!["a".into(), "b".into()],
                    max_connections: Some(5),
                    print_env: true,
                    ..ProxyArgs::default()
                }),
                false,
            )),
        );
        check(
            "-q proxy --listen=0.0.0.0:5431 --allow-remote --tls-cert c.pem --tls-key k.pem --connect-timeout 3 --shutdown-timeout 0",
            Ok((
                Command::Proxy(ProxyArgs {
                    listen: Some("0.0.0.0:5431".parse().unwrap()),
                    allow_remote: true,
                    tls_cert: Some("c.pem".into()),
                    tls_key: Some("k.pem".into()),
                    connect_timeout: Some(3),
                    shutdown_timeout: Some(0),
                    ..ProxyArgs::default()
                }),
                true,
            )),
        );
        check(
            "proxy --socket /run/pgauth",
            Ok((
                Command::Proxy(ProxyArgs {
                    socket: Some("/run/pgauth".into()),
                    ..ProxyArgs::default()
                }),
                false,
            )),
        );
    }

    #[test]
    fn bad_proxy_command_lines_say_what_to_write() {
        check("proxy --listen", Err(("needs a value", Topic::Proxy)));
        check(
            "proxy --listen localhost:5431",
            Err(("give IP:PORT", Topic::Proxy)),
        );
        check(
            "proxy --listen 1 --listen 2",
            Err(("given twice", Topic::Proxy)),
        );
        check(
            "proxy --max-connections 0",
            Err(("at least 1", Topic::Proxy)),
        );
        check(
            "proxy --max-connections many",
            Err(("whole number", Topic::Proxy)),
        );
        check(
            "proxy --connect-timeout 0",
            Err(("at least 1 second", Topic::Proxy)),
        );
        check("proxy --port 5", Err(("unexpected argument", Topic::Proxy)));
        check(
            "proxy --print-env=yes",
            Err(("unexpected argument", Topic::Proxy)),
        );
        check(
            "proxy --socket /tmp --allow-remote",
            Err(("local already", Topic::Proxy)),
        );
        check("proxy -- x", Err(("after '--'", Topic::Proxy)));
    }

    #[test]
    fn every_help_page_has_examples() {
        for topic in [
            Topic::Main,
            Topic::Token,
            Topic::Psql,
            Topic::Env,
            Topic::Doctor,
            Topic::Sql,
            Topic::Proxy,
        ] {
            assert!(help(topic).contains("examples:"), "{topic:?}");
            assert!(help(topic).contains("usage: pgauth"), "{topic:?}");
        }
    }
}
