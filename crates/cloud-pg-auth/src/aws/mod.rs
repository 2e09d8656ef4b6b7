//! IAM auth tokens for AWS RDS and Aurora, and for Amazon Aurora DSQL ([`dsql`]).
//!
//! This module is always compiled: host and user name checks and the options are plain data.
//! The token source itself, [`AwsSource`], needs the `aws` feature (aws-sdk-rds's
//! `auth_token` generator and aws-config's default credentials chain).
//!
//! A token is a SigV4-presigned `connect` request for `host:port` and the database user,
//! signed locally with the current AWS credentials, valid for 15 minutes or until the
//! credentials expire, whichever comes first.

#[cfg(any(feature = "aws", test))]
use std::net::Ipv6Addr;
use std::time::Duration;

use crate::env::Env;
use crate::error::ConfigError;

pub mod dsql;
#[cfg(feature = "aws")]
mod dsql_source;
#[cfg(feature = "aws")]
mod source;
#[cfg(feature = "aws")]
#[cfg_attr(docsrs, doc(cfg(feature = "aws")))]
pub use source::AwsSource;

/// How long an RDS IAM token is valid at most.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(900);

/// The host name suffixes of RDS and Aurora endpoints (instances, clusters, proxies).
const RDS_SUFFIXES: [&str; 2] = [".rds.amazonaws.com", ".rds.amazonaws.com.cn"];

/// Whether `host` is an RDS or Aurora endpoint (`*.rds.amazonaws.com`, `*.rds.amazonaws.com.cn`).
#[must_use]
pub fn is_rds_host(host: &str) -> bool {
    rds_prefix(host).is_some()
}

/// The part of an RDS host name before the RDS suffix, lower-cased.
fn rds_prefix(host: &str) -> Option<String> {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    RDS_SUFFIXES
        .iter()
        .find_map(|suffix| host.strip_suffix(suffix))
        .filter(|prefix| !prefix.is_empty() && !prefix.starts_with('.'))
        .map(str::to_string)
}

/// The region in an RDS host name (`db.abc123.eu-west-1.rds.amazonaws.com` → `eu-west-1`)
/// or an Aurora DSQL endpoint (`abc.dsql.eu-west-1.on.aws` → `eu-west-1`).
#[must_use]
pub fn region_from_host(host: &str) -> Option<String> {
    let Some(prefix) = rds_prefix(host) else {
        return dsql::region_from_dsql_host(host);
    };
    let region = prefix.rsplit('.').next()?;
    is_region(region).then(|| region.to_string())
}

