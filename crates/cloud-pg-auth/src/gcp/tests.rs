//! Unit tests of the Google module: product and options parsing, the ADC choice, credentials
//! files, assertions, user names and redaction.

use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloud_pg_auth_testkit::gcp::ServiceAccount;
use serde_json::{Value, json};

use super::credentials::check_token_uri;
use super::jwt::sign_assertion;
use super::*;
use crate::env::Env;

mod federation;
#[cfg(feature = "gcp")]
mod flows;
#[cfg(feature = "gcp")]
mod source;

/// A fresh service account key file's JSON, with `token_uri`.
fn key_json(token_uri: &str) -> Value {
    ServiceAccount::generate("app", "proj")
        .unwrap()
        .key_json(token_uri)
}

fn user_json() -> Value {
    json!({
        "type": "authorized_user",
        "client_id": "123.apps.googleusercontent.com",
        "client_secret": "client-secret-value",
        "refresh_token": "1//refresh-token-value",
    })
}

fn parse(value: &Value) -> Result<CredentialsFile, ConfigError> {
    CredentialsFile::parse(
        value.to_string().as_bytes(),
        "/keys/k.json",
        "GOOGLE_APPLICATION_CREDENTIALS",
    )
}

#[test]
fn products_parse_and_name_their_scopes() {
    for (value, product) in [
        ("cloudsql", GcpProduct::CloudSql),
        (" CloudSQL ", GcpProduct::CloudSql),
        ("cloud-sql", GcpProduct::CloudSql),
        ("cloud_sql", GcpProduct::CloudSql),
        ("alloydb", GcpProduct::AlloyDb),
        ("ALLOYDB", GcpProduct::AlloyDb),
    ] {
        assert_eq!(GcpProduct::parse(value), Ok(product), "{value}");
        assert_eq!(value.parse::<GcpProduct>(), Ok(product), "{value}");
    }
    for bad in ["", "sql", "alloy", "cloudsql,alloydb", "spanner"] {
        let e = GcpProduct::parse(bad).unwrap_err();
        assert_eq!(e.setting(), "PGAUTH_GCP_PRODUCT", "{bad}");
        assert!(e.message().contains("use cloudsql or alloydb"), "{e}");
    }
    assert_eq!(
        GcpProduct::CloudSql.login_scope(),
        "https://www.googleapis.com/auth/sqlservice.login"
    );
    assert_eq!(
        GcpProduct::AlloyDb.login_scope(),
        "https://www.googleapis.com/auth/alloydb.login"
    );
    assert_eq!(GcpProduct::default(), GcpProduct::CloudSql);
    for product in GcpProduct::ALL {
        assert_eq!(GcpProduct::parse(product.as_str()), Ok(product));
    }
}

type Expect = Result<GcpOptions, (&'static str, &'static str)>;

fn check_env(pairs: &[(&str, &str)], expected: Expect) {
    let got = GcpOptions::from_env(&Env::from_pairs(pairs.iter().copied()));
    match (got, expected) {
        (Ok(got), Ok(want)) => assert_eq!(got, want, "{pairs:?}"),
        (Err(e), Err((setting, fragment))) => {
            assert_eq!(e.setting(), setting, "{pairs:?}: {e}");
            assert!(e.message().contains(fragment), "{pairs:?}: {e}");
        }
        (got, _) => panic!("{pairs:?}: unexpected {got:?}"),
    }
}

