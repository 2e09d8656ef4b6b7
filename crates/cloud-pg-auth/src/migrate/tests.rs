//! Unit tests of the migration list, the file names and the plan (no database needed).

use std::collections::BTreeMap;

use super::migration::parse_file_name;
use super::*;

#[test]
fn parses_file_names() {
    let ok: &[(&str, i64, &str)] = &[
        ("V1__create_notes.sql", 1, "create_notes"),
        ("v2__add index.sql", 2, "add index"),
        ("V010__x.sql", 10, "x"),
        ("1_create_notes.sql", 1, "create_notes"),
        (
            "20260101120000_create_notes.sql",
            20_260_101_120_000,
            "create_notes",
        ),
        ("3_with_more_parts.up.sql", 3, "with_more_parts"),
        ("V4__double__underscore.sql", 4, "double__underscore"),
    ];
    for (file, version, name) in ok {
        assert_eq!(
            parse_file_name(file),
            Ok((*version, (*name).to_string())),
            "{file}"
        );
    }
    let bad: &[(&str, &str)] = &[
        ("notes.sql", "version"),
        ("V1_create.sql", "\"__\""),
        ("1.sql", "\"_\""),
        ("1_.sql", "no name"),
        ("x1_notes.sql", "version number"),
        ("99999999999999999999_big.sql", "too large"),
        ("1_notes.down.sql", "down migrations"),
        ("1_notes.txt", ".sql"),
    ];
    for (file, expected) in bad {
        let message = parse_file_name(file).unwrap_err();
        assert!(message.contains(expected), "{file}: {message}");
    }
}

#[test]
fn orders_by_version_and_rejects_duplicates() {
    let list = Migrations::from_files([
        ("m/V10__ten.sql", "select 10"),
        ("m/V2__two.sql", "select 2"),
        ("m\\1_one.sql", "select 1"),
    ])
    .unwrap();
    let versions: Vec<i64> = list.as_slice().iter().map(|m| m.version).collect();
    assert_eq!(versions, [1, 2, 10]);
    assert_eq!(list.as_slice()[0].name, "one");

    let error =
        Migrations::new([Migration::new(1, "a", ""), Migration::new(1, "b", "")]).unwrap_err();
    assert!(
        matches!(error, MigrateError::DuplicateVersion { version: 1, .. }),
        "{error}"
    );
    assert!(matches!(
        Migrations::new([Migration::new(-1, "neg", "")]),
        Err(MigrateError::FileName { .. })
    ));
}

#[test]
fn checksum_ignores_line_endings_only() {
    let a = Migration::new(1, "a", "create table t (\n id int\n);\n");
    let crlf = Migration::new(1, "a", "create table t (\r\n id int\r\n);\r\n");
    let changed = Migration::new(1, "a", "create table t (\n id bigint\n);\n");
    assert_eq!(a.checksum(), crlf.checksum());
    assert_ne!(a.checksum(), changed.checksum());
    assert_eq!(a.checksum().len(), 16);
    // Fixed values: the recorded checksums must never change between releases.
    assert_eq!(Migration::new(1, "e", "").checksum(), "cbf29ce484222325");
    assert_eq!(Migration::new(1, "a", "a").checksum(), "af63dc4c8601ec8c");
}

fn history(entries: &[(i64, &Migration)]) -> BTreeMap<i64, (String, String)> {
    entries
        .iter()
        .map(|(v, m)| (*v, (m.name.to_string(), m.checksum())))
        .collect()
}

#[test]
fn plans_pending_migrations() {
    let one = Migration::new(1, "one", "select 1");
    let two = Migration::new(2, "two", "select 2");
    let three = Migration::new(3, "three", "select 3");
    let list = Migrations::new([one.clone(), two.clone(), three.clone()]).unwrap();
    let versions = |h: &BTreeMap<_, _>| -> Vec<i64> {
        list.plan(h).unwrap().iter().map(|m| m.version).collect()
    };
    assert_eq!(versions(&history(&[])), [1, 2, 3]);
    assert_eq!(versions(&history(&[(1, &one)])), [2, 3]);
    assert_eq!(
        versions(&history(&[(1, &one), (2, &two), (3, &three)])),
        Vec::<i64>::new()
    );
    // Unknown applied versions (a newer release) are left alone.
    let four = Migration::new(4, "four", "select 4");
    assert!(
        list.plan(&history(&[(1, &one), (2, &two), (3, &three), (4, &four)]))
            .unwrap()
            .is_empty()
    );

    let edited = Migration::new(2, "two", "select 22");
    let error = list.plan(&history(&[(1, &one), (2, &edited)])).unwrap_err();
    assert!(
        matches!(error, MigrateError::ChecksumMismatch { version: 2, .. }),
        "{error}"
    );

    let error = list.plan(&history(&[(1, &one), (3, &three)])).unwrap_err();
    assert!(
        matches!(
            error,
            MigrateError::OutOfOrder {
                version: 2,
                latest: 3,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn reads_a_directory() {
    let dir = std::env::temp_dir().join(format!("pgauth-migrate-test-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("V2__second.sql"), "select 2").unwrap();
    std::fs::write(dir.join("V1__first.sql"), "select 1").unwrap();
    std::fs::write(dir.join("README.md"), "ignored").unwrap();
    std::fs::write(dir.join("sub").join("V3__nested.sql"), "ignored").unwrap();
    let list = Migrations::from_dir(&dir).unwrap();
    let names: Vec<&str> = list.as_slice().iter().map(|m| m.name.as_ref()).collect();
    assert_eq!(names, ["first", "second"]);
    assert_eq!(list.as_slice()[1].sql, "select 2");

    std::fs::write(dir.join("second.sql"), "select 2").unwrap();
    let error = Migrations::from_dir(&dir).unwrap_err();
    assert!(error.to_string().contains("\"second.sql\""), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();

    let error = Migrations::from_dir(dir.join("missing")).unwrap_err();
    assert!(matches!(error, MigrateError::Read { .. }), "{error}");
}

#[test]
fn macro_embeds_files() {
    let list = crate::migrations!["../../README.md"];
    assert!(matches!(list, Err(MigrateError::FileName { .. })));
    let empty = crate::migrations![].unwrap();
    assert!(empty.is_empty());
}
