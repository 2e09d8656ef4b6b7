//! Unit tests of the federation and impersonation files: what parses, what is refused with
//! which message, redaction, and the RFC 3339 times of IAM's answers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::super::time::parse_rfc3339;
use super::{key_json, parse, user_json, with};
use crate::gcp::{
    CredentialsFile, ExternalAccount, GOOGLE_STS_URL, ImpersonatedCredentials, SourceCredentials,
    SubjectTokenFormat,
};

const AUDIENCE: &str =
    "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q";
const SA: &str = "app@proj.iam.gserviceaccount.com";

fn iam_url(email: &str) -> String {
    format!(
        "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{email}:generateAccessToken"
    )
}

/// A file-sourced federation file that impersonates [`SA`].
pub(super) fn external_json() -> Value {
    json!({
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": "https://sts.googleapis.com/v1/token",
        "credential_source": {"file": "/var/run/secrets/token"},
        "service_account_impersonation_url": iam_url(SA),
    })
}

/// An impersonation file whose source is [`user_json`].
pub(super) fn impersonated_json() -> Value {
    json!({
        "type": "impersonated_service_account",
        "service_account_impersonation_url": iam_url(SA),
        "delegates": [],
        "source_credentials": user_json(),
    })
}

fn external(value: &Value) -> ExternalAccount {
    match parse(value) {
        Ok(CredentialsFile::ExternalAccount(account)) => account,
        other => panic!("{value}: {other:?}"),
    }
}

fn impersonated(value: &Value) -> ImpersonatedCredentials {
    match parse(value) {
        Ok(CredentialsFile::Impersonated(credentials)) => credentials,
        other => panic!("{value}: {other:?}"),
    }
}

fn source_with(change: impl FnOnce(&mut Value)) -> Value {
    let mut value = external_json();
    change(&mut value["credential_source"]);
    value
}

#[test]
fn federation_files_parse() {
    let account = external(&external_json());
    assert_eq!(account.get_audience(), AUDIENCE);
    assert_eq!(
        account.get_subject_token_type(),
        "urn:ietf:params:oauth:token-type:jwt"
    );
    assert_eq!(account.get_token_url(), GOOGLE_STS_URL);
    assert_eq!(
        account.get_subject_token_file(),
        Some(std::path::Path::new("/var/run/secrets/token"))
    );
    assert_eq!(account.get_subject_token_url(), None);
    assert_eq!(
        account.get_subject_token_format(),
        &SubjectTokenFormat::Text
    );
    let impersonation = account.get_impersonation().unwrap();
    assert_eq!(impersonation.get_service_account_email(), SA);
    assert_eq!(impersonation.get_url(), iam_url(SA));
    assert_eq!(impersonation.get_lifetime(), Duration::from_secs(3600));
    assert!(impersonation.get_delegates().is_empty());
    assert_eq!(
        CredentialsFile::ExternalAccount(account).type_name(),
        "external_account"
    );

    // A URL source in JSON, with headers; no impersonation; Google's STS by default.
    let mut value = source_with(|source| {
        *source = json!({
            "url": "http://169.254.169.254/metadata/identity/oauth2/token?resource=x",
            "headers": {"Metadata": "True"},
            "format": {"type": "json", "subject_token_field_name": "access_token"},
        });
    });
    let object = value.as_object_mut().unwrap();
    object.remove("service_account_impersonation_url");
    object.remove("token_url");
    let account = external(&value);
    assert_eq!(account.get_token_url(), GOOGLE_STS_URL);
    assert!(account.get_impersonation().is_none());
    assert_eq!(account.get_subject_token_file(), None);
    assert!(
        account
            .get_subject_token_url()
            .unwrap()
            .starts_with("http://169.254")
    );
    assert_eq!(account.get_subject_token_header_names(), ["Metadata"]);
    assert_eq!(
        account.get_subject_token_format(),
        &SubjectTokenFormat::Json {
            subject_token_field_name: "access_token".into()
        }
    );

    // Options Google's libraries read: the lifetime asked, an STS client, a workforce
    // pool's user project; an http token_url to loopback (an emulator).
    let mut value = external_json();
    value["service_account_impersonation"] = json!({"token_lifetime_seconds": 1200});
    value["client_id"] = json!("client-1");
    value["client_secret"] = json!("sts-client-secret");
    value["token_url"] = json!("http://127.0.0.1:8080/v1/token");
    let account = external(&value);
    let impersonation = account.get_impersonation().unwrap();
    assert_eq!(impersonation.get_lifetime(), Duration::from_secs(1200));
    assert_eq!(account.get_client_id(), Some("client-1"));
    assert_eq!(account.get_token_url(), "http://127.0.0.1:8080/v1/token");
    let mut value = external_json();
    value["audience"] = json!("//iam.googleapis.com/locations/global/workforcePools/w/providers/p");
    value["workforce_pool_user_project"] = json!("proj");
    assert_eq!(
        external(&value).get_workforce_pool_user_project(),
        Some("proj")
    );
}

