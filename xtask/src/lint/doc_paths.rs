//! The documents name only paths that exist: inline code (`` `src/lib.rs` ``), link targets
//! and the entries of a code map (a ```` ```text ```` block laid out as an indented tree, where
//! an entry's path is its parent directories' paths joined with its own).
//!
//! A span counts as a path when it is made only of path characters and contains `/` or ends
//! in `.rs`, `.md`, `.toml` or `.sql`; absolute paths, URLs, placeholders (`<adapter>`, `*`)
//! and `target/` (build output) are not checked. An inline path exists when it exists from
//! the repository root or from one of the workspace members' directories (the documents say
//! `src/azure` for the core's).

use std::path::{Path, PathBuf};

use super::Violation;

/// Every path in `text` (the document `doc`) that exists neither from the root nor from one
/// of `bases`; `exists` answers for a path relative to the repository root.
pub(super) fn check(
    doc: &Path,
    text: &str,
    bases: &[PathBuf],
    exists: impl Fn(&Path) -> bool,
) -> Vec<Violation> {
    let mut found = Vec::new();
    for (line, path) in inline_paths(text) {
        let candidates =
            std::iter::once(PathBuf::from(&path)).chain(bases.iter().map(|base| base.join(&path)));
        if !candidates.into_iter().any(|p| exists(&p)) {
            found.push(Violation::new(
                doc,
                line,
                format!("`{path}` does not exist; name the path that holds it now, or drop it"),
            ));
        }
    }
    for (line, path) in code_map_paths(text) {
        if !exists(Path::new(&path)) {
            found.push(Violation::new(
                doc,
                line,
                format!("the code map names `{path}`, which does not exist; update the map"),
            ));
        }
    }
    found
}

/// Whether `span` is a repository path worth checking.
fn is_repo_path(span: &str) -> bool {
    let path_chars = span
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    let looks_like_path = span.contains('/')
        || [".rs", ".md", ".toml", ".sql"]
            .iter()
            .any(|ext| span.ends_with(ext));
    path_chars
        && looks_like_path
        && !span.starts_with('/')
        && !span.starts_with('-')
        && !span.starts_with("target/")
        && span.chars().any(|c| c.is_ascii_alphabetic())
}

/// Paths in inline code spans and link targets outside fenced blocks, with their lines.
fn inline_paths(text: &str) -> Vec<(usize, String)> {
    let mut paths = Vec::new();
    let mut in_fence = false;
    let mut code: Option<(usize, String)> = None;
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        // Link targets: `](target)` or `](target#anchor)`.
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let target = &rest[..rest.find(')').unwrap_or(rest.len())];
            let target = target.split('#').next().unwrap_or_default();
            if !target.contains("://") && !target.starts_with("mailto:") && is_repo_path(target) {
                paths.push((index + 1, target.to_string()));
            }
        }
        // Code spans may continue on the next line, as Markdown allows.
        for c in line.chars().chain(std::iter::once('\n')) {
            match (&mut code, c) {
                (None, '`') => code = Some((index + 1, String::new())),
                (Some((start, span)), '`') => {
                    if is_repo_path(span) {
                        paths.push((*start, span.clone()));
                    }
                    code = None;
                }
                (Some((_, span)), c) => span.push(c),
                (None, _) => {}
            }
        }
    }
    paths
}