#[test]
fn options_from_env() {
    check_env(&[], Ok(GcpOptions::default()));
    check_env(
        &[
            ("PGAUTH_GCP_PRODUCT", "alloydb"),
            ("GCE_METADATA_HOST", "127.0.0.1:8080"),
            ("GOOGLE_APPLICATION_CREDENTIALS", "/keys/sa.json"),
            ("HOME", "/home/me"),
        ],
        Ok(GcpOptions::default()
            .product(GcpProduct::AlloyDb)
            .metadata_host("127.0.0.1:8080")
            .credentials_file("/keys/sa.json")
            .gcloud_file("/home/me/.config/gcloud/application_default_credentials.json")),
    );
    // CLOUDSDK_CONFIG moves gcloud's folder.
    check_env(
        &[("CLOUDSDK_CONFIG", "/etc/gcloud"), ("HOME", "/home/me")],
        Ok(GcpOptions::default().gcloud_file("/etc/gcloud/application_default_credentials.json")),
    );
    check_env(
        &[("PGAUTH_GCP_PRODUCT", "spanner")],
        Err(("PGAUTH_GCP_PRODUCT", "not a google database product")),
    );
    for good in [
        "metadata.google.internal",
        "169.254.169.254",
        "127.0.0.1:1",
        "[::1]:8080",
        "[fe80::1]",
        "metadata_host-1.local:65535",
    ] {
        let options = GcpOptions::from_env(&Env::from_pairs([("GCE_METADATA_HOST", good)]));
        assert_eq!(options.unwrap().get_metadata_host(), good);
    }
    for bad in [
        "http://127.0.0.1:8080",
        "127.0.0.1:8080/path",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:",
        ":8080",
        "::1",
        "[nope]:80",
        "a b",
        "user@host",
    ] {
        check_env(
            &[("GCE_METADATA_HOST", bad)],
            Err(("GCE_METADATA_HOST", "is not a host[:port]")),
        );
    }
}

#[test]
fn adc_order_is_explicit_file_then_gcloud_file_then_metadata_server() {
    let dir = tempfile::tempdir().unwrap();
    let gcloud = dir.path().join("application_default_credentials.json");
    let options = GcpOptions::default().gcloud_file(&gcloud);
    // gcloud's file counts only when it exists.
    assert_eq!(
        options.choose(),
        Ok(CredentialsChoice::MetadataServer(
            DEFAULT_METADATA_HOST.into()
        ))
    );
    assert_eq!(
        options.clone().metadata_host("127.0.0.1:9").choose(),
        Ok(CredentialsChoice::MetadataServer("127.0.0.1:9".into()))
    );
    std::fs::write(&gcloud, "{}").unwrap();
    assert_eq!(
        options.choose(),
        Ok(CredentialsChoice::GcloudFile(gcloud.clone()))
    );
    // The explicit file wins, whether or not it exists (a typo must not fall through).
    let explicit = dir.path().join("missing.json");
    assert_eq!(
        options.clone().credentials_file(&explicit).choose(),
        Ok(CredentialsChoice::ExplicitFile(explicit))
    );
    let e = GcpOptions::default()
        .metadata_host("http://x")
        .choose()
        .unwrap_err();
    assert_eq!(e.setting(), "GCE_METADATA_HOST");
    assert_eq!(CredentialsChoice::GcloudFile(gcloud).as_str(), "gcloud-adc");
}

#[test]
fn service_account_and_user_files_parse() {
    let value = key_json("https://oauth2.googleapis.com/token");
    let CredentialsFile::ServiceAccount(key) = parse(&value).unwrap() else {
        panic!("not a service account");
    };
    assert_eq!(key.get_client_email(), "app@proj.iam.gserviceaccount.com");
    assert_eq!(key.get_private_key_id(), value["private_key_id"]);
    assert_eq!(key.get_token_uri(), GOOGLE_TOKEN_URI);
    assert!(key.get_private_key().expose().contains("PRIVATE KEY"));

    // A missing token_uri is Google's.
    let mut no_uri = value.clone();
    no_uri.as_object_mut().unwrap().remove("token_uri");
    let CredentialsFile::ServiceAccount(key) = parse(&no_uri).unwrap() else {
        panic!("not a service account");
    };
    assert_eq!(key.get_token_uri(), GOOGLE_TOKEN_URI);

    let CredentialsFile::AuthorizedUser(user) = parse(&user_json()).unwrap() else {
        panic!("not user credentials");
    };
    assert_eq!(user.get_client_id(), "123.apps.googleusercontent.com");
    assert_eq!(user.get_client_secret().expose(), "client-secret-value");
    assert_eq!(user.get_refresh_token().expose(), "1//refresh-token-value");
    assert_eq!(user.get_token_uri(), GOOGLE_TOKEN_URI);
    assert_eq!(
        CredentialsFile::AuthorizedUser(user).type_name(),
        "authorized_user"
    );
}

/// `value` with `field` set to `to` (`Value::Null` removes it).
fn with(value: &Value, field: &str, to: Value) -> Value {
    let mut value = value.clone();
    let object = value.as_object_mut().unwrap();
    if to.is_null() {
        object.remove(field);
    } else {
        object.insert(field.into(), to);
    }
    value
}

