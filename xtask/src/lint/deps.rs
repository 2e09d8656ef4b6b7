//! No dependency is declared but not used: every `[workspace.dependencies]` entry is used by
//! a member, and every entry of a member's `[dependencies]`, `[dev-dependencies]` and
//! `[build-dependencies]` (also under `[target.'cfg(..)'.*]`) appears in that member's code
//! as a path (`name::`), `use name` or `extern crate name`, the name being the entry's key
//! with `-` as `_` (a renamed entry, `x = { package = "y" }`, is used as `x`).
//!
//! Where a kind of dependency may be used: normal ones in `src/`, `build.rs` and `README.md`
//! (crate docs, whose examples are doctests); dev ones also in `tests/`, `examples/` and
//! `benches/`; build ones in `build.rs`. A normal dependency used only by tests belongs in
//! `[dev-dependencies]`.
//!
//! The manifests are read line by line (a full TOML parser would be one more dependency);
//! inline tables are one line in TOML, and multi-line arrays are skipped by bracket depth.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{Violation, walk};

/// Which table a dependency is declared in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Workspace,
    Normal,
    Dev,
    Build,
}

/// One dependency entry of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Dep {
    pub(super) kind: Kind,
    /// The entry's key: the name the code uses (with `-` for `_`).
    pub(super) key: String,
    /// `workspace = true`: the entry inherits `[workspace.dependencies]`.
    pub(super) workspace: bool,
    pub(super) line: usize,
}

/// The kind of the dependency table a section header opens, and the key when the header
/// names one entry (`[dependencies.serde]`).
fn section(header: &str) -> Option<(Kind, Option<String>)> {
    let inner = header.trim().strip_prefix('[')?.strip_suffix(']')?.trim();
    if let Some(rest) = inner.strip_prefix("workspace.dependencies") {
        let key = rest.strip_prefix('.').map(unquote);
        return (rest.is_empty() || key.is_some()).then_some((Kind::Workspace, key));
    }
    // `target.'cfg(unix)'.dependencies`: the table's kind is what follows the target.
    let inner = match inner.strip_prefix("target.") {
        Some(rest) => {
            let quoted = rest.starts_with('\'') || rest.starts_with('"');
            let end = if quoted {
                rest[1..].find(&rest[..1])? + 2
            } else {
                rest.find('.')?
            };
            rest[end..].strip_prefix('.')?
        }
        None => inner,
    };
    let (table, key) = match inner.split_once('.') {
        Some((table, key)) => (table, Some(unquote(key))),
        None => (inner, None),
    };
    let kind = match table {
        "dependencies" => Kind::Normal,
        "dev-dependencies" => Kind::Dev,
        "build-dependencies" => Kind::Build,
        _ => return None,
    };
    Some((kind, key))
}

fn unquote(key: &str) -> String {
    key.trim().trim_matches('"').trim_matches('\'').to_string()
}

/// `[` minus `]` outside string literals.
fn depth_change(text: &str) -> i64 {
    let (mut depth, mut quote) = (0, None);
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            (None, '#') => break,
            _ => {}
        }
    }
    depth
}

/// Every dependency entry of a manifest, in order.
pub(super) fn dependencies(manifest: &str) -> Vec<Dep> {
    let mut deps: Vec<Dep> = Vec::new();
    let mut current: Option<Kind> = None;
    // Set while inside `[dependencies.name]`: its keys are the entry's fields.
    let mut table_entry: Option<usize> = None;
    let mut depth = 0;
    for (index, raw) in manifest.lines().enumerate() {
        let line = raw.trim();
        if depth > 0 {
            depth += depth_change(line);
            continue;
        }
        if line.starts_with('[') {
            table_entry = None;
            current = None;
            if let Some((kind, key)) = section(line) {
                current = Some(kind);
                if let Some(key) = key {
                    deps.push(Dep {
                        kind,
                        key,
                        workspace: false,
                        line: index + 1,
                    });
                    table_entry = Some(deps.len() - 1);
                }
            }
            continue;
        }
        let Some(kind) = current else { continue };
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if line.starts_with('#') {
            continue;
        }
        depth += depth_change(value);
        let key = key.trim();
        if let Some(entry) = table_entry {
            if key == "workspace" && value.trim() == "true" {
                deps[entry].workspace = true;
            }
            continue;
        }
        let (name, field) = match key.split_once('.') {
            Some((name, field)) => (name, Some(field.trim())),
            None => (key, None),
        };
        let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        let workspace = match field {
            Some("workspace") => compact == "true",
            _ => compact.contains("workspace=true"),
        };
        deps.push(Dep {
            kind,
            key: unquote(name),
            workspace,
            line: index + 1,
        });
    }
    deps
}

