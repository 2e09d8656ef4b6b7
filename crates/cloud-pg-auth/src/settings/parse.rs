//! Reading settings: the libpq environment, `PGAUTH_*` and a `postgres://` URL. Errors never
//! quote the URL, which may hold a password.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use percent_encoding::percent_decode_str;

use super::{AuthMethod, RootCerts, Settings};
use crate::aws::AwsOptions;
use crate::azure::AzureOptions;
use crate::error::ConfigError;
use crate::gcp::GcpOptions;
use crate::{Env, Secret};

impl Settings {
    /// Reads the process environment, then validates. `PGAUTH_METHOD` may stay unset for a
    /// host of no known cloud without a password: a token source given to the engine's
    /// builder (`token_source(..)`) then decides, and the engine's build refuses without one.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_vars(&Env::from_process())
    }

    /// Reads settings from `env`: the libpq variables, `DATABASE_URL` (whose parts win over
    /// the separate variables, as a libpq connection string does), `PGAUTH_*` and the cloud
    /// variables. Validates before returning, as [`Settings::from_env`] does.
    pub fn from_env_vars(env: &Env) -> Result<Self, ConfigError> {
        let mut s = Self {
            host: env.get("PGHOST").map(str::to_string),
            dbname: env.get("PGDATABASE").map(str::to_string),
            user: env.get("PGUSER").map(str::to_string),
            password: env.secret("PGPASSWORD"),
            application_name: env.get("PGAPPNAME").map(str::to_string),
            options: env
                .get("PGOPTIONS")
                .filter(|o| !o.trim().is_empty())
                .map(str::to_string),
            env: env.clone(),
            ..Self::default()
        };
        if let Some(addr) = env.get("PGHOSTADDR") {
            s.hostaddr = Some(parse_hostaddr("PGHOSTADDR", addr)?);
        }
        if let Some(port) = env.get("PGPORT") {
            s.port = parse_port("PGPORT", port)?;
        }
        if let Some(mode) = env.get("PGSSLMODE") {
            s.ssl_mode = Some(mode.parse()?);
        }
        if let Some(root) = env.get("PGSSLROOTCERT") {
            s.root_certs = parse_root_certs(root);
        }
        if let Some(timeout) = env.get("PGCONNECT_TIMEOUT") {
            s.connect_timeout = parse_timeout("PGCONNECT_TIMEOUT", timeout)?;
        }
        if let Some(attrs) = env.get("PGTARGETSESSIONATTRS") {
            s.target_session_attrs = attrs.parse()?;
        }
        if let Some(method) = env.get("PGAUTH_METHOD") {
            s.method = method.parse()?;
        }
        if let Some(flag) = env.get("PGAUTH_INSECURE_LOOPBACK") {
            s.insecure_loopback = parse_bool("PGAUTH_INSECURE_LOOPBACK", flag)?;
        }
        s.fallback_password = env.secret("PGAUTH_FALLBACK_PASSWORD");
        s.fallback_user = env.get("PGAUTH_FALLBACK_USER").map(str::to_string);
        s.migration_user = env.get("PGAUTH_MIGRATION_USER").map(str::to_string);
        s.migration_azure_client_id = env
            .get("PGAUTH_MIGRATION_AZURE_CLIENT_ID")
            .map(str::to_string);
        if let Some(url) = env.secret("DATABASE_URL") {
            s.apply_url("DATABASE_URL", url.expose())?;
        }
        s.azure = AzureOptions::from_env(env)?;
        s.aws = AwsOptions::from_env(env)?;
        s.gcp = GcpOptions::from_env(env)?;
        check_one_cloud(env, s.resolved_method_lenient())?;
        s.validate_read()?;
        Ok(s)
    }

    /// Parses a `postgres://` or `postgresql://` URL (or libpq's key=value form,
    /// `host=db dbname=app sslmode=verify-full`, with the same names), then validates. Query parameters take
    /// libpq's names (`host`, `hostaddr`, `port`, `user`, `password`, `dbname`, `sslmode`,
    /// `sslrootcert`, `application_name`, `connect_timeout`, `options`,
    /// `target_session_attrs`, `keepalives`, `keepalives_idle`, `keepalives_interval`,
    /// `keepalives_count`) plus `pgauth_method` and
    /// `pgauth_insecure_loopback`. Errors never quote the URL: it may hold a password. As
    /// with [`Settings::from_env`], the method may be left to an engine's token source.
    pub fn from_url(url: &str) -> Result<Self, ConfigError> {
        let mut s = Self::default();
        s.apply_url("url", url)?;
        s.validate_read()?;
        Ok(s)
    }

    fn apply_url(&mut self, setting: &str, raw: &str) -> Result<(), ConfigError> {
        let bad = |msg: &str| ConfigError::new(setting, msg);
        let Some(rest) = raw
            .strip_prefix("postgres://")
            .or_else(|| raw.strip_prefix("postgresql://"))
        else {
            if super::conninfo::is_conninfo(raw) {
                return self.apply_conninfo(setting, raw);
            }
            return Err(bad(
                "must start with postgres:// or postgresql://, or be libpq's key=value form (host=... dbname=...)",
            ));
        };
        check_url_shape(rest).map_err(|msg| bad(&msg))?;
        // Past the shape check, an '@' after the host can only be a password with an
        // unencoded '/', '?' or '#'; then every error stays generic so none quotes a piece.
        let suspect = url_has_stray_at(rest);
        let generic = || bad(UNENCODED_USERINFO);
        let uri = fluent_uri::Uri::parse(raw).map_err(|e| {
            if suspect {
                generic()
            } else {
                // The kind only: the index would tell where in a password the fault is.
                let kind = e.to_string();
                let kind = kind
                    .split(" at index")
                    .next()
                    .unwrap_or_default()
                    .to_string();
                if kind.contains("percent-encoded") {
                    bad("has a malformed %-escape; encode '%' as %25")
                } else {
                    bad(&format!(
                        "is not a valid URL ({kind}); percent-encode special characters"
                    ))
                }
            }
        })?;
        let authority = uri.authority();
        if let Some(userinfo) = authority.as_ref().and_then(|a| a.userinfo()) {
            // RFC 3986: the first ':' ends the user name; an encoded one is %3A.
            let (user, password) = match userinfo.as_str().split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo.as_str(), None),
            };
            let user = decode(setting, "user name", user)?;
            if !user.is_empty() {
                self.user = Some(user);
            }
            if let Some(password) = password {
                self.password = Some(Secret::new(decode(setting, "password", password)?));
            }
        }
        if let Some(authority) = &authority {
            let host = authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']');
            if !host.is_empty() {
                self.host = Some(decode(setting, "host", host)?);
            }
            if let Some(port) = authority
                .port()
                .map(|p| p.as_str())
                .filter(|p| !p.is_empty())
            {
                self.port = parse_port(&format!("{setting} port"), port)?;
            }
        }
        let db = decode(
            setting,
            "database",
            uri.path().as_str().trim_start_matches('/'),
        )?;
        if !db.is_empty() {
            self.dbname = Some(db);
        }
        for pair in uri
            .query()
            .map_or("", |q| q.as_str())
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(if suspect {
                    generic()
                } else {
                    bad(&format!(
                        "query parameter {} has no value; write name=value",
                        quoted_key(pair)
                    ))
                });
            };
            let value = decode(setting, "query parameter", value)?;
            if !self.apply_param(&format!("{setting} {key}"), key, value)? {
                return Err(if suspect {
                    generic()
                } else {
                    bad(&format!(
                        "unknown query parameter {}; supported: {}",
                        quoted_key(key),
                        supported_params()
                    ))
                });
            }
        }
        Ok(())
    }

    /// Applies one libpq parameter read from a URL's query or a key=value string; `Ok(false)`
    /// for a name not read here. `name` is the setting errors name.
    pub(super) fn apply_param(
        &mut self,
        name: &str,
        key: &str,
        value: String,
    ) -> Result<bool, ConfigError> {
        match key {
            "sslmode" => {
                self.ssl_mode = Some(
                    value
                        .parse()
                        .map_err(|e: ConfigError| ConfigError::new(name, e.message()))?,
                )
            }
            "sslrootcert" => self.root_certs = parse_root_certs(&value),
            "application_name" => self.application_name = Some(value),
            "connect_timeout" => self.connect_timeout = parse_timeout(name, &value)?,
            "host" => self.host = Some(value),
            "hostaddr" => self.hostaddr = Some(parse_hostaddr(name, &value)?),
            "port" => self.port = parse_port(name, &value)?,
            "user" => self.user = Some(value),
            "dbname" => self.dbname = Some(value),
            "password" => self.password = Some(Secret::new(value)),
            "pgauth_method" => {
                let method: AuthMethod = value
                    .parse()
                    .map_err(|e: ConfigError| ConfigError::new(name, e.message()))?;
                if self.method != AuthMethod::Auto
                    && method != AuthMethod::Auto
                    && method != self.method
                {
                    return Err(ConfigError::new(
                        name,
                        format!(
                            "says {} but PGAUTH_METHOD says {}; two methods at once, keep one",
                            method.as_str(),
                            self.method.as_str()
                        ),
                    ));
                }
                self.method = method;
            }
            "pgauth_insecure_loopback" => self.insecure_loopback = parse_bool(name, &value)?,
            _ => return self.apply_session_param(key, &value, name),
        }
        Ok(true)
    }
}