#[test]
fn bad_credentials_files_are_refused_naming_the_file() {
    let sa = key_json("https://oauth2.googleapis.com/token");
    let user = user_json();
    let (_, ec_key) = cloud_pg_auth_testkit::tls::TestCa::generate().issue(&["x"]);
    let cases: Vec<(Value, &str)> = vec![
        (json!([1, 2]), "is not a json object"),
        (json!({}), "has no \"type\""),
        (json!({"type": 5}), "has no \"type\""),
        (
            json!({"type": "external_account_authorized_user"}),
            "\"external_account_authorized_user\" (a workforce identity federation user \
             login), which is not supported",
        ),
        (
            json!({"type": "gdch_service_account"}),
            "not a credentials type",
        ),
        (
            with(&sa, "client_email", Value::Null),
            "has no \"client_email\"",
        ),
        (
            with(&sa, "client_email", json!("")),
            "has no \"client_email\"",
        ),
        (
            with(&sa, "client_email", json!("not-an-email")),
            "is not an email address",
        ),
        (
            with(&sa, "private_key_id", Value::Null),
            "has no \"private_key_id\"",
        ),
        (
            with(&sa, "private_key", Value::Null),
            "has no \"private_key\"",
        ),
        (
            with(&sa, "private_key", json!("MIIEvQIBADANBgkqhkiG9w0B")),
            "private_key is not a pem private key",
        ),
        (
            with(&sa, "private_key", json!(ec_key)),
            "private_key is not an rsa key",
        ),
        (
            with(
                &sa,
                "token_uri",
                json!("http://oauth2.googleapis.com/token"),
            ),
            "is not an https url",
        ),
        (
            with(&sa, "token_uri", json!("https://user@evil.example/token")),
            "is not an https url",
        ),
        (with(&sa, "token_uri", json!(42)), "is not an https url"),
        (
            with(&user, "client_id", Value::Null),
            "has no \"client_id\"",
        ),
        (
            with(&user, "client_secret", json!("  ")),
            "has no \"client_secret\"",
        ),
        (
            with(&user, "refresh_token", Value::Null),
            "has no \"refresh_token\"; run gcloud auth application-default login again",
        ),
        (
            with(&user, "token_uri", json!("ftp://127.0.0.1/token")),
            "is not an https url",
        ),
    ];
    for (value, fragment) in cases {
        let e = parse(&value).unwrap_err();
        assert_eq!(e.setting(), "GOOGLE_APPLICATION_CREDENTIALS", "{value}");
        assert!(e.message().starts_with("/keys/k.json: "), "{e}");
        assert!(e.message().contains(fragment), "{fragment:?} in {e}");
        // Never a secret in the message.
        for secret in ["PRIVATE KEY", "client-secret-value", "refresh-token-value"] {
            assert!(!e.message().contains(secret), "{e}");
        }
    }
    let e = CredentialsFile::parse(b"{not json", "/keys/k.json", "X").unwrap_err();
    assert!(
        e.message().contains("is not a json credentials file"),
        "{e}"
    );
}

#[test]
fn credentials_files_are_read_with_a_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.json");
    let e = CredentialsFile::read(&missing, "GOOGLE_APPLICATION_CREDENTIALS").unwrap_err();
    assert_eq!(e.setting(), "GOOGLE_APPLICATION_CREDENTIALS");
    assert!(
        e.message().contains("cannot read the credentials file"),
        "{e}"
    );
    assert!(e.message().contains("missing.json"), "{e}");
    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; 65 << 10]).unwrap();
    let e = CredentialsFile::read(&big, "GOOGLE_APPLICATION_CREDENTIALS").unwrap_err();
    assert!(e.message().contains("larger than 64 KiB"), "{e}");
    let good = dir.path().join("user.json");
    std::fs::write(&good, user_json().to_string()).unwrap();
    assert!(CredentialsFile::read(&good, "X").is_ok());
}

