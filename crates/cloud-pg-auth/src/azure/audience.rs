//! Which Entra audience a token may have to be sent to Azure Database for PostgreSQL, checked
//! twice: on `PGAUTH_AZURE_SCOPE` at start-up, and on every token's `aud` before it is used.
//!
//! The audiences are the three clouds' `ossrdbms-aad` resources (see [`AzureCloud::audience`]):
//! the project reference (`cloud-identity-facts.md`, "The Entra token for PostgreSQL") lists
//! no other form, such as an application-id GUID, so none is accepted.

use super::AzureCloud;
#[cfg(any(feature = "azure", test))]
use super::JwtClaims;
use crate::error::ConfigError;

/// The resource a scope asks for: `X/.default`, `X/` and `X` all mean `X`.
pub(crate) fn audience_of_scope(scope: &str) -> &str {
    let scope = scope.trim();
    let scope = scope.strip_suffix("/.default").unwrap_or(scope);
    scope.trim_end_matches('/')
}

/// The cloud whose Azure Database for PostgreSQL audience `audience` is (ASCII case and one
/// trailing `/` do not matter), if it is one.
pub(crate) fn database_cloud(audience: &str) -> Option<AzureCloud> {
    let audience = audience.trim_end_matches('/');
    AzureCloud::ALL
        .into_iter()
        .find(|c| c.audience().eq_ignore_ascii_case(audience))
}

impl AzureCloud {
    /// The cloud whose database audience `scope` asks for, if it is a known one.
    pub(super) fn for_scope(scope: &str) -> Option<Self> {
        database_cloud(audience_of_scope(scope))
    }
}

