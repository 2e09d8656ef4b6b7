//! No test is switched off or passes by panicking: `#[ignore]` and `#[should_panic]` (also
//! under `cfg_attr`) fail the run (CONTRIBUTING.md, "Rules the tests enforce").

use super::{Source, Violation};

/// The attributes refused, with what to do instead.
const REFUSED: [(&str, &str); 2] = [
    (
        "ignore",
        "#[ignore] switches a test off; make it pass, or delete it",
    ),
    (
        "should_panic",
        "#[should_panic] passes on any panic; assert on the error value instead",
    ),
];

/// Every refused attribute in `files`.
pub(super) fn check(files: &[Source]) -> Vec<Violation> {
    let mut found = Vec::new();
    for (path, text) in files {
        for (index, line) in text.lines().enumerate() {
            if let Some(message) = refused(line) {
                found.push(Violation::new(path, index + 1, message));
            }
        }
    }
    found
}

/// The message for `line` if it holds a refused attribute.
fn refused(line: &str) -> Option<&'static str> {
    let attr = line.trim_start().strip_prefix("#[")?;
    let name_end = attr
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(attr.len());
    let (name, rest) = attr.split_at(name_end);
    let names: Vec<&str> = if name == "cfg_attr" {
        // `cfg_attr(condition, attr, ...)`: the attributes follow the first top-level comma.
        let inner = rest.strip_prefix('(').unwrap_or(rest);
        top_level_items(inner)
            .into_iter()
            .skip(1)
            .map(|item| {
                let item = item.trim_start();
                let end = item
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(item.len());
                &item[..end]
            })
            .collect()
    } else {
        vec![name]
    };
    REFUSED
        .iter()
        .find(|(refused, _)| names.contains(refused))
        .map(|(_, message)| *message)
}

/// `text` split at commas outside brackets and string literals, up to the bracket that
/// closes the list.
fn top_level_items(text: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut in_string, mut escaped, mut start) = (0usize, false, false, 0);
    for (i, c) in text.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '(' | '[' => depth += 1,
            ')' | ']' if depth == 0 => {
                items.push(&text[start..i]);
                return items;
            }
            ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&text[start..]);
    items
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{check, refused};

    #[test]
    fn refused_attributes() {
        fn check_line(line: &str, expected: Option<&str>) {
            let got = refused(line).map(|m| m.split(' ').next().unwrap_or_default());
            assert_eq!(got, expected, "{line:?}");
        }
        check_line("#[ignore]", Some("#[ignore]"));
        check_line("    #[ignore = \"slow\"]", Some("#[ignore]"));
        check_line("#[should_panic(expected = \"x\")]", Some("#[should_panic]"));
        check_line("#[cfg_attr(miri, ignore)]", Some("#[ignore]"));
        check_line(
            "#[cfg_attr(not(unix), ignore = \"unix only\")]",
            Some("#[ignore]"),
        );
        check_line("#[test]", None);
        check_line("#[ignored_by_nothing]", None);
        check_line("#[cfg_attr(docsrs, doc(cfg(feature = \"ignore\")))]", None);
        check_line("// #[ignore] in a comment", None);
        check_line("let s = \"#[ignore]\";", None);
        check_line("#[cfg(ignore)]", None);
    }

    #[test]
    fn violations_name_file_and_line() {
        let files = vec![(
            PathBuf::from("crates/a/tests/t.rs"),
            "//! t\n#[test]\n#[ignore]\nfn t() {}\n".to_string(),
        )];
        let found = check(&files);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].file, PathBuf::from("crates/a/tests/t.rs"));
        assert_eq!(found[0].line, 3);
    }
}
