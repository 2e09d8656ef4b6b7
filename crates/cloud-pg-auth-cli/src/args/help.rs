//! The help pages, one per topic.

use super::Topic;

/// The text of a help page.
#[must_use]
pub(crate) fn help(topic: Topic) -> &'static str {
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
  PGAUTH_METHOD         azure, aws, dsql, gcp, password or auto (auto: *.postgres.database.azure.com
                        -> azure, *.rds.amazonaws.com -> aws, *.dsql.<region>.on.aws -> dsql;
                        never gcp: set it for Cloud SQL and AlloyDB)
  PGHOST PGHOSTADDR PGPORT PGDATABASE PGUSER PGSSLMODE PGSSLROOTCERT DATABASE_URL   as in libpq
  PGAUTH_AZURE_CREDENTIAL PGAUTH_AZURE_CLOUD AZURE_CLIENT_ID AZURE_TENANT_ID ...   Azure
  AWS_REGION AWS_PROFILE PGAUTH_AWS_SIGNING_PORT ...                                AWS
  PGAUTH_DSQL_TOKEN_EXPIRES                      Aurora DSQL token lifetime, s (900)
  PGAUTH_GCP_PRODUCT GOOGLE_APPLICATION_CREDENTIALS GCE_METADATA_HOST ...         Google
  PGAUTH_LOG            log level of the library's messages on standard error (default warn)

examples:
  pgauth doctor
  PGAUTH_METHOD=azure PGHOST=mydb.postgres.database.azure.com pgauth psql -- -c 'select current_user'
  PGPASSWORD=\"$(pgauth -q token)\" pg_dump -Fc app > app.dump
  pgauth sql create-role --method azure --name my-app-identity --database app --grant write

exit status: 0 success, 1 failure (a doctor step or the command failed), 2 bad usage;
pgauth psql exits with psql's status.
See docs/azure.md, docs/aws.md, docs/dsql.md, docs/gcp.md and docs/troubleshooting.md.
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
usage: pgauth sql create-role --method azure|aws|dsql|gcp --name NAME [--object-id ID]
                              [--type service|user|group] [--arn ARN]
                              [--gcp-product cloudsql|alloydb]
                              [--database DB] [--grant read|write|owner]

Prints the SQL an administrator runs to create the login role; it runs nothing. Names are
quoted, so any name is safe to paste.

  Azure: run as the Microsoft Entra administrator, connected to the database postgres.
         pgaadauth_create_principal(NAME) looks NAME up in the tenant (a managed identity's
         or app's display name, a user's UPN, a group's name); with --object-id,
         pgaadauth_create_principal_with_oid maps NAME to that object id (--type, default
         service: managed identities and app registrations).
  AWS:   CREATE USER NAME and GRANT rds_iam TO NAME. NAME must be letters, digits, - . _ ~
         (an IAM token carries it unencoded).
  DSQL:  CREATE ROLE NAME WITH LOGIN and AWS IAM GRANT NAME TO 'ARN', run as admin, each
         statement its own transaction; --arn (required) is the IAM role or user that logs
         in. No --grant: write GRANT statements one per transaction (docs/dsql.md).
  Google: the IAM user is created with gcloud, not SQL: the gcloud sql users create line
         (--gcp-product alloydb: gcloud alloydb users create) comes as a comment to run,
         then the grants. NAME is a service account's email without .gserviceaccount.com
         (app@project.iam) or a user's email.
  --grant read    SELECT on schema public's tables (now and future ones created by the
                  administrator)
  --grant write   read, plus INSERT, UPDATE, DELETE and sequences
  --grant owner   write, plus CREATE in schema public (the role that runs migrations)
  --database DB   the database the grants are for (default: postgres)

examples:
  pgauth sql create-role --method azure --name my-app-identity --grant write --database app
  pgauth sql create-role --method azure --name my-app --object-id 6f1b5c1e-1234-4f00-8c4e-0a1b2c3d4e5f
  pgauth sql create-role --method aws --name app_user --grant read --database app | psql -h admin-host
  pgauth sql create-role --method dsql --name app --arn arn:aws:iam::123456789012:role/app
  pgauth sql create-role --method gcp --name app@my-project.iam --grant write --database app
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
