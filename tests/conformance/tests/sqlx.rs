//! The conformance scenarios against `cloud-pg-auth-sqlx`.

cloud_pg_auth_conformance::conformance_tests!(cloud_pg_auth_conformance::adapters::Sqlx);
