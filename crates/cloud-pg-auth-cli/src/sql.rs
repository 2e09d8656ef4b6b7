//! `pgauth sql create-role`: the SQL an administrator runs. Nothing here connects anywhere.
//!
//! Every name that reaches the SQL goes through postgres-protocol's `escape_identifier` or
//! `escape_literal` (libpq's `PQescapeIdentifier` / `PQescapeLiteral`), so a role called
//! `x"; DROP TABLE t; --` is created under exactly that name and nothing else runs. The
//! output is two transactions: creating the role, then (connected to the target database)
//! the grants, guarded so that they fail instead of landing in another database.

use std::fmt::Write as _;

use postgres_protocol::escape::{escape_identifier, escape_literal};

use crate::args::{CreateRole, Grant, PrincipalType, RoleMethod};

/// PostgreSQL truncates longer identifiers (NAMEDATALEN - 1), which would create a role
/// whose name no token matches.
const MAX_IDENT_BYTES: usize = 63;

/// Unicode general category Cf (format characters): invisible, or changing the direction
/// of the text around them, so a name holding one looks like another name. From
/// DerivedGeneralCategory.txt of Unicode 15.0 (cross-checked with Python's `unicodedata`,
/// Unicode 14.0, which ends the Egyptian range at U+13438).
const FORMAT_CHARS: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),   // soft hyphen
    (0x0600, 0x0605),   // Arabic number signs
    (0x061C, 0x061C),   // Arabic letter mark
    (0x06DD, 0x06DD),   // Arabic end of ayah
    (0x070F, 0x070F),   // Syriac abbreviation mark
    (0x0890, 0x0891),   // Arabic pound and piastre marks above
    (0x08E2, 0x08E2),   // Arabic disputed end of ayah
    (0x180E, 0x180E),   // Mongolian vowel separator
    (0x200B, 0x200F),   // zero width space, non-joiner, joiner; LRM, RLM
    (0x202A, 0x202E),   // bidi embeddings and overrides (LRE, RLE, PDF, LRO, RLO)
    (0x2060, 0x2064),   // word joiner, invisible operators
    (0x2066, 0x206F),   // bidi isolates (LRI, RLI, FSI, PDI), deprecated format chars
    (0xFEFF, 0xFEFF),   // zero width no-break space (byte order mark)
    (0xFFF9, 0xFFFB),   // interlinear annotation
    (0x110BD, 0x110BD), // Kaithi number sign
    (0x110CD, 0x110CD), // Kaithi number sign above
    (0x13430, 0x1343F), // Egyptian hieroglyph format controls
    (0x1BCA0, 0x1BCA3), // shorthand format controls
    (0x1D173, 0x1D17A), // musical symbol beam and phrase controls
    (0xE0001, 0xE0001), // language tag
    (0xE0020, 0xE007F), // tag characters
];

/// A character that hides in a name: a control character (Cc), a format character (Cf), or
/// a line or paragraph separator (Zl, Zp), which breaks the line it is printed on.
fn is_hidden(c: char) -> bool {
    let cp = u32::from(c);
    c.is_control()
        || matches!(cp, 0x2028 | 0x2029)
        || FORMAT_CHARS
            .iter()
            .any(|&(first, last)| (first..=last).contains(&cp))
}

/// `name` quoted, with every hidden character written `\u{...}`, so the message shows it
/// instead of acting on the terminal.
fn shown(name: &str) -> String {
    let mut out = String::from("\"");
    for c in name.chars() {
        if is_hidden(c) {
            out.push_str(&format!("\\u{{{:04x}}}", u32::from(c)));
        } else {
            out.extend(c.escape_debug());
        }
    }
    out.push('"');
    out
}

/// Checks a role or database name: not empty, no control, format or line-separator
/// characters (they cannot be typed at a login prompt, and they hide in terminals or make
/// one name look like another), at most 63 bytes.
fn check_name(flag: &str, what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{flag}: the {what} is empty"));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{flag}: the {what} {} contains the control character U+{:04X}; use a name without one",
            shown(name),
            u32::from(c)
        ));
    }
    if let Some(c) = name.chars().find(|&c| is_hidden(c)) {
        return Err(format!(
            "{flag}: the {what} {} contains U+{:04X}, an invisible or direction-changing character; use a name without one",
            shown(name),
            u32::from(c)
        ));
    }
    if name.len() > MAX_IDENT_BYTES {
        return Err(format!(
            "{flag}: the {what} is {} bytes long; postgresql keeps only the first {MAX_IDENT_BYTES}, so no login would match it",
            name.len()
        ));
    }
    Ok(())
}