/// The URL parameters (and key=value keywords) read, for the refusal of an unknown one.
pub(super) fn supported_params() -> String {
    const BASIC: &[&str] = &[
        "sslmode",
        "sslrootcert",
        "application_name",
        "connect_timeout",
        "host",
        "hostaddr",
        "port",
        "user",
        "dbname",
        "password",
    ];
    let auth = ["pgauth_method", "pgauth_insecure_loopback"];
    BASIC
        .iter()
        .chain(super::session::SESSION_PARAMS)
        .chain(&auth)
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

/// Azure and AWS settings together are two clouds at once: refuse rather than guess. So are
/// a cloud's own settings with another cloud's method (Google's product included).
fn check_one_cloud(env: &Env, method: Option<AuthMethod>) -> Result<(), ConfigError> {
    const AZURE_ONLY: &[&str] = &[
        "PGAUTH_AZURE_CREDENTIAL",
        "PGAUTH_AZURE_CLOUD",
        "PGAUTH_AZURE_SCOPE",
    ];
    const AWS_ONLY: &[&str] = &[
        "PGAUTH_AWS_SIGNING_HOST",
        "PGAUTH_AWS_SIGNING_PORT",
        crate::aws::dsql::TOKEN_EXPIRES_VAR,
    ];
    let azure = AZURE_ONLY.iter().find(|n| env.is_set(n));
    let aws = AWS_ONLY.iter().find(|n| env.is_set(n));
    // GOOGLE_APPLICATION_CREDENTIALS may serve other Google APIs: only the product counts.
    const GCP_PRODUCT: &str = "PGAUTH_GCP_PRODUCT";
    match method {
        Some(AuthMethod::Gcp) => {
            if let Some(other) = azure.or(aws) {
                return Err(ConfigError::new(
                    *other,
                    "is an Azure or AWS setting but PGAUTH_METHOD is gcp; unset it or set PGAUTH_METHOD to that cloud's method",
                ));
            }
        }
        Some(m) if env.is_set(GCP_PRODUCT) => {
            return Err(ConfigError::new(
                GCP_PRODUCT,
                format!(
                    "sets the google database product but PGAUTH_METHOD resolves to {}; unset it or set PGAUTH_METHOD=gcp",
                    m.as_str()
                ),
            ));
        }
        _ => {}
    }
    match (azure, aws, method) {
        (Some(a), Some(b), _) => Err(ConfigError::new(
            *a,
            format!(
                "both an Azure setting ({a}) and an AWS setting ({b}) are set; a connection uses one cloud, unset one of them"
            ),
        )),
        (Some(a), None, Some(m @ (AuthMethod::Aws | AuthMethod::Dsql))) => Err(ConfigError::new(
            *a,
            format!(
                "is an Azure setting but PGAUTH_METHOD resolves to {}; unset it or set PGAUTH_METHOD=azure",
                m.as_str()
            ),
        )),
        (None, Some(b), Some(AuthMethod::Azure)) => Err(ConfigError::new(
            *b,
            "is an AWS setting but PGAUTH_METHOD resolves to azure; unset it or set PGAUTH_METHOD=aws",
        )),
        _ => Ok(()),
    }
}

/// The refusal of a URL whose user info cannot be told apart from the rest. Shows no part of
/// the URL, which may hold a password.
const UNENCODED_USERINFO: &str = "cannot be read unambiguously, probably a password with an unencoded character; percent-encode '@' as %40, '/' as %2F, '?' as %3F, '#' as %23 and '%' as %25 in the user name and password (the URL is not shown, since it may hold a password)";

/// Refuses URLs that a parser would read differently from what the writer meant: an unencoded
/// '@', '/', '?' or '#' in a password moves the host into the password or the password into
/// the host, path or query.
fn check_url_shape(rest: &str) -> Result<(), String> {
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(authority_end);
    if authority.matches('@').count() > 1 || rest.contains('#') {
        return Err(UNENCODED_USERINFO.to_string());
    }
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if hostport.contains(',') {
        return Err(HOST_LIST.to_string());
    }
    let path = after.split('?').next().unwrap_or("");
    if path.contains('@') {
        return Err(UNENCODED_USERINFO.to_string());
    }
    Ok(())
}

/// An '@' after the authority, with none inside it: a password that held '/', '?' or '#'.
fn url_has_stray_at(rest: &str) -> bool {
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(authority_end);
    !authority.contains('@') && after.contains('@')
}

/// A query key as it may be quoted in a message: only when it looks like a parameter name,
/// since anything else may be a piece of a mistyped password.
fn quoted_key(key: &str) -> String {
    if !key.is_empty()
        && key.len() <= 40
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        format!("{key:?}")
    } else {
        "(not shown: it is not a parameter name)".to_string()
    }
}

