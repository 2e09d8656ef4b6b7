//! Database user names of Google principals.

/// The suffix a service account's email carries and its database user name does not.
pub const SERVICE_ACCOUNT_SUFFIX: &str = ".gserviceaccount.com";

/// The longest PostgreSQL name (`NAMEDATALEN - 1` bytes). Cloud SQL and AlloyDB cut IAM
/// user names to it, and so does PostgreSQL with the user name of a startup packet.
pub const MAX_USERNAME_LEN: usize = 63;

/// The database user name of a Google principal: a service account's email without
/// `.gserviceaccount.com` (`app@project.iam.gserviceaccount.com` → `app@project.iam`), a
/// user's email as it is; either cut to [`MAX_USERNAME_LEN`] bytes. `None` for something
/// that is not an email address.
#[must_use]
pub fn username_from_email(email: &str) -> Option<String> {
    let email = email.trim();
    let (local, domain) = email.split_once('@')?;
    if local.is_empty() || domain.is_empty() || domain.contains('@') {
        return None;
    }
    if email.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return None;
    }
    let name = strip_service_account_suffix(email).unwrap_or(email);
    if name.ends_with('@') {
        return None;
    }
    Some(truncate(name, MAX_USERNAME_LEN).to_string())
}

/// `name` without a trailing [`SERVICE_ACCOUNT_SUFFIX`] (any case), or `None` when it does
/// not end with it. Settings and `pgauth sql create-role` use it too, to refuse a user name
/// that keeps the suffix.
#[must_use]
pub fn strip_service_account_suffix(name: &str) -> Option<&str> {
    let cut = name.len().checked_sub(SERVICE_ACCOUNT_SUFFIX.len())?;
    (name.is_char_boundary(cut) && name[cut..].eq_ignore_ascii_case(SERVICE_ACCOUNT_SUFFIX))
        .then(|| &name[..cut])
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