/// The entries of every ```` ```text ```` code map, as full paths, with their lines.
fn code_map_paths(text: &str) -> Vec<(usize, String)> {
    let mut paths = Vec::new();
    let mut in_map = false;
    let mut in_other_fence = false;
    // The directories above the current entry: (indentation, path).
    let mut parents: Vec<(usize, String)> = Vec::new();
    // Lines indented to the previous entry's description continue that description.
    let mut description_column = usize::MAX;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            if in_map || in_other_fence {
                (in_map, in_other_fence) = (false, false);
            } else if info.trim() == "text" {
                in_map = true;
                parents.clear();
                description_column = usize::MAX;
            } else {
                in_other_fence = true;
            }
            continue;
        }
        if !in_map || trimmed.is_empty() {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if indent >= description_column {
            continue;
        }
        let entry = trimmed.split_whitespace().next().unwrap_or_default();
        description_column = trimmed
            .find(char::is_whitespace)
            .and_then(|end| {
                let after = &trimmed[end..];
                let gap = after.len() - after.trim_start().len();
                (!after.trim().is_empty()).then_some(indent + end + gap)
            })
            .unwrap_or(usize::MAX);
        while parents.last().is_some_and(|(i, _)| *i >= indent) {
            parents.pop();
        }
        if !is_repo_path(entry) {
            continue;
        }
        let full = match parents.last() {
            Some((_, parent)) => format!("{parent}{entry}"),
            None => entry.to_string(),
        };
        if entry.ends_with('/') {
            parents.push((indent, full.clone()));
        }
        paths.push((index + 1, full));
    }
    paths
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::{check, code_map_paths, inline_paths, is_repo_path};

    #[test]
    fn what_counts_as_a_path() {
        fn check_span(span: &str, expected: bool) {
            assert_eq!(is_repo_path(span), expected, "{span:?}");
        }
        check_span("src/lib.rs", true);
        check_span("Cargo.toml", true);
        check_span("crates/cloud-pg-auth/", true);
        check_span("bootstrap.sql", true);
        check_span(".ci/run", true);
        check_span("cargo xtask test", false);
        check_span("/var/tmp/tools", false);
        check_span("tests/<adapter>.rs", false);
        check_span("target/xtask/demo.json", false);
        check_span("sqlx::PgPool", false);
        check_span("-D", false);
        check_span("28/", false);
        check_span("README", false);
    }

    #[test]
    fn inline_spans_and_links() {
        fn check_text(text: &str, expected: &[(usize, &str)]) {
            let got = inline_paths(text);
            let got: Vec<(usize, &str)> = got.iter().map(|(l, p)| (*l, p.as_str())).collect();
            assert_eq!(got, expected, "{text:?}");
        }
        check_text(
            "see `src/lib.rs` and `Cargo.toml`",
            &[(1, "src/lib.rs"), (1, "Cargo.toml")],
        );
        check_text(
            "a\n[guide](docs/guide.md#setup) and [site](https://x.org/a.md)",
            &[(2, "docs/guide.md")],
        );
        check_text(
            "a span `cargo\nupdate` over lines, then `b/c`",
            &[(2, "b/c")],
        );
        check_text("```sh\ncat `src/x.rs`\n```\n`y/z`", &[(4, "y/z")]);
        check_text("no code here", &[]);
    }

    #[test]
    fn code_map_entries_join_their_parents() {
        let map = "\
```text
crates/
  core/                 the core
    src/lib.rs          the root; a long description
                        continued/here.rs on the next line
    src/gone.rs         removed
  cli/                  the tool
examples/<adapter>/     placeholders are skipped
xtask/                  automation
```
";
        let got = code_map_paths(map);
        let got: Vec<(usize, &str)> = got.iter().map(|(l, p)| (*l, p.as_str())).collect();
        assert_eq!(
            got,
            [
                (2, "crates/"),
                (3, "crates/core/"),
                (4, "crates/core/src/lib.rs"),
                (6, "crates/core/src/gone.rs"),
                (7, "crates/cli/"),
                (9, "xtask/"),
            ]
        );
    }

    #[test]
    fn missing_paths_are_reported_with_their_lines() {
        let existing = [
            "crates/",
            "crates/core/",
            "crates/core/src/lib.rs",
            "crates/core/src/azure",
            "README.md",
        ];
        let exists = |p: &Path| existing.iter().any(|e| Path::new(e) == p);
        let text = "\
`README.md`, `src/azure` (in the core), `docs/gone.md`
```text
crates/
  core/
    src/lib.rs
    src/old.rs
```
";
        let bases = [PathBuf::from("crates/core")];
        let found: Vec<(usize, String)> = check(Path::new("DOC.md"), text, &bases, exists)
            .into_iter()
            .map(|v| {
                (
                    v.line,
                    v.message.split('`').nth(1).unwrap_or_default().to_string(),
                )
            })
            .collect();
        assert_eq!(
            found,
            [
                (1, "docs/gone.md".to_string()),
                (6, "crates/core/src/old.rs".to_string())
            ]
        );
    }
}
