//! User name checks: the warning for a GUID given as the user, and the error when none is known.

use crate::error::ConfigError;
use crate::token::TokenDetails;

/// When `user` looks like a GUID and is the token's client id (`appid`) or object id (`oid`),
/// a warning: Azure Database for PostgreSQL expects the identity's display name as the role.
#[must_use]
pub fn guid_username_warning(user: &str, details: &TokenDetails) -> Option<String> {
    if !is_guid(user) {
        return None;
    }
    if !details.ids.iter().any(|id| id.eq_ignore_ascii_case(user)) {
        return None;
    }
    let hint = match &details.username {
        Some(name) => format!(" (the token names {name:?})"),
        None => String::new(),
    };
    Some(format!(
        "PGUSER {user} is the client or object id of the token's identity, but azure database \
         for postgresql expects the identity's display name as the user name{hint}; set PGUSER \
         to the name the role was created with (pgaadauth_create_principal)"
    ))
}

/// The error to give when no user name was set and none could be derived from the token.
#[must_use]
pub fn username_required_error(details: &TokenDetails) -> ConfigError {
    let who = match details.ids.first() {
        Some(id) => format!(" (client id {id})"),
        None => String::new(),
    };
    ConfigError::new(
        "PGUSER",
        format!(
            "the token names no user for this identity{who}; set PGUSER to the identity's \
             display name in entra (the role name given to pgaadauth_create_principal)"
        ),
    )
}

/// Whether `s` is shaped like `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex digits): an Entra
/// object id, client id or tenant id.
#[must_use]
pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}
