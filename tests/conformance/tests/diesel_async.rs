//! The conformance scenarios against `cloud-pg-auth-diesel-async`.

cloud_pg_auth_conformance::conformance_tests!(cloud_pg_auth_conformance::adapters::DieselAsync);
