//! Azure Database for PostgreSQL: `pgaadauth_create_principal*`, run as the Entra
//! administrator.

use std::fmt::Write as _;

use postgres_protocol::escape::escape_literal;

use crate::args::{CreateRole, PrincipalType};

/// Appends the statements that create `request.name` and map it to its Entra identity.
pub(super) fn create(sql: &mut String, request: &CreateRole) {
    let name = &request.name;
    sql.push_str(
        "-- Azure Database for PostgreSQL: run as the Microsoft Entra administrator,\n\
         -- connected to the database postgres (psql -v ON_ERROR_STOP=1 stops at the first error).\n",
    );
    sql.push_str("BEGIN;\n");
    match &request.object_id {
        None => {
            let _ = writeln!(
                sql,
                "-- Looks {} up in the tenant by display name (managed identity, app) or UPN (user).",
                escape_literal(name)
            );
            let _ = writeln!(
                sql,
                "SELECT * FROM pgaadauth_create_principal({}, false, false);",
                escape_literal(name)
            );
        }
        Some(oid) => {
            let kind = request.principal_type.unwrap_or(PrincipalType::Service);
            let _ = writeln!(
                sql,
                "SELECT * FROM pgaadauth_create_principal_with_oid({}, {}, {}, false, false);",
                escape_literal(name),
                escape_literal(&oid.to_ascii_lowercase()),
                escape_literal(kind.as_str())
            );
        }
    }
    sql.push_str("COMMIT;\n");
}
