//! Checking and showing the names that reach the SQL: no hidden characters, at most 63
//! bytes.

/// PostgreSQL truncates longer identifiers (NAMEDATALEN - 1), which would create a role
/// whose name no token matches.
pub(super) const MAX_IDENT_BYTES: usize = 63;

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
pub(super) fn shown(name: &str) -> String {
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
pub(super) fn check_name(flag: &str, what: &str, name: &str) -> Result<(), String> {
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
