//! The SQL of `pgauth sql create-role`: quoting, refused names, statements per cloud.

use postgres_protocol::escape::{escape_identifier, escape_literal};

use super::*;
use crate::args::{Grant, PrincipalType};

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
        arn: None,
        gcp_product: None,
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

#[test]
fn dsql_roles_are_created_and_mapped_to_an_arn() {
    let arn = "arn:aws:iam::123456789012:role/app";
    let sql = create_role(&CreateRole {
        arn: Some(arn.into()),
        ..request(RoleMethod::Dsql, "app")
    })
    .unwrap();
    assert!(sql.contains("CREATE ROLE \"app\" WITH LOGIN;\n"), "{sql}");
    assert!(
        sql.contains(&format!("AWS IAM GRANT \"app\" TO '{arn}';\n")),
        "{sql}"
    );
    assert!(!sql.contains("BEGIN"), "one ddl per transaction: {sql}");
    for bad in [
        "arn:aws:iam::12345:role/app",
        "arn:aws:s3:::bucket",
        "arn:aws:iam::123456789012:group/x",
        "arn:aws:iam::123456789012:role/",
        "arn:aws:iam::123456789012:role/a b",
        "role/app",
    ] {
        check_refused(
            CreateRole {
                arn: Some(bad.into()),
                ..request(RoleMethod::Dsql, "app")
            },
            "not an iam role or user arn",
        );
    }
    let quoted = create_role(&CreateRole {
        arn: Some("arn:aws-cn:iam::123456789012:user/o'brien".into()),
        ..request(RoleMethod::Dsql, "x\"y")
    })
    .unwrap();
    assert!(
        quoted
            .contains("AWS IAM GRANT \"x\"\"y\" TO 'arn:aws-cn:iam::123456789012:user/o''brien';"),
        "{quoted}"
    );
}

#[test]
fn gcp_users_come_from_gcloud_then_the_grants() {
    check_sql(
        CreateRole {
            grant: Some(Grant::Write),
            database: Some("app".into()),
            ..request(RoleMethod::Gcp, "app@my-project.iam")
        },
        &[
            "--   gcloud sql users create 'app@my-project.iam' --instance=INSTANCE --type=cloud_iam_service_account",
            "--member='serviceAccount:app@my-project.iam.gserviceaccount.com' --role=roles/cloudsql.instanceUser",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO \"app@my-project.iam\";",
        ],
        &["CREATE ROLE", "CREATE USER", "alloydb"],
    );
    check_sql(
        request(RoleMethod::Gcp, "jane@example.com"),
        &[
            "--type=cloud_iam_user",
            "--member='user:jane@example.com'",
            "add --grant read, write or owner",
        ],
        &["GRANT CONNECT"],
    );
    check_sql(
        CreateRole {
            gcp_product: Some(cloud_pg_auth::gcp::GcpProduct::AlloyDb),
            ..request(RoleMethod::Gcp, "o'brien@example.com")
        },
        &[
            "--   gcloud alloydb users create 'o'\\''brien@example.com' --cluster=CLUSTER --region=REGION --type=IAM_BASED",
            "--role=roles/alloydb.databaseUser",
            "--role=roles/serviceusage.serviceUsageConsumer",
        ],
        &["gcloud sql"],
    );
    check_refused(
        request(RoleMethod::Gcp, "app@my-project.iam.gserviceaccount.com"),
        "--name \"app@my-project.iam\"",
    );
    check_refused(request(RoleMethod::Gcp, "app"), "not a google principal's");
}
