//! `cargo xtask lint-repo`: checks on the repository's text that no compiler or linter makes.
//! `cargo xtask test` runs them first. Each check is a pure function over file contents (unit
//! tests feed it fixtures); this module only reads the files and prints what they report.
//!
//! - `attrs`: no `#[ignore]` and no `#[should_panic]` in a test;
//! - `module_docs`: every Rust module starts with a `//!` line;
//! - `doc_paths`: every repository path named in ARCHITECTURE.md and CONTRIBUTING.md exists;
//! - `deps`: no dependency declared but not used.

mod attrs;
mod deps;
mod doc_paths;
mod module_docs;

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::root;

/// One problem, at a line of a file (1-based; relative to the repository root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    pub(crate) file: PathBuf,
    pub(crate) line: usize,
    pub(crate) message: String,
}

impl Violation {
    pub(crate) fn new(file: impl Into<PathBuf>, line: usize, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
    }
}

/// The directories whose Rust files are checked; `target` directories are skipped.
const SOURCE_DIRS: [&str; 4] = ["crates", "tests", "examples", "xtask"];

/// The documents whose paths must exist.
const DOCS: [&str; 2] = ["ARCHITECTURE.md", "CONTRIBUTING.md"];

/// Runs every check on the repository; fails naming each violation as `file:line: message`.
pub(crate) fn lint_repo() -> Result<()> {
    let root = root();
    let mut violations = Vec::new();

    let rust = read_files(&root, &rust_files(&root)?)?;
    violations.extend(attrs::check(&rust));
    violations.extend(module_docs::check(&rust));

    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))
        .context("could not read the workspace Cargo.toml")?;
    let members: Vec<PathBuf> = deps::workspace_members(&manifest)
        .into_iter()
        .map(PathBuf::from)
        .collect();
    for doc in DOCS {
        let text = std::fs::read_to_string(root.join(doc))
            .with_context(|| format!("could not read {doc}"))?;
        violations.extend(doc_paths::check(Path::new(doc), &text, &members, |path| {
            root.join(path).exists()
        }));
    }

    violations.extend(deps::check_repo(&root)?);

    if violations.is_empty() {
        eprintln!("xtask: lint-repo: no violations");
        return Ok(());
    }
    for violation in &violations {
        eprintln!("{violation}");
    }
    bail!(
        "lint-repo found {} violation(s), listed above as file:line: what to change",
        violations.len()
    )
}

/// A file's path relative to the repository root, and its text.
pub(crate) type Source = (PathBuf, String);

fn read_files(root: &Path, files: &[PathBuf]) -> Result<Vec<Source>> {
    files
        .iter()
        .map(|relative| {
            let text = std::fs::read_to_string(root.join(relative))
                .with_context(|| format!("could not read {}", relative.display()))?;
            Ok((relative.clone(), text))
        })
        .collect()
}

/// Every `.rs` file under `SOURCE_DIRS`, relative to `root`, sorted.
fn rust_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for dir in SOURCE_DIRS {
        walk(root, Path::new(dir), &mut |path| {
            if path.extension().is_some_and(|e| e == "rs") {
                files.push(path.to_path_buf());
            }
        })?;
    }
    files.sort();
    Ok(files)
}

/// Calls `visit` with every file under `root/dir` (paths relative to `root`), skipping
/// `target` and hidden directories.
pub(crate) fn walk(root: &Path, dir: &Path, visit: &mut dyn FnMut(&Path)) -> Result<()> {
    let full = root.join(dir);
    if !full.is_dir() {
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(&full)
        .with_context(|| format!("could not list {}", full.display()))?
        .flatten()
        .collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let relative = dir.join(&*name);
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if name != "target" && !name.starts_with('.') {
                walk(root, &relative, visit)?;
            }
        } else if kind.is_file() {
            visit(&relative);
        }
    }
    Ok(())
}
