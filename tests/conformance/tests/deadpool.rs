//! The conformance scenarios against `cloud-pg-auth-deadpool`.

cloud_pg_auth_conformance::conformance_tests!(cloud_pg_auth_conformance::adapters::Deadpool);
