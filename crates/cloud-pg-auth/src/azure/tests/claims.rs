//! Token claims: user names, expiry, and the user name warning and error.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;
use crate::token::UsernameSource;

fn check_claims(claims: &str, expected: TokenDetails) {
    let parsed = JwtClaims::parse(&jwt(claims)).expect(claims);
    assert_eq!(parsed.details(), expected, "{claims}");
}

fn details(identity: &str, username: Option<(&str, UsernameSource)>, ids: &[&str]) -> TokenDetails {
    TokenDetails {
        identity: Some(identity.to_string()),
        username: username.map(|(u, _)| u.to_string()),
        username_source: username.map(|(_, s)| s),
        ids: ids.iter().map(|s| s.to_string()).collect(),
    }
}

#[test]
fn usernames_come_from_the_claims_in_order() {
    check_claims(
        r#"{"appid":"app-1","oid":"oid-1","idtyp":"app","xms_mirid":"/subscriptions/s/resourcegroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/orders-api"}"#,
        details(
            "orders-api",
            Some(("orders-api", UsernameSource::XmsMirid)),
            &["app-1", "oid-1"],
        ),
    );
    check_claims(
        r#"{"appid":"a","oid":"o","xms_mirid":"/subscriptions/s/providers/Microsoft.Web/sites/my-app/"}"#,
        details(
            "my-app",
            Some(("my-app", UsernameSource::XmsMirid)),
            &["a", "o"],
        ),
    );
    check_claims(
        r#"{"oid":"o","upn":"ada@contoso.com","preferred_username":"p@x","unique_name":"u@x"}"#,
        details(
            "ada@contoso.com",
            Some(("ada@contoso.com", UsernameSource::Upn)),
            &["o"],
        ),
    );
    check_claims(
        r#"{"azp":"v2-client","oid":"o","preferred_username":"p@x","unique_name":"u@x"}"#,
        details(
            "p@x",
            Some(("p@x", UsernameSource::PreferredUsername)),
            &["v2-client", "o"],
        ),
    );
    check_claims(
        r#"{"appid":"a","oid":"o","unique_name":"u@x","upn":""}"#,
        details(
            "u@x",
            Some(("u@x", UsernameSource::UniqueName)),
            &["a", "o"],
        ),
    );
    // A service principal: no name in the token.
    check_claims(
        r#"{"appid":"a","oid":"o","idtyp":"app"}"#,
        details("client id a", None, &["a", "o"]),
    );
    check_claims(
        r#"{"appid":"same","oid":"same"}"#,
        details("client id same", None, &["same"]),
    );
    // Claims of unexpected types are ignored.
    check_claims(
        r#"{"appid":7,"upn":["x"],"oid":"o","unique_name":"u"}"#,
        details("u", Some(("u", UsernameSource::UniqueName)), &["o"]),
    );
}

fn check_exp(token: &str, expected: Option<u64>) {
    let got = JwtClaims::parse(token).and_then(|c| c.expires_at());
    assert_eq!(
        got,
        expected.map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s)),
        "{token}"
    );
}

#[test]
fn jwt_payloads_decode_leniently() {
    check_exp(&jwt(r#"{"exp":1700000000}"#), Some(1_700_000_000));
    check_exp(&jwt(r#"{"exp":"1700000000"}"#), Some(1_700_000_000));
    check_exp(&jwt(r#"{"exp":1700000000.5}"#), Some(1_700_000_000));
    check_exp(&jwt(r#"{"exp":-1}"#), None);
    check_exp(&jwt(r#"{}"#), None);
    assert!(JwtClaims::parse("opaque-token").is_none());
    assert!(JwtClaims::parse("a.b").is_none());
    assert!(JwtClaims::parse("a.b.c.d").is_none());
    assert!(JwtClaims::parse("a.!!!.c").is_none());
    assert!(JwtClaims::parse(&format!("a.{}.c", URL_SAFE_NO_PAD.encode("[1]"))).is_none());
    // Padding is tolerated.
    let padded = format!(
        "a.{}.c",
        base64::engine::general_purpose::URL_SAFE.encode(r#"{"exp":1}"#)
    );
    check_exp(&padded, Some(1));
}

fn check_guid_warning(user: &str, ids: &[&str], expected: Option<&str>) {
    let details = TokenDetails {
        username: Some("orders-api".into()),
        ids: ids.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let got = guid_username_warning(user, &details);
    match expected {
        None => assert_eq!(got, None, "{user}"),
        Some(fragment) => {
            let text = got.unwrap_or_else(|| panic!("{user}: no warning"));
            assert!(text.contains(fragment), "{text}");
        }
    }
}

#[test]
fn guid_usernames_that_match_the_token_warn() {
    let appid = "0a1b2c3d-4e5f-6789-abcd-ef0123456789";
    let oid = "ffffffff-0000-1111-2222-333333333333";
    check_guid_warning(appid, &[appid, oid], Some("display name"));
    check_guid_warning(&appid.to_uppercase(), &[appid, oid], Some("\"orders-api\""));
    check_guid_warning(oid, &[appid, oid], Some(oid));
    check_guid_warning("11111111-2222-3333-4444-555555555555", &[appid, oid], None);
    check_guid_warning("orders-api", &["orders-api"], None);
    check_guid_warning("0a1b2c3d4e5f6789abcdef0123456789", &[appid], None);
    check_guid_warning("0a1b2c3d-4e5f-6789-abcd-ef012345678z", &[appid], None);
}

#[test]
fn the_username_error_says_to_set_pguser() {
    let e = username_required_error(&TokenDetails {
        ids: vec!["app-1".into()],
        ..Default::default()
    });
    assert_eq!(e.setting(), "PGUSER");
    assert!(e.message().contains("client id app-1"), "{e}");
    assert!(
        e.message()
            .contains("set PGUSER to the identity's display name"),
        "{e}"
    );
}
