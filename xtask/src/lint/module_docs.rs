//! Every Rust module says what it is for: a `//!` line (or `#![doc = ...]`) at its top,
//! before any item (only inner attributes and plain comments may come first). Files pulled
//! in with `include!` are not modules and are skipped.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use super::{Source, Violation};

/// Every module in `files` whose top has no `//!` line.
pub(super) fn check(files: &[Source]) -> Vec<Violation> {
    let included = included_files(files);
    files
        .iter()
        .filter(|(path, _)| !included.contains(path))
        .filter_map(|(path, text)| {
            missing_doc_line(text).map(|line| {
                Violation::new(
                    path,
                    line,
                    "this module has no `//!` line at its top; start it with one saying what the module is for",
                )
            })
        })
        .collect()
}

/// The line (1-based) where the module's code starts without a `//!` line before it, or
/// `None` when the top has one.
fn missing_doc_line(text: &str) -> Option<usize> {
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let line = line.trim();
        // `#![doc = include_str!("../README.md")]` is the module doc too.
        if line.starts_with("//!") || line.starts_with("/*!") || line.starts_with("#![doc") {
            return None;
        }
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        if line.starts_with("/*") {
            let mut rest = line;
            while !rest.contains("*/") {
                rest = lines.next()?.1;
            }
            continue;
        }
        if line.starts_with("#![") {
            // An inner attribute may span lines; it ends where its brackets balance.
            let mut depth = brackets(line);
            while depth > 0 {
                depth += brackets(lines.next()?.1);
            }
            continue;
        }
        return Some(index + 1);
    }
    Some(text.lines().count().max(1))
}

/// Opening minus closing square brackets in `line`.
fn brackets(line: &str) -> i64 {
    line.chars()
        .map(|c| match c {
            '[' => 1,
            ']' => -1,
            _ => 0,
        })
        .sum()
}

/// The files some other file names in `include!("...")`, resolved against its directory.
fn included_files(files: &[Source]) -> BTreeSet<PathBuf> {
    let mut included = BTreeSet::new();
    for (path, text) in files {
        let dir = path.parent().unwrap_or(Path::new(""));
        let mut rest = text.as_str();
        while let Some(at) = rest.find("include!(\"") {
            rest = &rest[at + "include!(\"".len()..];
            if let Some(end) = rest.find('"') {
                included.insert(normalize(&dir.join(&rest[..end])));
            }
        }
    }
    included
}

/// `a/b/../c` as `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{check, missing_doc_line};

    #[test]
    fn module_tops() {
        fn check_top(text: &str, expected: Option<usize>) {
            assert_eq!(missing_doc_line(text), expected, "{text:?}");
        }
        check_top("//! Does one job.\nfn f() {}\n", None);
        check_top("\n\n//! After blank lines.\n", None);
        check_top("// SPDX line\n//! After a comment.\n", None);
        check_top("#![allow(dead_code)]\n//! After an attribute.\n", None);
        check_top(
            "#![cfg_attr(\n    docsrs,\n    feature(doc_cfg)\n)]\n//! Multi-line.\n",
            None,
        );
        check_top("/* block\n comment */\n//! After a block.\n", None);
        check_top("/*! Block doc. */\n", None);
        check_top("#![doc = include_str!(\"../README.md\")]\nmod a;\n", None);
        check_top("use std::fmt;\n//! Too late.\n", Some(1));
        check_top("/// An item doc is not a module doc.\nfn f() {}\n", Some(2));
        check_top("#![allow(x)]\n\nmod a;\n", Some(3));
        check_top("", Some(1));
        check_top("// only a comment\n", Some(1));
    }

    #[test]
    fn included_files_are_not_modules() {
        let files = vec![
            (
                PathBuf::from("crates/a/src/lib.rs"),
                "//! a\ninclude!(\"../imp/body.rs\");\n".to_string(),
            ),
            (
                PathBuf::from("crates/a/imp/body.rs"),
                "fn body() {}\n".to_string(),
            ),
            (
                PathBuf::from("crates/a/src/bare.rs"),
                "fn bare() {}\n".to_string(),
            ),
        ];
        let found: Vec<(PathBuf, usize)> = check(&files)
            .into_iter()
            .map(|v| (v.file, v.line))
            .collect();
        assert_eq!(found, vec![(PathBuf::from("crates/a/src/bare.rs"), 1)]);
    }
}
