//! The privileges of `--grant`, in a transaction guarded to run in the right database.

use std::fmt::Write as _;

use postgres_protocol::escape::{escape_identifier, escape_literal};

use crate::args::Grant;

/// A `$tag$` that does not occur in `body`, for a dollar-quoted block.
pub(super) fn dollar_tag(body: &str) -> String {
    let mut tag = "$pgauth$".to_string();
    let mut n = 0;
    while body.contains(&tag) {
        n += 1;
        tag = format!("$pgauth{n}$");
    }
    tag
}

pub(super) fn grants(sql: &mut String, role: &str, database: &str, grant: Grant) {
    let db_ident = escape_identifier(database);
    let db_literal = escape_literal(database);
    let _ = writeln!(sql, "-- Privileges, connected to the database {db_ident}.");
    // psql's \connect treats a name with '=' as a connection string and interprets
    // backslashes and quotes: only plain names are written as a meta-command. The guard
    // below is plain SQL and catches every other case, in every client.
    let plain = database
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if plain {
        let _ = writeln!(
            sql,
            "-- (\\connect is psql's; in another client connect to {db_ident} yourself and skip that line.)"
        );
        let _ = writeln!(sql, "\\connect '{database}'");
    } else {
        let _ = writeln!(
            sql,
            "-- Connect to the database {db_ident} first, then run what follows."
        );
    }
    sql.push_str("BEGIN;\n");
    let body = format!(
        " BEGIN IF current_database() <> {db_literal} THEN RAISE EXCEPTION 'connect to the database % before granting', {db_literal}; END IF; END "
    );
    let tag = dollar_tag(&body);
    let _ = writeln!(sql, "DO {tag}{body}{tag};");
    let (db_privs, schema_privs, table_privs, seq_privs) = match grant {
        Grant::Read => ("CONNECT", "USAGE", "SELECT", Some("SELECT")),
        Grant::Write => (
            "CONNECT",
            "USAGE",
            "SELECT, INSERT, UPDATE, DELETE",
            Some("USAGE, SELECT, UPDATE"),
        ),
        Grant::Owner => (
            "CONNECT, CREATE, TEMPORARY",
            "USAGE, CREATE",
            "ALL",
            Some("ALL"),
        ),
    };
    let _ = writeln!(sql, "GRANT {db_privs} ON DATABASE {db_ident} TO {role};");
    let _ = writeln!(sql, "GRANT {schema_privs} ON SCHEMA public TO {role};");
    let _ = writeln!(
        sql,
        "GRANT {table_privs} ON ALL TABLES IN SCHEMA public TO {role};"
    );
    if let Some(seq) = seq_privs {
        let _ = writeln!(
            sql,
            "GRANT {seq} ON ALL SEQUENCES IN SCHEMA public TO {role};"
        );
    }
    sql.push_str(
        "-- Tables created later by the role running this script get the same privileges:\n",
    );
    let _ = writeln!(
        sql,
        "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT {table_privs} ON TABLES TO {role};"
    );
    if let Some(seq) = seq_privs {
        let _ = writeln!(
            sql,
            "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT {seq} ON SEQUENCES TO {role};"
        );
    }
    sql.push_str("COMMIT;\n");
}