/// Whether `s` is shaped like an AWS region (`us-east-1`, `us-gov-west-1`, `cn-north-1`).
fn is_region(s: &str) -> bool {
    s.contains('-')
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.ends_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Checks that a database user name can go into a token. aws-sdk-rds does not encode the
/// name and panics on one that is not URL-safe, so only RFC 3986 unreserved characters
/// (letters, digits, `-`, `.`, `_`, `~`) are accepted.
///
/// # Errors
///
/// A [`ConfigError`] for `PGUSER` naming the offending character.
pub fn validate_username(user: &str) -> Result<(), ConfigError> {
    if user.is_empty() {
        return Err(ConfigError::new(
            "PGUSER",
            "rds iam authentication needs a database user name; set PGUSER",
        ));
    }
    if let Some(bad) = user
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')))
    {
        return Err(ConfigError::new(
            "PGUSER",
            format!(
                "the user name {user:?} contains {bad:?}, which an rds iam token cannot carry; \
                 use a role name made of letters, digits, '-', '.', '_' and '~'"
            ),
        ));
    }
    Ok(())
}

/// Whether `host` is a name a token can carry unencoded (letters, digits, `-`, `.`, `_`).
fn is_signable_name(host: &str) -> bool {
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

/// Checks the host that goes into a token and brackets a bare IPv6 address.
#[cfg(any(feature = "aws", test))]
pub(crate) fn signing_host(host: &str, setting: &str) -> Result<String, ConfigError> {
    let host = host.trim();
    if host.parse::<Ipv6Addr>().is_ok() {
        return Ok(format!("[{host}]"));
    }
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'))
        && inner.parse::<Ipv6Addr>().is_ok()
    {
        return Ok(host.to_string());
    }
    if !is_signable_name(host) {
        return Err(ConfigError::new(
            setting,
            format!("{host:?} is not a host name that can be signed; use the rds endpoint name"),
        ));
    }
    Ok(host.to_string())
}

/// Settings of the AWS token source. Build with [`AwsOptions::from_env`] or in code with
/// `AwsOptions::default()` and the builder methods, each named after the setting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsOptions {
    /// The region to sign for (`AWS_REGION`, else `AWS_DEFAULT_REGION`); parsed from an RDS
    /// host name when unset.
    pub(crate) region: Option<String>,
    /// The port to sign instead of the one connected to (`PGAUTH_AWS_SIGNING_PORT`), for a
    /// tunnel whose local port differs from the instance's. There is no signing *host*: the
    /// token is always made for `host`, the very name TLS verifies; a tunnel or a private
    /// address goes in `hostaddr` (`PGHOSTADDR`).
    pub(crate) signing_port: Option<u16>,
    /// The shared config profile for credentials (`AWS_PROFILE`).
    pub(crate) profile: Option<String>,
    /// The lifetime of Aurora DSQL tokens (`PGAUTH_DSQL_TOKEN_EXPIRES`, seconds); 900 s
    /// when unset. RDS tokens always live 900 s.
    pub(crate) dsql_token_expires: Option<Duration>,
}

/// Environment variables [`AwsOptions::from_env`] reads. `AwsSource::load` (feature `aws`)
/// also reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`, and
/// aws-config's default chain reads the standard `AWS_*` variables of the process.
pub const ENV_VARS: &[&str] = &[
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "PGAUTH_AWS_SIGNING_PORT",
    "AWS_PROFILE",
    dsql::TOKEN_EXPIRES_VAR,
];

impl AwsOptions {
    /// Reads the settings from `env` (see [`ENV_VARS`]).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the variable to fix.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let region = match (env.get("AWS_REGION"), env.get("AWS_DEFAULT_REGION")) {
            (Some(r), _) => Some(("AWS_REGION", r)),
            (None, Some(r)) => Some(("AWS_DEFAULT_REGION", r)),
            (None, None) => None,
        };
        let region = match region {
            Some((name, r)) if !is_region(r.trim()) => {
                return Err(ConfigError::new(
                    name,
                    format!("{r:?} is not an aws region; use one such as us-east-1"),
                ));
            }
            Some((_, r)) => Some(r.trim().to_string()),
            None => None,
        };
        if env.is_set("PGAUTH_AWS_SIGNING_HOST") {
            // Signing for one name while TLS verifies another would hand the token to
            // whoever holds a certificate for the dialled name.
            return Err(ConfigError::new(
                "PGAUTH_AWS_SIGNING_HOST",
                "is no longer supported; put the RDS endpoint name in PGHOST (the token is signed for it and TLS verifies it) and the address to dial, such as a tunnel's 127.0.0.1, in PGHOSTADDR",
            ));
        }
        let signing_port = match env.get("PGAUTH_AWS_SIGNING_PORT") {
            Some(p) => Some(
                p.trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| {
                        ConfigError::new(
                            "PGAUTH_AWS_SIGNING_PORT",
                            format!("{p:?} is not a port; use a number from 1 to 65535"),
                        )
                    })?,
            ),
            None => None,
        };
        let dsql_token_expires = match env.get(dsql::TOKEN_EXPIRES_VAR) {
            Some(value) => Some(dsql::parse_token_expires(value)?),
            None => None,
        };
        Ok(Self {
            region,
            signing_port,
            profile: env.get("AWS_PROFILE").map(str::to_string),
            dsql_token_expires,
        })
    }

    /// The region to sign for: `region`, else parsed from `host`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for `AWS_REGION` when none of them gives one.
    pub fn resolve_region(&self, host: &str) -> Result<String, ConfigError> {
        if let Some(region) = &self.region {
            if !is_region(region) {
                return Err(ConfigError::new(
                    "AWS_REGION",
                    format!("{region:?} is not an aws region; use one such as us-east-1"),
                ));
            }
            return Ok(region.clone());
        }
        region_from_host(host).ok_or_else(|| {
            ConfigError::new(
                "AWS_REGION",
                format!(
                    "cannot tell the aws region: {host} is not an rds host name \
                     (*.<region>.rds.amazonaws.com) nor an aurora dsql endpoint \
                     (*.dsql.<region>.on.aws); set AWS_REGION"
                ),
            )
        })
    }

    /// Sets the region to sign for (`AWS_REGION`).
    #[must_use]
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Sets the port to sign instead of the one connected to (`PGAUTH_AWS_SIGNING_PORT`).
    #[must_use]
    pub fn signing_port(mut self, port: u16) -> Self {
        self.signing_port = Some(port);
        self
    }

    /// Sets the shared config profile for credentials (`AWS_PROFILE`).
    #[must_use]
    pub fn profile(mut self, profile: impl Into<String>) -> Self {
        self.profile = Some(profile.into());
        self
    }

    /// The port signed instead of the one connected to, when set.
    #[must_use]
    pub fn get_signing_port(&self) -> Option<u16> {
        self.signing_port
    }

    /// Sets the lifetime of Aurora DSQL tokens (`PGAUTH_DSQL_TOKEN_EXPIRES`), from 1 s to
    /// one week; checked when the source is built.
    #[must_use]
    pub fn dsql_token_expires(mut self, expires: Duration) -> Self {
        self.dsql_token_expires = Some(expires);
        self
    }

    /// The lifetime of Aurora DSQL tokens: as set, else [`dsql::DEFAULT_TOKEN_EXPIRES`].
    #[must_use]
    pub fn get_dsql_token_expires(&self) -> Duration {
        self.dsql_token_expires
            .unwrap_or(dsql::DEFAULT_TOKEN_EXPIRES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_rds(host: &str, rds: bool, region: Option<&str>) {
        assert_eq!(is_rds_host(host), rds, "{host}");
        assert_eq!(region_from_host(host).as_deref(), region, "{host}");
    }

    #[test]
    fn rds_hosts_and_regions() {
        check_rds(
            "prod-instance.us-east-1.rds.amazonaws.com",
            true,
            Some("us-east-1"),
        );
        check_rds(
            "db.cxyz123abc.eu-west-2.rds.amazonaws.com",
            true,
            Some("eu-west-2"),
        );
        check_rds(
            "mycluster.cluster-ro-cxyz.ap-southeast-1.rds.amazonaws.com",
            true,
            Some("ap-southeast-1"),
        );
        check_rds(
            "proxy.proxy-abc.us-gov-west-1.rds.amazonaws.com.",
            true,
            Some("us-gov-west-1"),
        );
        check_rds(
            "DB.ABC.CN-NORTH-1.RDS.AMAZONAWS.COM.CN",
            true,
            Some("cn-north-1"),
        );
        check_rds("db.abc.rds.amazonaws.com", true, None);
        check_rds("rds.amazonaws.com", false, None);
        check_rds(".rds.amazonaws.com", false, None);
        check_rds("db.us-east-1.rds.amazonaws.com.evil.example", false, None);
        check_rds("db.postgres.database.azure.com", false, None);
        check_rds("localhost", false, None);
        check_rds("", false, None);
    }

    fn check_user(user: &str, ok: bool) {
        let got = validate_username(user);
        assert_eq!(got.is_ok(), ok, "{user:?}: {got:?}");
        if let Err(e) = got {
            assert_eq!(e.setting(), "PGUSER");
        }
    }

    #[test]
    fn usernames_must_be_url_safe() {
        for user in ["peccy", "iam_user", "app-reader.v2", "A~b", "u1"] {
            check_user(user, true);
        }
        for user in [
            "",
            "a b",
            "a&b",
            "a=b",
            "user@example.com",
            "a/b",
            "a%20b",
            "ü",
            "a+b",
            "a#b",
            "a?b",
            "a\nb",
        ] {
            check_user(user, false);
        }
        let e = validate_username("a b").unwrap_err();
        assert!(e.message().contains("' '"), "{e}");
    }

    fn check_signing_host(host: &str, expected: Option<&str>) {
        assert_eq!(
            signing_host(host, "PGHOST").ok().as_deref(),
            expected,
            "{host}"
        );
    }

    #[test]
    fn signing_hosts() {
        check_signing_host(
            "db.us-east-1.rds.amazonaws.com",
            Some("db.us-east-1.rds.amazonaws.com"),
        );
        check_signing_host("127.0.0.1", Some("127.0.0.1"));
        check_signing_host("::1", Some("[::1]"));
        check_signing_host("[fe80::1]", Some("[fe80::1]"));
        check_signing_host("", None);
        check_signing_host("a b", None);
        check_signing_host("a/b", None);
        check_signing_host("host:5432", None);
        check_signing_host("[nope]", None);
    }

    type Expect = Result<AwsOptions, (&'static str, &'static str)>;

    fn check_env(pairs: &[(&str, &str)], expected: Expect) {
        let got = AwsOptions::from_env(&Env::from_pairs(pairs.iter().copied()));
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
        check_env(&[], Ok(AwsOptions::default()));
        check_env(
            &[
                ("AWS_REGION", "eu-west-1"),
                ("AWS_DEFAULT_REGION", "us-east-1"),
            ],
            Ok(AwsOptions {
                region: Some("eu-west-1".into()),
                ..Default::default()
            }),
        );
        check_env(
            &[("AWS_DEFAULT_REGION", "us-east-2")],
            Ok(AwsOptions {
                region: Some("us-east-2".into()),
                ..Default::default()
            }),
        );
        check_env(
            &[("PGAUTH_AWS_SIGNING_PORT", "5432"), ("AWS_PROFILE", "dev")],
            Ok(AwsOptions {
                region: None,
                signing_port: Some(5432),
                profile: Some("dev".into()),
                dsql_token_expires: None,
            }),
        );
        check_env(
            &[("PGAUTH_DSQL_TOKEN_EXPIRES", "3600")],
            Ok(AwsOptions::default().dsql_token_expires(Duration::from_secs(3600))),
        );
        for expires in ["0", "604801", "soon"] {
            check_env(
                &[("PGAUTH_DSQL_TOKEN_EXPIRES", expires)],
                Err(("PGAUTH_DSQL_TOKEN_EXPIRES", "1 to 604800")),
            );
        }
        check_env(
            &[("AWS_REGION", "US East")],
            Err(("AWS_REGION", "not an aws region")),
        );
        check_env(
            &[("AWS_DEFAULT_REGION", "x")],
            Err(("AWS_DEFAULT_REGION", "not an aws region")),
        );
        for port in ["0", "65536", "http", "-1"] {
            check_env(
                &[("PGAUTH_AWS_SIGNING_PORT", port)],
                Err(("PGAUTH_AWS_SIGNING_PORT", "from 1 to 65535")),
            );
        }
        // A token signed for one name while TLS verifies another: refused, hostaddr instead.
        for host in ["db.x.us-east-1.rds.amazonaws.com", "db host"] {
            check_env(
                &[("PGAUTH_AWS_SIGNING_HOST", host)],
                Err(("PGAUTH_AWS_SIGNING_HOST", "PGHOSTADDR")),
            );
        }
    }

    fn check_region(options: AwsOptions, host: &str, expected: Result<&str, &str>) {
        match (options.resolve_region(host), expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{host}"),
            (Err(e), Err(fragment)) => {
                assert_eq!(e.setting(), "AWS_REGION");
                assert!(e.message().contains(fragment), "{host}: {e}");
            }
            (got, _) => panic!("{host}: unexpected {got:?}"),
        }
    }

    #[test]
    fn regions_resolve_in_order() {
        let rds = "db.abc.eu-central-1.rds.amazonaws.com";
        check_region(AwsOptions::default(), rds, Ok("eu-central-1"));
        check_region(
            AwsOptions {
                region: Some("us-west-2".into()),
                ..Default::default()
            },
            rds,
            Ok("us-west-2"),
        );
        check_region(
            AwsOptions::default(),
            "abc.dsql.ap-south-1.on.aws",
            Ok("ap-south-1"),
        );
        check_region(
            AwsOptions::default(),
            "localhost",
            Err("localhost is not an rds host name"),
        );
        check_region(
            AwsOptions {
                region: Some("bogus".into()),
                ..Default::default()
            },
            rds,
            Err("not an aws region"),
        );
    }
}