#[test]
fn token_uris_must_be_https_or_loopback() {
    for good in [
        "https://oauth2.googleapis.com/token",
        "https://oauth2.googleapis.com:443/token?x=1",
        "http://127.0.0.1:8080/token",
        "http://127.9.9.9/token",
        "http://localhost/token",
        "http://[::1]:9/token",
    ] {
        assert!(check_token_uri(good), "{good}");
    }
    for bad in [
        "",
        "oauth2.googleapis.com/token",
        "http://oauth2.googleapis.com/token",
        "http://10.0.0.1/token",
        "http://127.0.0.1@evil.example/token",
        "https:///token",
        "https://a b/token",
        "file:///etc/passwd",
    ] {
        assert!(!check_token_uri(bad), "{bad}");
    }
}

fn decode(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[test]
fn assertions_have_the_jwt_bearer_shape() {
    let value = key_json("http://127.0.0.1:9/token");
    let CredentialsFile::ServiceAccount(key) = parse(&value).unwrap() else {
        panic!("not a service account");
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let scope = GcpProduct::AlloyDb.login_scope();
    let assertion = sign_assertion(&key, scope, now).unwrap();
    let parts: Vec<&str> = assertion.expose().split('.').collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(
        decode(parts[0]),
        json!({"alg": "RS256", "typ": "JWT", "kid": value["private_key_id"]})
    );
    assert_eq!(
        decode(parts[1]),
        json!({
            "iss": "app@proj.iam.gserviceaccount.com",
            "scope": scope,
            "aud": "http://127.0.0.1:9/token",
            // Back-dated 10 s, for a clock slightly ahead of Google's.
            "iat": 1_699_999_990u64,
            "exp": 1_700_003_590u64,
        })
    );
    // A 2048-bit RSA signature; the emulator's token endpoint verifies it (tests/gcp.rs).
    assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 256);
    // PKCS#1 v1.5 is deterministic: same input, same assertion.
    assert_eq!(sign_assertion(&key, scope, now).unwrap(), assertion);
    assert_ne!(
        sign_assertion(&key, scope, now + Duration::from_secs(1)).unwrap(),
        assertion
    );
}

#[test]
fn usernames_come_from_emails() {
    let long_sa = format!(
        "{}@{}.iam.gserviceaccount.com",
        "a".repeat(30),
        "p".repeat(30)
    );
    let long_cut = format!("{}@{}.i", "a".repeat(30), "p".repeat(30));
    for (email, expected) in [
        ("app@proj.iam.gserviceaccount.com", Some("app@proj.iam")),
        ("app@proj.iam.GServiceAccount.com", Some("app@proj.iam")),
        (" app@proj.iam.gserviceaccount.com\n", Some("app@proj.iam")),
        ("jane@example.com", Some("jane@example.com")),
        // Default compute and app engine accounts keep their shapes.
        (
            "123-compute@developer.gserviceaccount.com",
            Some("123-compute@developer"),
        ),
        (long_sa.as_str(), Some(long_cut.as_str())),
        ("", None),
        ("no-at-sign", None),
        ("@example.com", None),
        ("jane@", None),
        ("a@b@c", None),
        ("a b@example.com", None),
        ("a@.gserviceaccount.com", None),
    ] {
        assert_eq!(username_from_email(email).as_deref(), expected, "{email:?}");
    }
    assert_eq!(long_cut.len(), MAX_USERNAME_LEN);
    // Cut on a character boundary.
    let wide = format!("{}@example.com", "é".repeat(40));
    let cut = username_from_email(&wide).unwrap();
    assert!(cut.len() <= MAX_USERNAME_LEN && cut.len() >= MAX_USERNAME_LEN - 1);
}

#[test]
fn debug_output_never_shows_secrets() {
    let value = key_json("https://oauth2.googleapis.com/token");
    let pem = value["private_key"].as_str().unwrap().to_string();
    let body: String = pem.lines().nth(1).unwrap().to_string();
    let sa = parse(&value).unwrap();
    let user = parse(&user_json()).unwrap();
    let printed = format!("{sa:?} {sa:#?} {user:?} {user:#?}");
    for secret in [body.as_str(), "client-secret-value", "refresh-token-value"] {
        assert!(!printed.contains(secret), "{printed}");
    }
    assert!(
        printed.contains("app@proj.iam.gserviceaccount.com"),
        "{printed}"
    );
    assert!(printed.contains("redacted"), "{printed}");
    let options = GcpOptions::default().credentials_file(Path::new("/keys/k.json"));
    assert!(format!("{options:?}").contains("/keys/k.json"));
}
