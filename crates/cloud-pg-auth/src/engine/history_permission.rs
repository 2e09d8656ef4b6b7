//! Migration runs refused by the server (SQLSTATE 42501) because another role owns the history:
//! who owns it, who is logged in and what to do, said the same way by every runner.

use std::fmt;

use crate::BoxError;

/// SQLSTATE `insufficient_privilege`: `permission denied for table ...`, `must be owner of
/// table ...`, `permission denied for schema ...`.
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";

/// Finds who owns a migration history table and who is logged in. Bind the table's name as
/// the runner writes it (`$1`, text; resolved with the search path, as the runner's own
/// statements are). One row when the table exists: `owner` (`pg_tables.tableowner`),
/// `login` (`current_user`) and `can_use` (whether `login` may read and add to the table);
/// none otherwise.
pub const HISTORY_OWNER_QUERY: &str = "SELECT t.tableowner::text AS owner, \
     current_user::text AS login, \
     has_table_privilege(c.oid, 'SELECT') AND has_table_privilege(c.oid, 'INSERT') AS can_use \
     FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_catalog.pg_tables t ON t.schemaname = n.nspname AND t.tablename = c.relname \
     WHERE c.oid = to_regclass($1)";

/// What [`HISTORY_OWNER_QUERY`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryOwner {
    /// The role that owns the history table.
    pub owner: String,
    /// The role logged in (`current_user`).
    pub user: String,
    /// Whether `user` may read and add to the history table.
    pub can_use: bool,
}

impl HistoryOwner {
    /// Whether a refused run is explained by the history belonging to another role: it does,
    /// and the role logged in is not that one.
    #[must_use]
    pub fn owned_by_another_role(&self) -> bool {
        self.owner != self.user
    }
}

/// The message for a run refused because `table`, the migration history, belongs to `owner`
/// while migrations logged in as `user`: migrate as the owner, or grant `user` the rights.
/// Driver-neutral: every runner (the core's, sqlx's, diesel's) builds its message here.
#[must_use]
pub fn history_permission_message(table: &str, owner: &str, user: &str) -> String {
    let (q_owner, q_user) = (quote_ident(owner), quote_ident(user));
    format!(
        "permission denied running migrations as role {user:?}: the migration history \
         {table} belongs to role {owner:?}; migrate as {owner:?} (PGAUTH_MIGRATION_USER={owner} \
         for the migration engine, with PGAUTH_MIGRATION_AZURE_CLIENT_ID set to that role's \
         identity on azure), or let {user:?} migrate: as {owner:?} run GRANT {q_owner} TO \
         {q_user} (all of its rights), or at least GRANT SELECT, INSERT, UPDATE ON {table} TO \
         {q_user} plus rights on the tables the migrations change"
    )
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A migration run the server refused (SQLSTATE 42501) while the history table belongs to
/// another role than the one logged in. The message says both roles and the fix (see
/// [`history_permission_message`]); the driver's error stays as the source.
#[derive(thiserror::Error)]
#[error("{}", history_permission_message(table, owner, user))]
pub struct HistoryPermissionError {
    table: String,
    owner: String,
    user: String,
    #[source]
    source: BoxError,
}

impl HistoryPermissionError {
    /// The refusal of a run over `table`, owned by `owner`, as `user`; `source` is the
    /// driver's error.
    pub fn new(
        table: impl Into<String>,
        owner: impl Into<String>,
        user: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Self {
            table: table.into(),
            owner: owner.into(),
            user: user.into(),
            source: source.into(),
        }
    }

    /// The history table.
    #[must_use]
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The role that owns it.
    #[must_use]
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The role migrations logged in as.
    #[must_use]
    pub fn user(&self) -> &str {
        &self.user
    }
}

impl fmt::Debug for HistoryPermissionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistoryPermissionError")
            .field("table", &self.table)
            .field("owner", &self.owner)
            .field("user", &self.user)
            .field("source", &self.source)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_both_roles_the_table_and_the_fix() {
        let text = history_permission_message("_pgauth_migrations", "app_owner", "app");
        for part in [
            "role \"app\"",
            "_pgauth_migrations belongs to role \"app_owner\"",
            "PGAUTH_MIGRATION_USER=app_owner",
            "GRANT \"app_owner\" TO \"app\"",
            "GRANT SELECT, INSERT, UPDATE ON _pgauth_migrations TO \"app\"",
        ] {
            assert!(text.contains(part), "{part:?} missing from {text}");
        }
        assert!(text.starts_with("permission denied"), "{text}");
        // Identifiers that need quoting are quoted for SQL.
        let text = history_permission_message("t", "Owner\"s", "u");
        assert!(text.contains("GRANT \"Owner\"\"s\" TO \"u\""), "{text}");
        let error = HistoryPermissionError::new("t", "a", "b", "permission denied for table t");
        assert_eq!(
            crate::engine::chain_text(&error),
            format!(
                "{}: permission denied for table t",
                history_permission_message("t", "a", "b")
            )
        );
        assert_eq!(
            (error.table(), error.owner(), error.user()),
            ("t", "a", "b")
        );
        let same = HistoryOwner {
            owner: "a".into(),
            user: "a".into(),
            can_use: true,
        };
        assert!(!same.owned_by_another_role());
    }
}