/// A `$tag$` that does not occur in `body`, for a dollar-quoted block.
fn dollar_tag(body: &str) -> String {
    let mut tag = "$pgauth$".to_string();
    let mut n = 0;
    while body.contains(&tag) {
        n += 1;
        tag = format!("$pgauth{n}$");
    }
    tag
}

/// The SQL for `request`, or what is wrong with it.
pub(crate) fn create_role(request: &CreateRole) -> Result<String, String> {
    let name = &request.name;
    check_name("--name", "role name", name)?;
    if request.method == RoleMethod::Aws {
        cloud_pg_auth::aws::validate_username(name)
            .map_err(|e| format!("--name: {}", e.message()))?;
    }
    if let Some(oid) = &request.object_id
        && !cloud_pg_auth::azure::is_guid(oid)
    {
        return Err(format!(
            "--object-id: {oid:?} is not an object id; give the identity's object (principal) id, a GUID such as 6f1b5c1e-1234-4f00-8c4e-0a1b2c3d4e5f"
        ));
    }
    let database = request.database.as_deref().unwrap_or("postgres");
    check_name("--database", "database name", database)?;

    let role = escape_identifier(name);
    let mut sql = String::new();
    match request.method {
        RoleMethod::Azure => {
            sql.push_str(
                "-- Azure Database for PostgreSQL: run as the Microsoft Entra administrator,\n\
                 -- connected to the database postgres (psql -v ON_ERROR_STOP=1 stops at the first error).\n",
            );
            sql.push_str("BEGIN;\n");
            match &request.object_id {
                None => {
                    let _ = writeln!(
                        sql,
                        "-- Looks {} up in the tenant by display name (managed identity, app) or UPN (user).",
                        escape_literal(name)
                    );
                    let _ = writeln!(
                        sql,
                        "SELECT * FROM pgaadauth_create_principal({}, false, false);",
                        escape_literal(name)
                    );
                }
                Some(oid) => {
                    let kind = request.principal_type.unwrap_or(PrincipalType::Service);
                    let _ = writeln!(
                        sql,
                        "SELECT * FROM pgaadauth_create_principal_with_oid({}, {}, {}, false, false);",
                        escape_literal(name),
                        escape_literal(&oid.to_ascii_lowercase()),
                        escape_literal(kind.as_str())
                    );
                }
            }
            sql.push_str("COMMIT;\n");
        }
        RoleMethod::Aws => {
            sql.push_str(
                "-- AWS RDS / Aurora PostgreSQL: run as the master user (or a role with CREATEROLE),\n\
                 -- with psql -v ON_ERROR_STOP=1 so that it stops at the first error.\n\
                 -- The IAM policy of the application needs rds-db:connect on\n",
            );
            let _ = writeln!(
                sql,
                "-- arn:aws:rds-db:REGION:ACCOUNT:dbuser:DB-RESOURCE-ID/{name}"
            );
            sql.push_str("BEGIN;\n");
            let _ = writeln!(sql, "CREATE USER {role};");
            let _ = writeln!(sql, "GRANT rds_iam TO {role};");
            sql.push_str("COMMIT;\n");
        }
    }
    if let Some(grant) = request.grant {
        sql.push('\n');
        grants(&mut sql, &role, database, grant);
    }
    Ok(sql)
}

