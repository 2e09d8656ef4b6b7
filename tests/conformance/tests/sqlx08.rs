//! The conformance scenarios against `cloud-pg-auth-sqlx` over sqlx 0.8 (`v0_8`).

cloud_pg_auth_conformance::conformance_tests!(cloud_pg_auth_conformance::adapters::Sqlx08);
