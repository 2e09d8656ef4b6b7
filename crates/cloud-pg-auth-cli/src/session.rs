//! Settings, credential and token, as every command needs them, plus a secret-free summary
//! of a token for people.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cloud_pg_auth::azure::JwtClaims;
use cloud_pg_auth::clock::rfc3339;
use cloud_pg_auth::engine::CredentialConfig;
use cloud_pg_auth::{
    AccessToken, Auth, AuthMethod, Env, Error, RootCerts, Settings, SslMode, TokenSource,
};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value, json};

/// Builds the token source the settings call for (from the environment they were read from).
pub(crate) async fn source(settings: &Settings) -> Result<Arc<dyn TokenSource>, Error> {
    cloud_pg_auth::source_from_settings(settings).await
}

/// The credential for one command, built the way engines build theirs (with the settings'
/// refresh policy, fallback password and role) from the source already built: no background
/// refresh (a command lives seconds).
pub(crate) async fn auth(settings: &Settings, source: Arc<dyn TokenSource>) -> Result<Auth, Error> {
    let mut config = CredentialConfig::new(settings.clone());
    config.set_token_source(source);
    config.disable_background_refresh();
    config.build_auth().await
}

/// Settings, credential and one token: what `token`, `env` and `psql` need.
pub(crate) struct Session {
    /// The validated settings.
    pub settings: Settings,
    /// The method resolved from them.
    pub method: AuthMethod,
    /// The credential.
    pub auth: Auth,
    /// A token valid now.
    pub token: AccessToken,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("settings", &self.settings)
            .field("method", &self.method)
            .field("auth", &self.auth)
            .field("token", &self.token)
            .finish()
    }
}

impl Session {
    /// Reads the settings from `env`, builds the credential and fetches a token.
    pub(crate) async fn open(env: &Env) -> Result<Self, Error> {
        let settings = Settings::from_env_vars(env)?;
        let method = settings.resolved_method()?;
        let auth = auth(&settings, source(&settings).await?).await?;
        let token = auth.token().await?;
        Ok(Self {
            settings,
            method,
            auth,
            token,
        })
    }

    /// The login role: `PGUSER`, else the name the token implies.
    pub(crate) fn user(&self) -> Result<String, Error> {
        login_user(&self.settings, &self.token)
    }
}

/// `PGUSER`, else the name the token implies, else an error saying to set `PGUSER`.
pub(crate) fn login_user(settings: &Settings, token: &AccessToken) -> Result<String, Error> {
    if let Some(user) = settings.get_user() {
        return Ok(user.to_string());
    }
    token
        .details()
        .get_username()
        .map(str::to_string)
        .ok_or_else(|| {
            Error::Config(cloud_pg_auth::azure::username_required_error(
                token.details(),
            ))
        })
}

/// Every environment variable libpq reads (libpq 15 to 18). A child given a token gets only
/// the ones the tool sets: an inherited `PGSERVICE` (with `PGSERVICEFILE`) would override
/// host and sslmode, since libpq ranks a service file above the environment, and send the
/// token where the service says.
///
/// Sources: libpq 15, the `PG*` names in Debian's `libpq.so.5.15` (15.18); libpq 16 added
/// PGREQUIREAUTH, PGSSLCERTMODE, PGGSSDELEGATION and PGLOADBALANCEHOSTS (fe-connect.c's
/// `PQconninfoOptions`), 17 PGSSLNEGOTIATION (postgresql.org/docs/17/libpq-envars.html), 18
/// PGMINPROTOCOLVERSION and PGMAXPROTOCOLVERSION (`min_protocol_version`,
/// `max_protocol_version`). Unsetting a name an older libpq does not know is harmless.
pub const LIBPQ_ENV_VARS: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGAPPNAME",
    "PGSSLMODE",
    "PGSSLNEGOTIATION",
    "PGREQUIRESSL",
    "PGSSLCOMPRESSION",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGSSLCERTMODE",
    "PGSSLROOTCERT",
    "PGSSLCRL",
    "PGSSLCRLDIR",
    "PGSSLSNI",
    "PGREQUIREPEER",
    "PGSSLMINPROTOCOLVERSION",
    "PGSSLMAXPROTOCOLVERSION",
    "PGMINPROTOCOLVERSION",
    "PGMAXPROTOCOLVERSION",
    "PGGSSENCMODE",
    "PGKRBSRVNAME",
    "PGGSSLIB",
    "PGGSSDELEGATION",
    "PGCONNECT_TIMEOUT",
    "PGCLIENTENCODING",
    "PGTARGETSESSIONATTRS",
    "PGLOADBALANCEHOSTS",
    "PGCHANNELBINDING",
    "PGREQUIREAUTH",
    "PGDATESTYLE",
    "PGTZ",
    "PGGEQO",
    "PGSYSCONFDIR",
    "PGLOCALEDIR",
];