fn grants(sql: &mut String, role: &str, database: &str, grant: Grant) {
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

#[cfg(test)]
mod tests {
    use super::*;

    // The quoting is postgres-protocol's; these pin the behaviour the SQL above relies on.
    fn check_ident(input: &str, expected: &str) {
        assert_eq!(escape_identifier(input), expected, "{input:?}");
    }

    #[test]
    fn identifiers_are_double_quoted() {
        check_ident("app", "\"app\"");
        check_ident("My App", "\"My App\"");
        check_ident("x\"; DROP TABLE t; --", "\"x\"\"; DROP TABLE t; --\"");
        check_ident("\"", "\"\"\"\"");
        check_ident("alice@contoso.example", "\"alice@contoso.example\"");
        check_ident("back\\slash", "\"back\\slash\"");
    }

    fn check_literal(input: &str, expected: &str) {
        assert_eq!(escape_literal(input), expected, "{input:?}");
    }

    #[test]
    fn literals_are_single_quoted() {
        check_literal("app", "'app'");
        check_literal(
            "Robert'); DROP TABLE t; --",
            "'Robert''); DROP TABLE t; --'",
        );
        // A backslash gives the E'' form (the same meaning whatever
        // standard_conforming_strings is), after a space so that it cannot glue onto a
        // preceding identifier.
        check_literal("a\\b", " E'a\\\\b'");
        check_literal("a\\'b", " E'a\\\\''b'");
        check_literal("", "''");
        check_literal("\"x\"", "'\"x\"'");
    }

    fn request(method: RoleMethod, name: &str) -> CreateRole {
        CreateRole {
            method,
            name: name.to_string(),
            object_id: None,
            principal_type: None,
            database: None,
            grant: None,
        }
    }

    /// `create_role(request)` fails with a message containing `expected`.
    fn check_refused(request: CreateRole, expected: &str) {
        match create_role(&request) {
            Ok(sql) => panic!("{request:?} was accepted:\n{sql}"),
            Err(e) => assert!(e.contains(expected), "{request:?}: {e}"),
        }
    }

    #[test]
    fn names_with_invisible_or_direction_changing_characters_are_refused() {
        // (character, what it is): one per class of the table, and the edges of ranges.
        let cases = [
            ('\u{00ad}', "soft hyphen"),
            ('\u{061c}', "arabic letter mark"),
            ('\u{180e}', "mongolian vowel separator"),
            ('\u{200b}', "zero width space"),
            ('\u{200d}', "zero width joiner"),
            ('\u{200e}', "left-to-right mark"),
            ('\u{200f}', "right-to-left mark"),
            ('\u{202a}', "left-to-right embedding"),
            ('\u{202e}', "right-to-left override"),
            ('\u{2060}', "word joiner"),
            ('\u{2066}', "left-to-right isolate"),
            ('\u{2069}', "pop directional isolate"),
            ('\u{feff}', "zero width no-break space"),
            ('\u{fff9}', "interlinear annotation anchor"),
            ('\u{1343f}', "egyptian hieroglyph format control"),
            ('\u{e0001}', "language tag"),
            ('\u{e007f}', "cancel tag"),
            ('\u{2028}', "line separator"),
            ('\u{2029}', "paragraph separator"),
        ];
        for (c, what) in cases {
            let name = format!("app{c}admin");
            let code = format!("U+{:04X}", u32::from(c));
            for method in [RoleMethod::Azure, RoleMethod::Aws] {
                check_refused(request(method, &name), &code);
            }
            let refused = create_role(&request(RoleMethod::Azure, &name)).unwrap_err();
            assert!(
                !refused.contains(c),
                "{what}: the message prints it raw: {refused}"
            );
            assert!(
                refused.contains("invisible or direction-changing"),
                "{what}: {refused}"
            );
            check_refused(
                CreateRole {
                    database: Some(name.clone()),
                    grant: Some(Grant::Read),
                    ..request(RoleMethod::Azure, "app")
                },
                &format!(
                    "--database: the database name \"app\\u{{{:04x}}}admin\"",
                    u32::from(c)
                ),
            );
        }
        // Neighbours of the ranges, and visible non-ASCII letters, stay allowed.
        for name in [
            "a\u{200a}b",
            "a\u{2010}b",
            "a\u{2070}b",
            "ünïcødé 名前",
            "app",
        ] {
            assert!(
                create_role(&request(RoleMethod::Azure, name)).is_ok(),
                "{name:?}"
            );
        }
    }

    #[test]
    fn bad_requests_are_refused() {
        check_refused(request(RoleMethod::Azure, ""), "role name is empty");
        check_refused(request(RoleMethod::Azure, "a\0b"), "control character");
        check_refused(request(RoleMethod::Azure, "a\nb"), "control character");
        check_refused(request(RoleMethod::Azure, &"x".repeat(64)), "64 bytes");
        check_refused(request(RoleMethod::Aws, "bad user"), "cannot carry");
        check_refused(request(RoleMethod::Aws, "x\"y"), "cannot carry");
        check_refused(
            CreateRole {
                object_id: Some("not-a-guid".into()),
                ..request(RoleMethod::Azure, "app")
            },
            "not an object id",
        );
        check_refused(
            CreateRole {
                database: Some("d\rb".into()),
                grant: Some(Grant::Read),
                ..request(RoleMethod::Azure, "app")
            },
            "--database",
        );
    }

    fn check_sql(request: CreateRole, expected: &[&str], absent: &[&str]) {
        let sql = create_role(&request).unwrap();
        for line in expected {
            assert!(
                sql.contains(line),
                "{request:?}: {line:?} missing in\n{sql}"
            );
        }
        for line in absent {
            assert!(
                !sql.contains(line),
                "{request:?}: {line:?} present in\n{sql}"
            );
        }
    }

    #[test]
    fn statements_per_method_and_grant() {
        check_sql(
            request(RoleMethod::Azure, "my-app"),
            &["SELECT * FROM pgaadauth_create_principal('my-app', false, false);"],
            &["GRANT", "\\connect"],
        );
        check_sql(
            CreateRole {
                grant: Some(Grant::Read),
                database: Some("db\\x".into()),
                ..request(RoleMethod::Azure, "dom\\user")
            },
            &[
                "pgaadauth_create_principal( E'dom\\\\user', false, false);",
                "IF current_database() <>  E'db\\\\x' THEN",
                "GRANT CONNECT ON DATABASE \"db\\x\" TO \"dom\\user\";",
            ],
            &["\\connect"],
        );
        check_sql(
            CreateRole {
                object_id: Some("6F1B5C1E-1234-4F00-8C4E-0A1B2C3D4E5F".into()),
                principal_type: Some(PrincipalType::Group),
                ..request(RoleMethod::Azure, "db readers")
            },
            &[
                "pgaadauth_create_principal_with_oid('db readers', '6f1b5c1e-1234-4f00-8c4e-0a1b2c3d4e5f', 'group', false, false);",
            ],
            &[],
        );
        check_sql(
            CreateRole {
                object_id: Some("6f1b5c1e-1234-4f00-8c4e-0a1b2c3d4e5f".into()),
                ..request(RoleMethod::Azure, "app")
            },
            &["'service', false, false"],
            &[],
        );
        check_sql(
            CreateRole {
                grant: Some(Grant::Read),
                database: Some("orders".into()),
                ..request(RoleMethod::Aws, "app_user")
            },
            &[
                "CREATE USER \"app_user\";",
                "GRANT rds_iam TO \"app_user\";",
                "\\connect 'orders'",
                "GRANT CONNECT ON DATABASE \"orders\" TO \"app_user\";",
                "GRANT SELECT ON ALL TABLES IN SCHEMA public TO \"app_user\";",
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO \"app_user\";",
            ],
            &["INSERT"],
        );
        check_sql(
            CreateRole {
                grant: Some(Grant::Write),
                ..request(RoleMethod::Aws, "app_user")
            },
            &[
                "\\connect 'postgres'",
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES",
                "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES",
            ],
            &["CREATE ON SCHEMA"],
        );
        check_sql(
            CreateRole {
                grant: Some(Grant::Owner),
                database: Some("a=b host=evil".into()),
                ..request(RoleMethod::Azure, "migrator")
            },
            &[
                "GRANT USAGE, CREATE ON SCHEMA public",
                "GRANT ALL ON ALL TABLES",
                "IF current_database() <> 'a=b host=evil'",
            ],
            &["\\connect"],
        );
    }

    #[test]
    fn the_guard_keeps_its_dollar_quote_closed() {
        let sql = create_role(&CreateRole {
            grant: Some(Grant::Read),
            database: Some("x$pgauth$y".into()),
            ..request(RoleMethod::Azure, "app")
        })
        .unwrap();
        assert!(sql.contains("DO $pgauth1$"), "{sql}");
    }
}
