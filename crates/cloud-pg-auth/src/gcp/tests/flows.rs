//! Unit tests of the federation and impersonation flows' offline parts: the STS form, the
//! `generateAccessToken` body and answer, subject token formats, and building the source
//! from these files. The flows against the emulator are in tests/gcp_federation.rs.

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use super::super::federation::{extract, generate_body, is_local_url, parse_generated, sts_form};
use super::federation::{external_json, impersonated_json};
use super::parse;
use crate::Secret;
use crate::error::Error;
use crate::gcp::{CredentialsFile, ExternalAccount, GcpOptions, GcpSource, SubjectTokenFormat};
use crate::source::TokenSource as _;

fn account(value: &Value) -> ExternalAccount {
    match parse(value) {
        Ok(CredentialsFile::ExternalAccount(account)) => account,
        other => panic!("{other:?}"),
    }
}

fn decode(form: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(form.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[test]
fn the_sts_form_exchanges_the_subject_token_for_an_access_token() {
    let subject = Secret::new("eyJ.subject+token/=");
    let form = decode(&sts_form(&account(&external_json()), &subject, "scope-a"));
    let expected: Vec<(String, String)> = [
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("audience", external_json()["audience"].as_str().unwrap()),
        ("scope", "scope-a"),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
        ("subject_token", "eyJ.subject+token/="),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(form, expected);

    // A workforce pool names its billing project, unless an STS client does.
    let mut value = external_json();
    value["audience"] = json!("//iam.googleapis.com/locations/global/workforcePools/w/providers/p");
    value["workforce_pool_user_project"] = json!("proj");
    let form = decode(&sts_form(&account(&value), &subject, "s"));
    let options = form.iter().find(|(k, _)| k == "options").unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&options.1).unwrap(),
        json!({"userProject": "proj"})
    );
    value["client_id"] = json!("client-1");
    let form = decode(&sts_form(&account(&value), &subject, "s"));
    assert!(form.iter().all(|(k, _)| k != "options"), "{form:?}");
}

#[test]
fn generate_access_token_asks_the_login_scope_for_the_lifetime() {
    let account = account(&external_json());
    let impersonation = account.get_impersonation().unwrap();
    let body: Value = serde_json::from_str(&generate_body(impersonation, "login")).unwrap();
    assert_eq!(body, json!({"scope": ["login"], "lifetime": "3600s"}));

    let mut value = impersonated_json();
    value["delegates"] = json!(["d@p.iam.gserviceaccount.com"]);
    let Ok(CredentialsFile::Impersonated(credentials)) = parse(&value) else {
        panic!("not an impersonation file");
    };
    let body: Value =
        serde_json::from_str(&generate_body(credentials.get_impersonation(), "l")).unwrap();
    assert_eq!(
        body["delegates"],
        json!(["projects/-/serviceAccounts/d@p.iam.gserviceaccount.com"])
    );
}

#[test]
fn generate_access_token_answers() {
    let now = UNIX_EPOCH + Duration::from_secs(1_796_207_569);
    let ok = parse_generated(
        br#"{"accessToken":"ya29.imp","expireTime":"2026-12-02T11:32:49Z"}"#,
        now,
    )
    .unwrap();
    assert_eq!(ok.secret.expose(), "ya29.imp");
    assert_eq!(ok.expires_in, Duration::from_secs(3600));
    for (body, fragment) in [
        ("nope", "not json"),
        (r#"{"expireTime":"2026-12-02T11:32:49Z"}"#, "no accessToken"),
        (
            r#"{"accessToken":"","expireTime":"2026-12-02T11:32:49Z"}"#,
            "no accessToken",
        ),
        (r#"{"accessToken":"t"}"#, "no expireTime"),
        (r#"{"accessToken":"t","expireTime":3600}"#, "no expireTime"),
        (r#"{"accessToken":"t","expireTime":"soon"}"#, "not a time"),
        (
            r#"{"accessToken":"t","expireTime":"2026-12-02T10:32:49Z"}"#,
            "not in the future; check this machine's clock",
        ),
    ] {
        let e = parse_generated(body.as_bytes(), now).err().unwrap();
        assert!(e.contains(fragment), "{body}: {e}");
        assert!(!e.contains("ya29"), "{e}");
    }
}

#[test]
fn subject_tokens_are_read_by_format() {
    let json = SubjectTokenFormat::Json {
        subject_token_field_name: "id_token".into(),
    };
    let good: [(&[u8], &SubjectTokenFormat, &str); 3] = [
        (b"  eyJ.a.b\n", &SubjectTokenFormat::Text, "eyJ.a.b"),
        (br#"{"id_token":"eyJ.c.d","x":1}"#, &json, "eyJ.c.d"),
        (br#"{"id_token":" eyJ.e "}"#, &json, "eyJ.e"),
    ];
    for (content, format, token) in good {
        assert_eq!(extract(content, format).unwrap().expose(), token);
    }
    let bad: [(&[u8], &SubjectTokenFormat, &str); 6] = [
        (
            b" \n",
            &SubjectTokenFormat::Text,
            "holds an empty subject token",
        ),
        (b"\xff\xfe", &SubjectTokenFormat::Text, "is not utf-8 text"),
        (b"eyJ.secret", &json, "is not json"),
        (
            br#"{"access_token":"eyJ.secret"}"#,
            &json,
            "has no string field \"id_token\"",
        ),
        (br#"{"id_token":5}"#, &json, "has no string field"),
        (br#"{"id_token":""}"#, &json, "holds an empty subject token"),
    ];
    for (content, format, fragment) in bad {
        let e = extract(content, format).err().unwrap();
        assert!(e.contains(fragment), "{e}");
        assert!(!e.contains("eyJ.secret"), "{e}");
    }
}

#[test]
fn local_subject_token_urls_skip_the_proxy() {
    for url in [
        "http://169.254.169.254/metadata/identity/oauth2/token",
        "http://127.0.0.1:8080/t",
        "http://localhost/t",
        "http://[::1]:80/t",
        "http://[fe80::1]/t",
    ] {
        assert!(is_local_url(url), "{url}");
    }
    for url in [
        "https://token.example.com/t",
        "http://10.0.0.1/t",
        "http://[2001:db8::1]/t",
    ] {
        assert!(!is_local_url(url), "{url}");
    }
}

fn write(dir: &std::path::Path, value: &Value) -> std::path::PathBuf {
    let path = dir.join("creds.json");
    std::fs::write(&path, value.to_string()).unwrap();
    path
}

#[test]
fn sources_build_from_federation_and_impersonation_files() {
    let dir = tempfile::tempdir().unwrap();
    let options = |value: &Value| GcpOptions::default().credentials_file(write(dir.path(), value));

    let source = GcpSource::new(&options(&external_json()), None).unwrap();
    let info = source.info();
    assert_eq!(info.get_credential_kind(), Some("external-account"));
    assert_eq!(
        info.get_identity(),
        Some("app@proj.iam.gserviceaccount.com")
    );
    assert_eq!(
        info.get_endpoint(),
        Some("https://sts.googleapis.com/v1/token")
    );

    // Without impersonation there is no email: PGUSER is required, and named.
    let mut value = external_json();
    value
        .as_object_mut()
        .unwrap()
        .remove("service_account_impersonation_url");
    for pguser in [None, Some(" ")] {
        match GcpSource::new(&options(&value), pguser) {
            Err(Error::Config(e)) => {
                assert_eq!(e.setting(), "PGUSER");
                assert!(
                    e.message()
                        .contains("creds.json holds workload identity federation"),
                    "{e}"
                );
                assert!(e.message().contains("set PGUSER"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }
    let source = GcpSource::new(&options(&value), Some("federated-user")).unwrap();
    assert_eq!(source.info().get_identity(), Some("federated-user"));

    let source = GcpSource::new(&options(&impersonated_json()), None).unwrap();
    let info = source.info();
    assert_eq!(
        info.get_credential_kind(),
        Some("impersonated-service-account")
    );
    assert_eq!(
        info.get_identity(),
        Some("app@proj.iam.gserviceaccount.com")
    );
    assert!(
        info.get_endpoint()
            .unwrap()
            .ends_with(":generateAccessToken")
    );
    let printed = format!("{source:?} {source:#?}");
    for secret in ["refresh-token-value", "client-secret-value"] {
        assert!(!printed.contains(secret), "{printed}");
    }
}

#[tokio::test]
async fn a_missing_subject_token_file_names_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let mut value = external_json();
    let missing = dir.path().join("token");
    value["credential_source"] = json!({"file": missing.display().to_string()});
    let path = write(dir.path(), &value);
    let source = GcpSource::new(&GcpOptions::default().credentials_file(&path), None).unwrap();
    let e = source.fetch().await.unwrap_err();
    assert_eq!(e.kind(), crate::TokenErrorKind::Config);
    let message = e.message();
    assert!(
        message.contains(&missing.display().to_string()),
        "{message}"
    );
    assert!(message.contains("credential_source.file of"), "{message}");
    assert!(message.contains("creds.json"), "{message}");
}