/// The names of [`LIBPQ_ENV_VARS`] that `vars` (from [`libpq_vars`]) does not set: a child
/// must not inherit them.
#[must_use]
pub(crate) fn libpq_vars_to_unset(vars: &[(&'static str, String)]) -> Vec<&'static str> {
    LIBPQ_ENV_VARS
        .iter()
        .copied()
        .filter(|name| !vars.iter().any(|(set, _)| set == name))
        .collect()
}

/// The sslmode to hand to a libpq tool: the configured one when it verifies the server (or
/// when the loopback opt-in allows less, as it does for the library); otherwise
/// `verify-full`, since the password is a token.
#[must_use]
pub(crate) fn libpq_ssl_mode(settings: &Settings, method: AuthMethod) -> SslMode {
    let mode = settings.effective_ssl_mode().unwrap_or(SslMode::VerifyFull);
    // verify-ca checks only the chain: against the system's public roots, any publicly
    // trusted certificate would receive the token. Only a CA file the user named will do.
    if method.is_token()
        && mode == SslMode::VerifyCa
        && !matches!(settings.get_root_certs(), RootCerts::File(_))
    {
        return SslMode::VerifyFull;
    }
    if !method.is_token() || mode.verifies() {
        return mode;
    }
    if settings.get_insecure_loopback() && settings.host_is_loopback() {
        return mode;
    }
    SslMode::VerifyFull
}

/// `PGSSLROOTCERT` for a libpq tool. libpq has no copy of the Mozilla roots the library
/// bundles; `system` (libpq 16 and later) uses the operating system's store, which holds
/// the same public CAs.
#[must_use]
pub(crate) fn libpq_root_cert(settings: &Settings, mode: SslMode) -> Option<String> {
    if !mode.verifies() {
        return match settings.get_root_certs() {
            RootCerts::File(path) => Some(path.display().to_string()),
            _ => None,
        };
    }
    Some(match settings.get_root_certs() {
        RootCerts::File(path) => path.display().to_string(),
        _ => "system".to_string(),
    })
}

/// The libpq variables for a tool that logs in with `token` (PGPASSWORD included), in the
/// order they are printed.
pub(crate) fn libpq_vars(
    settings: &Settings,
    method: AuthMethod,
    token: &AccessToken,
) -> Result<Vec<(&'static str, String)>, Error> {
    let user = login_user(settings, token)?;
    let mode = libpq_ssl_mode(settings, method);
    let mut vars = vec![(
        "PGHOST",
        settings.get_host().unwrap_or_default().to_string(),
    )];
    if let Some(addr) = settings.get_hostaddr() {
        // Dial this address; libpq still verifies the certificate against PGHOST.
        vars.push(("PGHOSTADDR", addr.to_string()));
    }
    vars.extend([
        ("PGPORT", settings.get_port().to_string()),
        ("PGUSER", user.clone()),
        (
            "PGDATABASE",
            // libpq's default is the user name; say it, so a copied line means the same.
            settings.get_dbname().map_or(user, str::to_string),
        ),
        ("PGSSLMODE", mode.as_str().to_string()),
    ]);
    if let Some(root) = libpq_root_cert(settings, mode) {
        vars.push(("PGSSLROOTCERT", root));
    }
    if let Some(app) = settings.get_application_name() {
        vars.push(("PGAPPNAME", app.to_string()));
    }
    if let Some(timeout) = settings.get_connect_timeout() {
        vars.push(("PGCONNECT_TIMEOUT", timeout.as_secs().to_string()));
    }
    vars.push(("PGPASSWORD", token.secret().expose().to_string()));
    Ok(vars)
}

/// How long until `at`, for people: `59m 12s`, `23h 59m`, `expired 3m ago`.
#[must_use]
pub(crate) fn until(at: SystemTime, now: SystemTime) -> String {
    match at.duration_since(now) {
        Ok(left) => format!("in {}", human(left)),
        Err(e) => format!("expired {} ago", human(e.duration())),
    }
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h {:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// What a token says about itself, without the secret parts: for Azure the JWT claims
/// (`aud`, `appid`, `oid`, `tid`, `idtyp`, names, `exp`), for AWS the presigned request's
/// parameters (host, user, region, key id, date, lifetime; never the signature or the
/// session token).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TokenSummary {
    /// `(name, value)` pairs in display order.
    pub fields: Vec<(&'static str, String)>,
    /// The audience (Azure).
    pub audience: Option<String>,
    /// `host:port` the token is signed for (AWS).
    pub signed_target: Option<String>,
    /// `DBUser` (AWS).
    pub signed_user: Option<String>,
    /// Region in the credential scope (AWS).
    pub signed_region: Option<String>,
}

impl TokenSummary {
    /// The summary as a JSON object.
    #[must_use]
    pub(crate) fn to_json(&self) -> Value {
        let mut map = Map::new();
        for (k, v) in &self.fields {
            map.insert((*k).to_string(), json!(v));
        }
        Value::Object(map)
    }

    /// `name value, name value`.
    #[must_use]
    pub(crate) fn line(&self) -> String {
        self.fields
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Summarises `token` for `method`.
#[must_use]
pub(crate) fn summarize(method: AuthMethod, token: &AccessToken, now: SystemTime) -> TokenSummary {
    let mut summary = TokenSummary::default();
    let secret = token.secret().expose();
    match method {
        AuthMethod::Azure => match JwtClaims::parse(secret) {
            Some(claims) => {
                summary.audience = claims.aud.clone();
                let mut push = |k: &'static str, v: Option<String>| {
                    if let Some(v) = v {
                        summary.fields.push((k, v));
                    }
                };
                push("aud", claims.aud.clone());
                push("appid", claims.client_id().map(str::to_string));
                push("oid", claims.oid.clone());
                push("tid", claims.tid.clone());
                push("idtyp", claims.idtyp.clone());
                if let Some((name, source)) = claims.username() {
                    summary
                        .fields
                        .push(("username", format!("{name} (from {})", source.as_str())));
                }
            }
            None => summary
                .fields
                .push(("format", "not a JWT (no claims to show)".to_string())),
        },
        AuthMethod::Aws | AuthMethod::Dsql => {
            let query = secret.split_once('?');
            let target = query.map(|(t, _)| t.trim_end_matches('/').to_string());
            let params: Vec<(String, String)> = query
                .map(|(_, q)| {
                    q.split('&')
                        .filter_map(|pair| pair.split_once('='))
                        .map(|(k, v)| {
                            (
                                k.to_string(),
                                percent_decode_str(v).decode_utf8_lossy().into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let get = |name: &str| {
                params
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            let credential = get("X-Amz-Credential").unwrap_or_default();
            let scope: Vec<&str> = credential.split('/').collect();
            summary.signed_target = target.clone();
            summary.signed_user = get("DBUser");
            summary.signed_region = scope.get(2).map(|s| (*s).to_string());
            if let Some(t) = target {
                summary.fields.push(("signed for", t));
            }
            if let Some(u) = get("DBUser") {
                summary.fields.push(("user", u));
            }
            // DSQL tokens name no user: the action says admin (DbConnectAdmin) or not.
            if let Some(action) = get("Action").filter(|_| method == AuthMethod::Dsql) {
                summary.fields.push(("action", action));
            }
            if let Some(r) = &summary.signed_region {
                summary.fields.push(("region", r.clone()));
            }
            if let Some(key) = scope.first().filter(|k| !k.is_empty()) {
                // The key id names the credentials; it is not the secret, but half of it is
                // enough to tell keys apart in a support ticket.
                let shown: String = key.chars().take(8).collect();
                summary.fields.push(("access key", format!("{shown}…")));
            }
            if let Some(date) = get("X-Amz-Date") {
                summary.fields.push(("signed at", date));
            }
            if let Some(secs) = get("X-Amz-Expires") {
                summary.fields.push(("valid for", format!("{secs}s")));
            }
            summary.fields.push((
                "session token",
                if get("X-Amz-Security-Token").is_some() {
                    "yes (temporary credentials)"
                } else {
                    "no (long-term access key)"
                }
                .to_string(),
            ));
        }
        AuthMethod::Gcp => {
            // Google's tokens are opaque: what is known comes from the source.
            summary.fields.push((
                "kind",
                "google oauth 2 access token (opaque, nothing to read in it)".to_string(),
            ));
            let details = token.details();
            if let Some(identity) = details.get_identity() {
                summary.fields.push(("principal", identity.to_string()));
            }
            if let Some(name) = details.get_username() {
                let from = details
                    .get_username_source()
                    .map_or("the principal", |s| s.as_str());
                summary
                    .fields
                    .push(("username", format!("{name} (from {from})")));
            }
        }
        _ => summary
            .fields
            .push(("kind", "static password (PGPASSWORD)".to_string())),
    }
    if let Some(exp) = token.expires_at() {
        summary
            .fields
            .push(("expires", format!("{} ({})", rfc3339(exp), until(exp, now))));
    }
    summary
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    fn check(method: AuthMethod, secret: &str, expected: &[(&str, &str)]) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let token = AccessToken::new(secret).with_expiry(now + Duration::from_secs(3000));
        let summary = summarize(method, &token, now);
        for (k, v) in expected {
            let got = summary.fields.iter().find(|(name, _)| name == k);
            assert_eq!(
                got.map(|(_, value)| value.as_str()),
                Some(*v),
                "{k}: {summary:?}"
            );
        }
        let printed = format!("{} {} {summary:?}", summary.line(), summary.to_json());
        for part in secret.split(['.', '&', '=']).filter(|p| p.len() > 30) {
            assert!(
                !printed.contains(part),
                "secret part {part} shown: {printed}"
            );
        }
    }

    #[test]
    fn summaries_show_claims_and_never_the_secret() {
        let payload = URL_SAFE_NO_PAD.encode(
            br#"{"aud":"https://ossrdbms-aad.database.windows.net","appid":"11111111-2222-3333-4444-555555555555","oid":"66666666-7777-8888-9999-000000000000","tid":"t","idtyp":"app","xms_mirid":"/subscriptions/s/resourcegroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/my-app"}"#,
        );
        let jwt = format!(
            "eyJhbGciOiJSUzI1NiJ9.{payload}.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmUtc2lnbmF0dXJl"
        );
        check(
            AuthMethod::Azure,
            &jwt,
            &[
                ("aud", "https://ossrdbms-aad.database.windows.net"),
                ("appid", "11111111-2222-3333-4444-555555555555"),
                ("oid", "66666666-7777-8888-9999-000000000000"),
                ("username", "my-app (from xms_mirid)"),
                ("expires", "2023-11-14T23:03:20Z (in 50m 00s)"),
            ],
        );
        check(
            AuthMethod::Azure,
            "opaque",
            &[("format", "not a JWT (no claims to show)")],
        );
        let rds = "db.example.us-east-1.rds.amazonaws.com:5432/?Action=connect&DBUser=app_user&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLEKEY123456%2F20240826%2Fus-east-1%2Frds-db%2Faws4_request&X-Amz-Date=20240826T220000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Security-Token=FwoGZXIvYXdzEJr_session_token_that_is_long_enough_to_matter&X-Amz-Signature=dd0cba843009474347af724090233265628ace491ea17ce3eb3da098b983ad89";
        check(
            AuthMethod::Aws,
            rds,
            &[
                ("signed for", "db.example.us-east-1.rds.amazonaws.com:5432"),
                ("user", "app_user"),
                ("region", "us-east-1"),
                ("access key", "AKIAEXAM…"),
                ("valid for", "900s"),
                ("session token", "yes (temporary credentials)"),
            ],
        );
        let dsql = "abc.dsql.us-east-1.on.aws/?Action=DbConnectAdmin&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLEKEY123456%2F20240827%2Fus-east-1%2Fdsql%2Faws4_request&X-Amz-Date=20240827T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=267cf8d04d84444f7a62d5bdb40c44bfc6cb13dd6c64fa7f772df6bbaa90fff1";
        check(
            AuthMethod::Dsql,
            dsql,
            &[
                ("signed for", "abc.dsql.us-east-1.on.aws"),
                ("action", "DbConnectAdmin"),
                ("region", "us-east-1"),
                ("valid for", "3600s"),
                ("session token", "no (long-term access key)"),
            ],
        );
        check(
            AuthMethod::Password,
            "hunter2-hunter2-hunter2-hunter2-x",
            &[("kind", "static password (PGPASSWORD)")],
        );
    }

    /// The sslmode a libpq tool gets for `mode` with `roots`, for a token.
    fn check_mode(mode: SslMode, roots: RootCerts, expected: SslMode) {
        let settings = Settings::default()
            .host("db.example.internal")
            .method(AuthMethod::Azure)
            .ssl_mode(mode)
            .root_certs(roots.clone());
        assert_eq!(
            libpq_ssl_mode(&settings, AuthMethod::Azure),
            expected,
            "{mode:?} {roots:?}"
        );
    }

    #[test]
    fn verify_ca_without_a_ca_file_becomes_verify_full_for_libpq() {
        let file = RootCerts::File("/etc/ssl/private-ca.pem".into());
        // Against public roots, chain-only checking would let any certificate through.
        check_mode(SslMode::VerifyCa, RootCerts::Bundled, SslMode::VerifyFull);
        check_mode(SslMode::VerifyCa, RootCerts::System, SslMode::VerifyFull);
        check_mode(SslMode::VerifyCa, file.clone(), SslMode::VerifyCa);
        check_mode(SslMode::VerifyFull, RootCerts::Bundled, SslMode::VerifyFull);
        check_mode(SslMode::Require, file, SslMode::VerifyFull);
    }

    fn check_until(secs: i64, expected: &str) {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = if secs >= 0 {
            now + Duration::from_secs(secs as u64)
        } else {
            now - Duration::from_secs((-secs) as u64)
        };
        assert_eq!(until(at, now), expected);
    }

    #[test]
    fn durations_read_like_clocks() {
        check_until(5, "in 5s");
        check_until(3599, "in 59m 59s");
        check_until(86_340, "in 23h 59m");
        check_until(-180, "expired 3m 00s ago");
    }
}