/// Checks `PGAUTH_AZURE_SCOPE` for `cloud`.
///
/// Only the database audiences are allowed, not refused outright: the scope alone decides
/// which service's token goes to the server as a password, so any other value either fails
/// at login or hands the database server a token for another service (ARM, Graph), while
/// configurations that spell out the right scope, as Microsoft's samples do, keep working.
pub(crate) fn check_scope(scope: &str, cloud: AzureCloud) -> Result<(), ConfigError> {
    let well_formed = !scope.is_empty()
        && scope
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:/".contains(c));
    if !well_formed {
        return Err(ConfigError::new(
            "PGAUTH_AZURE_SCOPE",
            format!(
                "{scope:?} is not a valid scope; unset PGAUTH_AZURE_SCOPE (the cloud picks the \
                 scope) or use one url such as {}",
                cloud.scope()
            ),
        ));
    }
    match AzureCloud::for_scope(scope) {
        None => Err(ConfigError::new(
            "PGAUTH_AZURE_SCOPE",
            format!(
                "{scope} is not the azure database for postgresql audience; a token for it \
                 would go to the database server as a password, so it is refused; unset \
                 PGAUTH_AZURE_SCOPE (the cloud, PGAUTH_AZURE_CLOUD={cloud}, picks the scope) or \
                 set it to {}",
                cloud.scope()
            ),
        )),
        Some(other) if other != cloud => Err(ConfigError::new(
            "PGAUTH_AZURE_SCOPE",
            format!(
                "the scope {scope} belongs to the {other} cloud but the cloud is {cloud}; \
                 set PGAUTH_AZURE_CLOUD={other} or unset PGAUTH_AZURE_SCOPE"
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Checks a fetched token before anyone can use it: it must be a JWT whose `aud` is the
/// database audience the source's `scope` asks for. The error text names the audiences (not
/// secret) and the setting to change, never the token.
#[cfg(any(feature = "azure", test))]
pub(crate) fn check_token(claims: Option<&JwtClaims>, scope: &str) -> Result<(), String> {
    let wanted = audience_of_scope(scope);
    let Some(cloud) = database_cloud(wanted) else {
        return Err(format!(
            "the scope {scope} is not the azure database for postgresql audience, so its \
             tokens are not sent; unset PGAUTH_AZURE_SCOPE, or ask for a scope such as {}",
            AzureCloud::Public.scope()
        ));
    };
    let Some(claims) = claims else {
        return Err(format!(
            "the token is not a jwt (entra access tokens are), so it is not an entra token for \
             {wanted} and is not sent; check that IDENTITY_ENDPOINT or AZURE_AUTHORITY_HOST \
             point at entra or a managed identity endpoint, and PGAUTH_AZURE_SCOPE"
        ));
    };
    match claims.aud.as_deref() {
        Some(aud) if database_cloud(aud) == Some(cloud) => Ok(()),
        Some(aud) => Err(format!(
            "the token's audience (aud) is {}, not {wanted} (azure database for postgresql, \
             the {cloud} cloud), so it is not sent; unset PGAUTH_AZURE_SCOPE (the cloud, \
             PGAUTH_AZURE_CLOUD, picks the scope) or set it to {}",
            printable(aud),
            cloud.scope()
        )),
        None => Err(format!(
            "the token has no audience (aud) claim, so it is not known to be for {wanted} and \
             is not sent; unset PGAUTH_AZURE_SCOPE (the cloud, PGAUTH_AZURE_CLOUD, picks the \
             scope) or set it to {}",
            cloud.scope()
        )),
    }
}

/// A claim value fit for one line of an error: control characters replaced, at most 200
/// characters (the value comes from outside).
#[cfg(any(feature = "azure", test))]
fn printable(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn check_scope_for(cloud: AzureCloud, scope: &str, expected: Result<(), &str>) {
        match (check_scope(scope, cloud), expected) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(fragment)) => {
                assert_eq!(e.setting(), "PGAUTH_AZURE_SCOPE", "{scope}: {e}");
                assert!(e.message().contains(fragment), "{scope}: {e}");
            }
            (got, _) => panic!("{cloud} {scope}: unexpected {got:?}"),
        }
    }

    #[test]
    fn scopes_of_other_services_are_refused() {
        use AzureCloud::*;
        let refused = "is not the azure database for postgresql audience";
        for scope in [
            "https://management.azure.com/.default",
            "https://management.azure.com/",
            "https://management.core.windows.net/.default",
            "https://graph.microsoft.com/.default",
            "https://graph.microsoft.com/User.Read",
            "https://database.windows.net/.default",
            "https://vault.azure.net/.default",
            "https://ossrdbms-aad.database.windows.net.example.test/.default",
            "https://ossrdbms-aad.database.windows.net/extra/.default",
            "http://ossrdbms-aad.database.windows.net/.default",
            "api://00000000-0000-0000-0000-000000000000/.default",
            "ossrdbms-aad.database.windows.net",
            "https://example.test/.default",
            "/.default",
        ] {
            check_scope_for(Public, scope, Err(refused));
        }
        check_scope_for(Public, "https://a b/.default", Err("not a valid scope"));
        check_scope_for(Public, "", Err("not a valid scope"));
        check_scope_for(
            Public,
            UsGov.scope(),
            Err("set PGAUTH_AZURE_CLOUD=usgov or unset"),
        );
        for cloud in AzureCloud::ALL {
            check_scope_for(cloud, cloud.scope(), Ok(()));
            check_scope_for(cloud, cloud.audience(), Ok(()));
            check_scope_for(cloud, &format!("{}/", cloud.audience()), Ok(()));
            let upper_host = format!("{}/.default", cloud.audience().to_ascii_uppercase());
            check_scope_for(cloud, &upper_host, Ok(()));
        }
    }

    fn claims(payload: serde_json::Value) -> JwtClaims {
        let token = format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(payload.to_string()));
        JwtClaims::parse(&token).expect("a jwt")
    }

    fn check(token: Option<JwtClaims>, scope: &str, expected: Result<(), &str>) {
        match (check_token(token.as_ref(), scope), expected) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(fragment)) => assert!(e.contains(fragment), "{scope}: {e}"),
            (got, _) => panic!("{token:?} {scope}: unexpected {got:?}"),
        }
    }

    #[test]
    fn tokens_for_other_audiences_are_not_sent() {
        let public = AzureCloud::Public.scope();
        let aud = |a: &str| Some(claims(serde_json::json!({ "aud": a })));
        check(
            aud("https://ossrdbms-aad.database.windows.net"),
            public,
            Ok(()),
        );
        check(
            aud("https://ossrdbms-aad.database.windows.net/"),
            public,
            Ok(()),
        );
        check(
            aud("https://management.azure.com"),
            public,
            Err(
                "the token's audience (aud) is https://management.azure.com, not https://ossrdbms-aad.database.windows.net",
            ),
        );
        check(
            aud("https://graph.microsoft.com"),
            public,
            Err("unset PGAUTH_AZURE_SCOPE"),
        );
        check(
            aud("https://ossrdbms-aad.database.usgovcloudapi.net"),
            public,
            Err("(azure database for postgresql, the public cloud)"),
        );
        check(
            aud("https://ossrdbms-aad.database.usgovcloudapi.net"),
            AzureCloud::UsGov.scope(),
            Ok(()),
        );
        check(
            Some(claims(serde_json::json!({ "exp": 1 }))),
            public,
            Err("no audience (aud) claim"),
        );
        check(None, public, Err("the token is not a jwt"));
        // A caller-supplied scope for another service: even a matching token is not sent.
        check(
            aud("https://management.azure.com"),
            "https://management.azure.com/.default",
            Err("is not the azure database for postgresql audience"),
        );
        check(
            aud("line\nbreak"),
            public,
            Err("the token's audience (aud) is line break,"),
        );
    }
}