#[test]
fn impersonation_files_parse() {
    let credentials = impersonated(&impersonated_json());
    assert!(matches!(
        credentials.get_source(),
        SourceCredentials::AuthorizedUser(_)
    ));
    assert_eq!(
        credentials.get_impersonation().get_service_account_email(),
        SA
    );
    // A service account source; delegates as emails or resource names; an escaped email.
    let mut value = impersonated_json();
    value["source_credentials"] = key_json("https://oauth2.googleapis.com/token");
    value["delegates"] = json!([
        "a@p.iam.gserviceaccount.com",
        "projects/-/serviceAccounts/b@p.iam.gserviceaccount.com"
    ]);
    value["service_account_impersonation_url"] =
        json!(iam_url("app%40proj.iam.gserviceaccount.com"));
    let credentials = impersonated(&value);
    assert!(matches!(
        credentials.get_source(),
        SourceCredentials::ServiceAccount(_)
    ));
    let impersonation = credentials.get_impersonation();
    assert_eq!(impersonation.get_service_account_email(), SA);
    assert_eq!(
        impersonation.get_delegates(),
        [
            "projects/-/serviceAccounts/a@p.iam.gserviceaccount.com",
            "projects/-/serviceAccounts/b@p.iam.gserviceaccount.com"
        ]
    );
    assert_eq!(
        CredentialsFile::Impersonated(credentials).type_name(),
        "impersonated_service_account"
    );
}

#[test]
fn bad_federation_and_impersonation_files_are_refused_naming_the_field() {
    let ext = external_json();
    let imp = impersonated_json();
    let user_without_refresh = with(&user_json(), "refresh_token", Value::Null);
    let cases: Vec<(Value, &str)> = vec![
        (
            with(&ext, "audience", Value::Null),
            "has no \"audience\"; regenerate the file",
        ),
        (
            with(&ext, "subject_token_type", json!(" ")),
            "has no \"subject_token_type\"",
        ),
        (
            with(&ext, "credential_source", Value::Null),
            "has no \"credential_source\" object",
        ),
        (
            with(&ext, "credential_source", json!("/token")),
            "has no \"credential_source\" object",
        ),
        (
            source_with(|s| *s = json!({})),
            "has neither \"file\" nor \"url\"",
        ),
        (
            source_with(|s| s["url"] = json!("http://127.0.0.1/t")),
            "has both \"file\" and \"url\"",
        ),
        (
            source_with(|s| s["file"] = json!(5)),
            "credential_source.file is not a non-empty string",
        ),
        (
            source_with(|s| *s = json!({"executable": {"command": "/bin/token"}})),
            "has an \"executable\" credential_source, which is not supported: use a file or url \
             credential source",
        ),
        (
            source_with(|s| *s = json!({"environment_id": "aws1", "region_url": "x"})),
            "has an \"aws\" credential_source, which is not supported",
        ),
        (
            source_with(|s| *s = json!({"certificate": {"use_default_certificate_config": true}})),
            "\"certificate\" credential_source, which is not supported",
        ),
        (
            source_with(|s| s["format"] = json!({"type": "xml"})),
            "credential_source.format.type \"xml\" is not a subject token format",
        ),
        (
            source_with(|s| s["format"] = json!({"type": "json"})),
            "has type \"json\" but no subject_token_field_name",
        ),
        (
            source_with(|s| s["format"] = json!("json")),
            "credential_source.format is not an object",
        ),
        (
            source_with(|s| *s = json!({"url": "ftp://127.0.0.1/token"})),
            "credential_source.url \"ftp://127.0.0.1/token\" is not an http or https url",
        ),
        (
            source_with(|s| *s = json!({"url": "http://h/t", "headers": {"Bad Name": "x"}})),
            "credential_source.headers has \"Bad Name\", which is not a header name",
        ),
        (
            source_with(|s| *s = json!({"url": "http://h/t", "headers": {"X-A": 5}})),
            "credential_source.headers.X-A is not a header value",
        ),
        (
            source_with(|s| *s = json!({"url": "http://h/t", "headers": {"X-A": "secret\nvalue"}})),
            "credential_source.headers.X-A is not a header value",
        ),
        (
            source_with(|s| *s = json!({"url": "http://h/t", "headers": ["X-A"]})),
            "credential_source.headers is not an object",
        ),
        (
            with(&ext, "token_url", json!("http://sts.example.com/v1/token")),
            "token_url \"http://sts.example.com/v1/token\" is not an https url (http is allowed \
             only to a loopback address)",
        ),
        (
            with(
                &ext,
                "service_account_impersonation_url",
                json!(iam_url(SA).replace("https://", "http://")),
            ),
            "service_account_impersonation_url \"http://iamcredentials",
        ),
        (
            with(
                &ext,
                "service_account_impersonation_url",
                json!("https://iam.example/v1/x"),
            ),
            "does not name a service account",
        ),
        (
            with(
                &ext,
                "service_account_impersonation_url",
                json!(iam_url("not-an-email")),
            ),
            "does not name a service account",
        ),
        (
            with(
                &ext,
                "service_account_impersonation",
                json!({"token_lifetime_seconds": 100}),
            ),
            "token_lifetime_seconds is not a number of seconds from 600 to 43200",
        ),
        (
            with(&ext, "workforce_pool_user_project", json!("proj")),
            "has workforce_pool_user_project, which only a workforce pool audience",
        ),
        (
            with(&ext, "client_id", json!(5)),
            "client_id is not a string",
        ),
        (
            with(&imp, "source_credentials", Value::Null),
            "has no \"source_credentials\" object",
        ),
        (
            with(&imp, "source_credentials", external_json()),
            "source_credentials has type \"external_account\", which cannot impersonate here",
        ),
        (
            with(&imp, "source_credentials", json!({"refresh_token": "x"})),
            "source_credentials has type none",
        ),
        (
            with(&imp, "source_credentials", user_without_refresh),
            "source_credentials: the user credentials file has no \"refresh_token\"",
        ),
        (
            with(&imp, "service_account_impersonation_url", Value::Null),
            "has no \"service_account_impersonation_url\"",
        ),
        (
            with(&imp, "delegates", json!("a@b.c")),
            "delegates is not a list",
        ),
        (
            with(&imp, "delegates", json!([5])),
            "delegates has an entry",
        ),
    ];
    for (value, fragment) in cases {
        let e = parse(&value).unwrap_err();
        assert_eq!(e.setting(), "GOOGLE_APPLICATION_CREDENTIALS", "{value}");
        assert!(e.message().starts_with("/keys/k.json: "), "{e}");
        assert!(e.message().contains(fragment), "{fragment:?} in {e}");
        for secret in [
            "refresh-token-value",
            "client-secret-value",
            "secret\nvalue",
        ] {
            assert!(!e.message().contains(secret), "{e}");
        }
    }
}

