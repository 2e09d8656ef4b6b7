//! The conformance scenarios against `cloud-pg-auth-sqlx` over sqlx 0.9 (the crate root).

cloud_pg_auth_conformance::conformance_tests!(cloud_pg_auth_conformance::adapters::Sqlx);
