//! The conformance scenarios against `cloud-pg-auth-bb8`.

cloud_pg_auth_conformance::conformance_tests!(cloud_pg_auth_conformance::adapters::Bb8);
