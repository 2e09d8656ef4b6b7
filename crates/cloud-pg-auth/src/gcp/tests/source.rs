//! Unit tests of the source's offline parts: building it from each ADC choice, token
//! answers, error texts and kinds, expiry and user names. The flows against the emulator are
//! in the testkit's tests/gcp.rs.

use std::time::{Duration, SystemTime};

use serde_json::json;

use super::super::http::{Reply, describe, form, kind_of, parse_token};
use super::super::source::finish;
use super::{key_json, user_json};
use crate::error::{Error, TokenErrorKind};
use crate::gcp::{GcpOptions, GcpProduct, GcpSource};
use crate::source::TokenSource as _;

fn write(dir: &std::path::Path, name: &str, value: &serde_json::Value) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, value.to_string()).unwrap();
    path
}

fn config_error(result: Result<GcpSource, Error>) -> crate::ConfigError {
    match result {
        Err(Error::Config(e)) => e,
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn sources_build_from_each_adc_choice_without_network() {
    let dir = tempfile::tempdir().unwrap();
    let key = write(dir.path(), "sa.json", &key_json("http://127.0.0.1:9/token"));
    let source = GcpSource::new(&GcpOptions::default().credentials_file(&key), None).unwrap();
    let info = source.info();
    assert_eq!(info.get_method(), "gcp");
    assert_eq!(info.get_cloud(), Some("cloudsql"));
    assert_eq!(info.get_credential_kind(), Some("service-account-key"));
    assert_eq!(
        info.get_identity(),
        Some("app@proj.iam.gserviceaccount.com")
    );
    assert_eq!(info.get_endpoint(), Some("http://127.0.0.1:9/token"));

    let options = GcpOptions::default()
        .product(GcpProduct::AlloyDb)
        .metadata_host("127.0.0.1:9");
    let source = GcpSource::new(&options, Some("app@proj.iam")).unwrap();
    assert_eq!(source.product(), GcpProduct::AlloyDb);
    assert_eq!(
        source.scope(),
        "https://www.googleapis.com/auth/alloydb.login"
    );
    assert_eq!(source.info().get_credential_kind(), Some("metadata-server"));
    assert_eq!(source.info().get_endpoint(), Some("http://127.0.0.1:9"));

    // gcloud's user credentials: PGUSER names the user.
    let gcloud = write(
        dir.path(),
        "application_default_credentials.json",
        &user_json(),
    );
    let options = GcpOptions::default().gcloud_file(&gcloud);
    let source = GcpSource::new(&options, Some("jane@example.com")).unwrap();
    assert_eq!(
        source.info().get_credential_kind(),
        Some("user-credentials")
    );
    assert_eq!(source.info().get_identity(), Some("jane@example.com"));
    let printed = format!("{source:?} {source:#?}");
    assert!(!printed.contains("refresh-token-value"), "{printed}");
    assert!(!printed.contains("client-secret-value"), "{printed}");
}

#[test]
fn sources_refuse_what_they_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let user = write(dir.path(), "user.json", &user_json());
    for pguser in [None, Some(""), Some("  ")] {
        let e = config_error(GcpSource::new(
            &GcpOptions::default().credentials_file(&user),
            pguser,
        ));
        assert_eq!(e.setting(), "PGUSER");
        assert!(
            e.message().contains("user.json holds user credentials"),
            "{e}"
        );
        assert!(e.message().contains("set PGUSER"), "{e}");
    }

    let missing = dir.path().join("missing.json");
    let e = config_error(GcpSource::new(
        &GcpOptions::default().credentials_file(&missing),
        None,
    ));
    assert_eq!(e.setting(), "GOOGLE_APPLICATION_CREDENTIALS");
    assert!(e.message().contains("missing.json"), "{e}");

    // A broken gcloud file is named as the setting to fix.
    let gcloud = write(
        dir.path(),
        "application_default_credentials.json",
        &json!({"type": "external_account"}),
    );
    let e = config_error(GcpSource::new(
        &GcpOptions::default().gcloud_file(&gcloud),
        None,
    ));
    assert_eq!(e.setting(), gcloud.display().to_string());
    assert!(e.message().contains("has no \"audience\""), "{e}");

    let e = config_error(GcpSource::new(
        &GcpOptions::default().metadata_host("http://127.0.0.1:9"),
        None,
    ));
    assert_eq!(e.setting(), "GCE_METADATA_HOST");
}

fn check_parse(body: &str, expected: Result<(&str, u64), &str>) {
    let got = parse_token(body.as_bytes(), "the endpoint")
        .map(|t| (t.secret.expose().to_string(), t.expires_in.as_secs()));
    match expected {
        Ok((token, secs)) => assert_eq!(got, Ok((token.to_string(), secs)), "{body}"),
        Err(fragment) => {
            let e = got.expect_err(body);
            assert!(e.contains(fragment), "{body}: {e}");
        }
    }
}

#[test]
fn token_answers() {
    check_parse(
        r#"{"access_token":"ya29.a","expires_in":3599,"token_type":"Bearer"}"#,
        Ok(("ya29.a", 3599)),
    );
    check_parse(r#"{"access_token":"t","expires_in":"60"}"#, Ok(("t", 60)));
    check_parse(r#"{"access_token":"t"}"#, Err("no usable expires_in"));
    check_parse(r#"{"access_token":"t","expires_in":0}"#, Err("no usable"));
    check_parse(r#"{"access_token":"t","expires_in":-5}"#, Err("no usable"));
    check_parse(
        r#"{"access_token":"t","expires_in":"soon"}"#,
        Err("no usable"),
    );
    check_parse(r#"{"expires_in":60}"#, Err("no access_token"));
    check_parse(
        r#"{"access_token":"","expires_in":60}"#,
        Err("no access_token"),
    );
    check_parse("not json", Err("not json"));
}

#[test]
fn error_answers_are_described_on_one_line() {
    let check = |body: &str, expected: Option<&str>| {
        assert_eq!(describe(body.as_bytes()).as_deref(), expected, "{body}");
    };
    check(
        r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
        Some("Invalid JWT Signature. (invalid_grant)"),
    );
    check(r#"{"error":"invalid_scope"}"#, Some("invalid_scope"));
    check(
        r#"{"error":{"code":403,"message":"denied","status":"PERMISSION_DENIED"}}"#,
        Some("denied (PERMISSION_DENIED)"),
    );
    check("{}", None);
    check("", None);
    check(
        "Missing header\nMetadata-Flavor",
        Some("Missing header Metadata-Flavor"),
    );
    let long = "x".repeat(1000);
    assert_eq!(describe(long.as_bytes()).unwrap().len(), 300);
}

#[test]
fn statuses_sort_into_kinds() {
    for (status, kind) in [
        (400, TokenErrorKind::Rejected),
        (401, TokenErrorKind::Rejected),
        (403, TokenErrorKind::Rejected),
        (404, TokenErrorKind::Rejected),
        (408, TokenErrorKind::Transient),
        (429, TokenErrorKind::Throttled),
        (500, TokenErrorKind::Transient),
        (503, TokenErrorKind::Transient),
    ] {
        assert_eq!(kind_of(status), kind, "{status}");
    }
    let reply = Reply {
        status: 400,
        retry_after: None,
        body: Vec::new(),
    };
    assert_eq!(super::super::http::status_text(&reply), "HTTP 400");
}

#[test]
fn replies_debug_without_their_body() {
    let reply = Reply {
        status: 200,
        retry_after: None,
        body: br#"{"access_token":"ya29.secret","expires_in":3599}"#.to_vec(),
    };
    let shown = format!("{reply:?}");
    assert!(!shown.contains("ya29.secret"), "{shown}");
    assert!(shown.contains("status: 200"), "{shown}");
    assert!(shown.contains("body_len: 48"), "{shown}");
}

#[test]
fn forms_are_percent_encoded() {
    assert_eq!(
        form(&[("grant_type", "urn:a b"), ("x", "1+2=3&")]),
        "grant_type=urn%3Aa%20b&x=1%2B2%3D3%26"
    );
}

#[test]
fn tokens_expire_after_expires_in_and_name_the_user() {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
    let answer = || parse_token(br#"{"access_token":"ya29.t","expires_in":3599}"#, "x").unwrap();
    let token = finish(answer(), Some("app@proj.iam.gserviceaccount.com"), now);
    assert_eq!(token.expires_at(), Some(now + Duration::from_secs(3599)));
    assert_eq!(token.details().get_username(), Some("app@proj.iam"));
    assert_eq!(
        token.details().get_identity(),
        Some("app@proj.iam.gserviceaccount.com")
    );
    assert!(!format!("{token:?}").contains("ya29.t"));
    let token = finish(answer(), None, now);
    assert_eq!(token.details().get_username(), None);
}
