//! Google Cloud SQL and AlloyDB settings: the method's names, its TLS rules, the derived user
//! and table-driven bad inputs.

use std::sync::Arc;

use async_trait::async_trait;

use super::tests::{check, env};
use super::*;
use crate::gcp::GcpProduct;
use crate::{AccessToken, SourceInfo, TokenError};

const IP: (&str, &str) = ("PGHOST", "10.20.0.3");

/// Settings pairs, the setting the error names, and a fragment of its message.
type BadCase<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
const GCP: (&str, &str) = ("PGAUTH_METHOD", "gcp");

#[test]
fn gcp_is_a_token_method_that_auto_never_picks() {
    for name in ["gcp", "GCP", " google "] {
        assert_eq!(
            name.parse::<AuthMethod>().unwrap(),
            AuthMethod::Gcp,
            "{name}"
        );
    }
    assert_eq!(AuthMethod::Gcp.as_str(), "gcp");
    assert!(AuthMethod::Gcp.is_token());
    assert!(AuthMethod::Gcp.supports_migrations());
    assert_eq!(AuthMethod::Gcp.server_connection_limit(), None);
    // Without the method, a Google host (an address, or a *.sql.goog name) says nothing.
    for host in ["10.20.0.3", "abc.europe-west1.sql.goog"] {
        let s = Settings::from_url(&format!("postgres://{host}/app")).unwrap();
        let e = s.resolved_method().unwrap_err();
        assert!(e.message().contains("never gcp"), "{e}");
    }
}

#[test]
fn gcp_settings_derive_the_user_and_default_to_verify_full() {
    let s = Settings::from_env_vars(&env(&[IP, GCP])).unwrap();
    assert_eq!(s.resolved_method().unwrap(), AuthMethod::Gcp);
    assert_eq!(s.get_user(), None);
    assert_eq!(s.effective_ssl_mode().unwrap(), SslMode::VerifyFull);
    assert_eq!(s.get_gcp().get_product(), GcpProduct::CloudSql);
    assert_eq!(s.get_gcp().get_metadata_host(), "metadata.google.internal");

    let s = Settings::from_env_vars(&env(&[
        IP,
        GCP,
        ("PGAUTH_GCP_PRODUCT", "alloydb"),
        ("GCE_METADATA_HOST", "127.0.0.1:8080"),
        ("GOOGLE_APPLICATION_CREDENTIALS", "/keys/app.json"),
        ("PGUSER", "app@my-project.iam"),
    ]))
    .unwrap();
    assert_eq!(s.get_gcp().get_product(), GcpProduct::AlloyDb);
    assert_eq!(s.get_gcp().get_metadata_host(), "127.0.0.1:8080");
    assert_eq!(
        s.get_gcp().get_credentials_file(),
        Some(std::path::Path::new("/keys/app.json"))
    );
    // In code: the builder and getter.
    let s = Settings::default()
        .host("10.0.0.1")
        .method(AuthMethod::Gcp)
        .gcp(GcpOptions::default().product(GcpProduct::AlloyDb));
    s.validate().unwrap();
    assert_eq!(s.get_gcp().get_product(), GcpProduct::AlloyDb);
    for name in [
        "PGAUTH_GCP_PRODUCT",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GCE_METADATA_HOST",
        "PGAUTH_MIGRATION_PASSWORD",
    ] {
        assert!(ENV_VARS.contains(&name), "{name}");
    }
}

#[test]
fn verify_ca_is_accepted_for_gcp_only_with_a_ca_file() {
    // Cloud SQL's per-instance certificates name no host: verify-ca with the instance's CA.
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("instance-ca.pem");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
    let ca = ca.display().to_string();
    let s = Settings::from_env_vars(&env(&[
        IP,
        GCP,
        ("PGSSLMODE", "verify-ca"),
        ("PGSSLROOTCERT", &ca),
    ]))
    .unwrap();
    assert_eq!(s.effective_ssl_mode().unwrap(), SslMode::VerifyCa);
    check(
        &[IP, GCP, ("PGSSLMODE", "verify-ca")],
        "PGSSLMODE",
        "Cloud SQL instance's server CA",
    );
    check(
        &[
            IP,
            GCP,
            ("PGSSLMODE", "verify-ca"),
            ("PGSSLROOTCERT", "system"),
        ],
        "PGSSLMODE",
        "verify-ca checks only the certificate chain",
    );
}

#[test]
fn bad_gcp_settings_name_what_to_change() {
    let cases: &[BadCase<'_>] = &[
        (
            &[
                IP,
                GCP,
                ("PGUSER", "app@my-project.iam.gserviceaccount.com"),
            ],
            "PGUSER",
            "set PGUSER=\"app@my-project.iam\"",
        ),
        (
            &[IP, GCP, ("PGUSER", "APP@P.IAM.GSERVICEACCOUNT.COM")],
            "PGUSER",
            "keeps .gserviceaccount.com",
        ),
        (
            &[IP, GCP, ("PGSSLMODE", "disable")],
            "PGSSLMODE",
            "in clear",
        ),
        (&[IP, GCP, ("PGSSLMODE", "prefer")], "PGSSLMODE", "in clear"),
        (
            &[IP, GCP, ("PGAUTH_GCP_PRODUCT", "spanner")],
            "PGAUTH_GCP_PRODUCT",
            "use cloudsql or alloydb",
        ),
        (
            &[IP, GCP, ("GCE_METADATA_HOST", "http://127.0.0.1:8080/")],
            "GCE_METADATA_HOST",
            "without http://",
        ),
        (
            &[
                IP,
                ("PGAUTH_METHOD", "azure"),
                ("PGAUTH_GCP_PRODUCT", "alloydb"),
            ],
            "PGAUTH_GCP_PRODUCT",
            "set PGAUTH_METHOD=gcp",
        ),
        (
            &[
                IP,
                ("PGPASSWORD", "pw"),
                ("PGUSER", "app"),
                ("PGAUTH_GCP_PRODUCT", "cloudsql"),
            ],
            "PGAUTH_GCP_PRODUCT",
            "resolves to password",
        ),
        (
            &[IP, GCP, ("PGAUTH_AZURE_CLOUD", "public")],
            "PGAUTH_AZURE_CLOUD",
            "PGAUTH_METHOD is gcp",
        ),
        (
            &[IP, GCP, ("PGAUTH_AWS_SIGNING_PORT", "5432")],
            "PGAUTH_AWS_SIGNING_PORT",
            "PGAUTH_METHOD is gcp",
        ),
        (
            &[IP, GCP, ("PGPASSWORD", "pw")],
            "PGPASSWORD",
            "PGAUTH_METHOD=gcp",
        ),
    ];
    for (pairs, setting, hint) in cases {
        check(pairs, setting, hint);
    }
}

/// A source that says it is Google's, as `GcpSource` does.
#[derive(Debug)]
struct GoogleLike;

#[async_trait]
impl TokenSource for GoogleLike {
    async fn fetch(&self) -> Result<AccessToken, TokenError> {
        Ok(AccessToken::new("ya29.x"))
    }

    fn info(&self) -> SourceInfo {
        SourceInfo::new("gcp")
    }
}

#[test]
fn a_google_source_given_in_code_makes_the_method_gcp() {
    let settings = Settings::from_env_vars(&env(&[IP])).unwrap();
    let source: Arc<dyn TokenSource> = Arc::new(GoogleLike);
    let resolved = settings.for_source(Some(source.as_ref()));
    assert_eq!(resolved.get_method(), AuthMethod::Gcp);
    // No PGUSER needed: the source's tokens name the user.
    resolved.validate().unwrap();
}