/// The `members` of `[workspace]`.
pub(super) fn workspace_members(manifest: &str) -> Vec<String> {
    let Some(start) = manifest.find("members") else {
        return Vec::new();
    };
    let rest = &manifest[start..];
    let Some(open) = rest.find('[') else {
        return Vec::new();
    };
    let Some(close) = rest.find(']') else {
        return Vec::new();
    };
    rest[open + 1..close]
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

/// Whether `code` uses the crate `name` (already with `_` for `-`).
pub(super) fn uses_crate(code: &str, name: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(at) = code[from..].find(name) {
        let start = from + at;
        let end = start + name.len();
        from = end;
        let before = code[..start].chars().next_back();
        if before.is_some_and(is_ident) {
            continue;
        }
        let after = &code[end..];
        if after.starts_with("::") {
            return true;
        }
        if after.chars().next().is_some_and(is_ident) {
            continue;
        }
        let head = code[..start].trim_end();
        if head.ends_with("use") || head.ends_with("extern crate") {
            return true;
        }
    }
    false
}

/// The texts where a member's dependencies of each kind may be used.
#[derive(Debug, Default)]
pub(super) struct MemberCode {
    /// `src/`, `README.md`.
    pub(super) library: String,
    /// `tests/`, `examples/`, `benches/`.
    pub(super) tests: String,
    /// `build.rs`.
    pub(super) build: String,
}

/// The unused entries of one member's manifest (at `manifest_path`).
pub(super) fn unused_in_member(
    manifest_path: &Path,
    deps: &[Dep],
    code: &MemberCode,
) -> Vec<Violation> {
    let mut found = Vec::new();
    for dep in deps {
        let name = dep.key.replace('-', "_");
        let (used, place) = match dep.kind {
            Kind::Workspace => continue,
            Kind::Normal => (
                uses_crate(&code.library, &name) || uses_crate(&code.build, &name),
                "src/, build.rs or README.md",
            ),
            Kind::Dev => (
                [&code.library, &code.tests, &code.build]
                    .iter()
                    .any(|c| uses_crate(c, &name)),
                "the crate's sources, tests, examples or benches",
            ),
            Kind::Build => (uses_crate(&code.build, &name), "build.rs"),
        };
        if used {
            continue;
        }
        let message = if dep.kind == Kind::Normal && uses_crate(&code.tests, &name) {
            format!(
                "`{}` is a normal dependency used only by tests, examples or benches; move it to [dev-dependencies]",
                dep.key
            )
        } else {
            format!(
                "`{}` is declared but `{name}` is not used in {place}; remove the entry",
                dep.key
            )
        };
        found.push(Violation::new(manifest_path, dep.line, message));
    }
    found
}

/// The `[workspace.dependencies]` entries no member inherits.
pub(super) fn unused_in_workspace(
    manifest_path: &Path,
    workspace: &[Dep],
    members: &[Vec<Dep>],
) -> Vec<Violation> {
    let inherited: BTreeSet<&str> = members
        .iter()
        .flatten()
        .filter(|d| d.workspace)
        .map(|d| d.key.as_str())
        .collect();
    workspace
        .iter()
        .filter(|d| d.kind == Kind::Workspace && !inherited.contains(d.key.as_str()))
        .map(|d| {
            Violation::new(
                manifest_path,
                d.line,
                format!(
                    "`{}` is in [workspace.dependencies] but no member uses it (`{}.workspace = true`); remove the entry",
                    d.key, d.key
                ),
            )
        })
        .collect()
}

/// The check on the repository at `root`.
pub(super) fn check_repo(root: &Path) -> Result<Vec<Violation>> {
    let read = |path: &Path| {
        std::fs::read_to_string(root.join(path))
            .with_context(|| format!("could not read {}", path.display()))
    };
    let root_manifest = read(Path::new("Cargo.toml"))?;
    let mut found = Vec::new();
    let mut member_deps = Vec::new();
    for member in workspace_members(&root_manifest) {
        let dir = PathBuf::from(&member);
        let manifest_path = dir.join("Cargo.toml");
        let deps = dependencies(&read(&manifest_path)?);
        let code = member_code(root, &dir)?;
        found.extend(unused_in_member(&manifest_path, &deps, &code));
        member_deps.push(deps);
    }
    let workspace = dependencies(&root_manifest);
    found.extend(unused_in_workspace(
        Path::new("Cargo.toml"),
        &workspace,
        &member_deps,
    ));
    Ok(found)
}

/// A member's code, by where it may use which kind of dependency.
fn member_code(root: &Path, dir: &Path) -> Result<MemberCode> {
    let mut code = MemberCode::default();
    let append = |into: &mut String, path: &Path| -> Result<()> {
        let text = std::fs::read_to_string(root.join(path))
            .with_context(|| format!("could not read {}", path.display()))?;
        into.push_str(&text);
        into.push('\n');
        Ok(())
    };
    for (sub, tests) in [
        ("src", false),
        ("tests", true),
        ("examples", true),
        ("benches", true),
    ] {
        let mut files = Vec::new();
        walk(root, &dir.join(sub), &mut |p| {
            if p.extension().is_some_and(|e| e == "rs") {
                files.push(p.to_path_buf());
            }
        })?;
        for file in files {
            append(
                if tests {
                    &mut code.tests
                } else {
                    &mut code.library
                },
                &file,
            )?;
        }
    }
    for (file, into) in [
        ("README.md", &mut code.library),
        ("build.rs", &mut code.build),
    ] {
        let path = dir.join(file);
        if root.join(&path).is_file() {
            append(into, &path)?;
        }
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{
        Dep, Kind, MemberCode, dependencies, unused_in_member, unused_in_workspace, uses_crate,
        workspace_members,
    };

    fn dep(kind: Kind, key: &str, workspace: bool, line: usize) -> Dep {
        Dep {
            kind,
            key: key.to_string(),
            workspace,
            line,
        }
    }

    #[test]
    fn manifest_entries() {
        fn check(manifest: &str, expected: &[Dep]) {
            assert_eq!(dependencies(manifest), expected, "{manifest}");
        }
        check(
            "[package]\nname = \"a\"\n[dependencies]\nserde.workspace = true\ntokio = { workspace = true, features = [\"rt\"] }\nlog = \"0.4\"\n",
            &[
                dep(Kind::Normal, "serde", true, 4),
                dep(Kind::Normal, "tokio", true, 5),
                dep(Kind::Normal, "log", false, 6),
            ],
        );
        check(
            "[dev-dependencies]\nx = { version = \"1\", features = [\n  \"a = b\",\n] }\ny = \"1\"\n",
            &[dep(Kind::Dev, "x", false, 2), dep(Kind::Dev, "y", false, 5)],
        );
        check(
            "[target.'cfg(unix)'.dependencies]\nnix.workspace = true\n[build-dependencies]\ncc = \"1\"\n",
            &[
                dep(Kind::Normal, "nix", true, 2),
                dep(Kind::Build, "cc", false, 4),
            ],
        );
        check(
            "[dependencies.foo]\nworkspace = true\nfeatures = [\"x\"]\n[features]\nfoo = []\n",
            &[dep(Kind::Normal, "foo", true, 1)],
        );
        check(
            "[workspace.dependencies]\n# a comment = not an entry\nsqlx09 = { package = \"sqlx\", version = \"0.9\" }\n[workspace.lints.rust]\nunsafe_code = \"forbid\"\n",
            &[dep(Kind::Workspace, "sqlx09", false, 3)],
        );
        check("[lints]\nworkspace = true\n", &[]);
    }

    #[test]
    fn members_of_the_workspace() {
        assert_eq!(
            workspace_members("[workspace]\nmembers = [\n  \"crates/a\",\n  \"xtask\",\n]\n"),
            ["crates/a", "xtask"]
        );
    }

    #[test]
    fn crate_uses() {
        fn check(code: &str, name: &str, expected: bool) {
            assert_eq!(uses_crate(code, name), expected, "{name} in {code:?}");
        }
        check("use serde::Deserialize;", "serde", true);
        check("#[tokio::main]", "tokio", true);
        check("let x = ::url::Url::parse(s);", "url", true);
        check("use tracing_subscriber;", "tracing_subscriber", true);
        check("extern crate alloc;", "alloc", true);
        check("use tracing_subscriber::fmt;", "tracing", false);
        check(
            "use cloud_pg_auth_testkit::Emulator;",
            "cloud_pg_auth",
            false,
        );
        check("// we log in twice", "log", false);
        check("let url = s.url();", "url", false);
        check("my_serde::x()", "serde", false);
    }

    #[test]
    fn unused_member_entries() {
        let deps = [
            dep(Kind::Normal, "serde", true, 3),
            dep(Kind::Normal, "url", true, 4),
            dep(Kind::Normal, "sqlx09", true, 5),
            dep(Kind::Normal, "gone", false, 6),
            dep(Kind::Dev, "tokio-test", false, 8),
            dep(Kind::Dev, "tempfile", false, 9),
            dep(Kind::Build, "cc", false, 11),
        ];
        let code = MemberCode {
            library: "use serde::Serialize;\nuse sqlx09 as sqlx;\n".into(),
            tests: "url::form_urlencoded::parse(b);\ntokio_test::block_on(f);\n".into(),
            build: String::new(),
        };
        let found: Vec<(usize, bool)> = unused_in_member(Path::new("c/Cargo.toml"), &deps, &code)
            .into_iter()
            .map(|v| (v.line, v.message.contains("[dev-dependencies]")))
            .collect();
        assert_eq!(found, [(4, true), (6, false), (9, false), (11, false)]);
    }

    #[test]
    fn unused_workspace_entries() {
        let workspace = [
            dep(Kind::Workspace, "serde", false, 2),
            dep(Kind::Workspace, "libc", false, 3),
            dep(Kind::Workspace, "anyhow", false, 4),
        ];
        // A member that names `anyhow` with its own version does not use the workspace's.
        let members = [vec![
            dep(Kind::Normal, "serde", true, 1),
            dep(Kind::Normal, "anyhow", false, 2),
        ]];
        let found: Vec<usize> = unused_in_workspace(Path::new("Cargo.toml"), &workspace, &members)
            .into_iter()
            .map(|v| v.line)
            .collect();
        assert_eq!(found, [3, 4]);
    }
}
