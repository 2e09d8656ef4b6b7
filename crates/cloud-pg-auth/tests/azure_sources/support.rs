//! What the topics share: tokens, options, expectations, scratch directories and a
//! caller-supplied credential.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloud_pg_auth::azure::AzureOptions;
use cloud_pg_auth::{Env, TokenError, TokenErrorKind};

use crate::server::{Canned, Server, reply};

pub(crate) const MI_HEADER: &str = "identity-header-do-not-print";
pub(crate) const CLIENT_SECRET: &str = "client-secret-do-not-print";
pub(crate) const SIGNATURE: &str = "c2lnbmF0dXJlLWRvLW5vdC1wcmludA";

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub(crate) fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

pub(crate) fn jwt(claims: serde_json::Value) -> String {
    format!(
        "{}.{}.{SIGNATURE}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT","kid":"k"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

pub(crate) fn mi_jwt(exp: u64) -> String {
    jwt(serde_json::json!({
        "aud": "https://ossrdbms-aad.database.windows.net",
        "appid": "0a1b2c3d-4e5f-6789-abcd-ef0123456789",
        "oid": "ffffffff-0000-1111-2222-333333333333",
        "idtyp": "app",
        "exp": exp,
        "xms_mirid": "/subscriptions/s/resourcegroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/orders-api",
    }))
}

/// What a fetch should give.
pub(crate) enum Want {
    /// A token expiring at this Unix time, whose derived user name is this.
    Token {
        expires: u64,
        user: Option<&'static str>,
    },
    /// An error of this kind whose text has this fragment, with this `retry_after`.
    Fails {
        kind: TokenErrorKind,
        fragment: &'static str,
        retry_after: Option<Duration>,
    },
}

pub(crate) fn fails(kind: TokenErrorKind, fragment: &'static str) -> Want {
    Want::Fails {
        kind,
        fragment,
        retry_after: None,
    }
}

pub(crate) fn check_result(
    label: &str,
    got: Result<cloud_pg_auth::AccessToken, TokenError>,
    want: &Want,
) {
    match (got, want) {
        (Ok(token), Want::Token { expires, user }) => {
            assert_eq!(token.expires_at(), Some(at(*expires)), "{label}");
            assert_eq!(token.details().get_username(), *user, "{label}");
            let printed = format!("{token:?}");
            assert!(!printed.contains(SIGNATURE), "{label}: {printed}");
        }
        (
            Err(e),
            Want::Fails {
                kind,
                fragment,
                retry_after,
            },
        ) => {
            let text = e.chain_text();
            assert_eq!(e.kind(), *kind, "{label}: {text}");
            assert!(text.contains(fragment), "{label}: {text}");
            assert_eq!(e.retry_after(), *retry_after, "{label}: {text}");
            for secret in [MI_HEADER, CLIENT_SECRET, SIGNATURE] {
                assert!(!text.contains(secret), "{label}: {text}");
                assert!(!format!("{e:?}").contains(secret), "{label}");
            }
        }
        (Ok(token), _) => panic!("{label}: expected an error, got {token:?}"),
        (Err(e), _) => panic!("{label}: expected a token, got {}", e.chain_text()),
    }
}

pub(crate) fn app_service_options(server: &Server) -> AzureOptions {
    AzureOptions::from_env(&Env::from_pairs([
        ("IDENTITY_ENDPOINT", server.url("/msi/token")),
        ("IDENTITY_HEADER", MI_HEADER.to_string()),
    ]))
    .unwrap()
}

pub(crate) fn entra_ok(expires_in: u64, token: &str) -> Canned {
    reply(
        200,
        serde_json::json!({
            "token_type": "Bearer",
            "expires_in": expires_in,
            "ext_expires_in": expires_in,
            "access_token": token,
        })
        .to_string(),
    )
}

pub(crate) fn sp_jwt(exp: u64) -> String {
    jwt(serde_json::json!({
        "aud": "https://ossrdbms-aad.database.windows.net",
        "appid": "11111111-2222-3333-4444-555555555555",
        "oid": "66666666-7777-8888-9999-000000000000",
        "idtyp": "app",
        "exp": exp,
    }))
}

pub(crate) fn secret_options(cloud: &str) -> AzureOptions {
    AzureOptions::from_env(&Env::from_pairs([
        ("PGAUTH_AZURE_CLOUD", cloud),
        ("AZURE_TENANT_ID", "contoso.onmicrosoft.com"),
        ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
        ("AZURE_CLIENT_SECRET", CLIENT_SECRET),
    ]))
    .unwrap()
}

pub(crate) fn scratch_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "pgauth-azure-{name}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[derive(Debug)]
pub(crate) struct Fixed {
    pub(crate) token: Option<String>,
    pub(crate) expires_on: u64,
    pub(crate) scopes: Mutex<Vec<String>>,
}

#[async_trait]
impl TokenCredential for Fixed {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        self.scopes
            .lock()
            .unwrap()
            .extend(scopes.iter().map(|s| s.to_string()));
        match &self.token {
            Some(t) => Ok(azure_core::credentials::AccessToken::new(
                t.clone(),
                azure_core::time::OffsetDateTime::from_unix_timestamp(self.expires_on as i64)
                    .unwrap(),
            )),
            None => Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                "vault sealed",
            )),
        }
    }
}