#[test]
fn debug_output_never_shows_federation_secrets() {
    let mut value = source_with(|s| {
        *s = json!({"url": "http://127.0.0.1/t", "headers": {"Authorization": "Bearer header-secret"}});
    });
    value["client_secret"] = json!("sts-client-secret");
    let account = parse(&value).unwrap();
    let credentials = parse(&impersonated_json()).unwrap();
    let printed = format!("{account:?} {account:#?} {credentials:?} {credentials:#?}");
    for secret in [
        "header-secret",
        "sts-client-secret",
        "refresh-token-value",
        "client-secret-value",
    ] {
        assert!(!printed.contains(secret), "{printed}");
    }
    for shown in ["Authorization", AUDIENCE, SA, "/keys/k.json"] {
        assert!(printed.contains(shown), "{shown} in {printed}");
    }
}

#[test]
fn rfc3339_times_parse() {
    let at = |secs: u64| Some(UNIX_EPOCH + Duration::from_secs(secs));
    for (text, expected) in [
        ("1970-01-01T00:00:00Z", at(0)),
        ("2026-12-02T10:32:49Z", at(1_796_207_569)),
        ("2026-12-02T10:32:49.123456789Z", at(1_796_207_569)),
        ("2026-12-02t10:32:49z", at(1_796_207_569)),
        ("2026-12-02T12:32:49+02:00", at(1_796_207_569)),
        ("2026-12-02T08:02:49-02:30", at(1_796_207_569)),
        ("2024-02-29T00:00:00Z", at(1_709_164_800)),
        (" 2026-12-02T10:32:49Z\n", at(1_796_207_569)),
    ] {
        assert_eq!(parse_rfc3339(text), expected, "{text}");
    }
    for bad in [
        "",
        "2026-12-02",
        "2026-12-02T10:32:49",
        "2026-13-02T10:32:49Z",
        "2025-02-29T00:00:00Z",
        "2026-12-02T24:00:00Z",
        "2026-12-02T10:32:49.Z",
        "2026-12-02T10:32:49+2:00",
        "1969-12-31T23:59:59Z",
        "2026-12-02T10:32:49Zjunk",
        "２０２６-12-02T10:32:49Z",
    ] {
        assert_eq!(parse_rfc3339(bad), None, "{bad}");
    }
    // The core's own formatter reads back.
    let now = UNIX_EPOCH
        + Duration::from_secs(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        );
    assert_eq!(parse_rfc3339(&crate::status::rfc3339(now)), Some(now));
}