pub(super) const HOST_LIST: &str = "lists several hosts; give one host (each token is signed or issued for one server, and host lists are not supported yet)";

pub(super) fn parse_hostaddr(setting: &str, value: &str) -> Result<IpAddr, ConfigError> {
    if value.contains(',') {
        return Err(ConfigError::new(setting, HOST_LIST));
    }
    value
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| {
            ConfigError::new(
                setting,
                format!(
                    "{value:?} is not a numeric IP address; hostaddr takes the address to dial, the name stays in PGHOST"
                ),
            )
        })
}

fn decode(setting: &str, what: &str, raw: &str) -> Result<String, ConfigError> {
    // Reject malformed escapes instead of passing them through.
    let bytes = raw.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err(ConfigError::new(
                setting,
                format!("the {what} has a malformed %-escape; encode '%' as %25"),
            ));
        }
    }
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            ConfigError::new(
                setting,
                format!("the {what} is not valid UTF-8 after %-decoding"),
            )
        })
}

pub(super) fn parse_port(setting: &str, value: &str) -> Result<u16, ConfigError> {
    match value.trim().parse::<u32>() {
        Ok(p) if (1..=65_535).contains(&p) => Ok(p as u16),
        _ => Err(ConfigError::new(
            setting,
            format!("{value:?} is not a port; use a number from 1 to 65535"),
        )),
    }
}

pub(super) fn parse_timeout(setting: &str, value: &str) -> Result<Option<Duration>, ConfigError> {
    match value.trim().parse::<i64>() {
        // libpq: zero, negative or absent means wait forever.
        Ok(secs) if secs <= 0 => Ok(None),
        // libpq raises timeouts under 2 s to 2 s.
        Ok(secs) => Ok(Some(Duration::from_secs(secs.max(2) as u64))),
        Err(_) => Err(ConfigError::new(
            setting,
            format!("{value:?} is not a whole number of seconds"),
        )),
    }
}

/// libpq-style booleans: 1/0, true/false, yes/no, on/off.
pub(crate) fn parse_bool(setting: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::new(
            setting,
            format!("{value:?} is not a boolean; use 1 or 0"),
        )),
    }
}

pub(super) fn parse_root_certs(value: &str) -> RootCerts {
    match value {
        "system" => RootCerts::System,
        path => RootCerts::File(PathBuf::from(path)),
    }
}
