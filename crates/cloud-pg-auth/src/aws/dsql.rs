//! Amazon Aurora DSQL: endpoint names, the token's action and lifetime, and its SigV4 signer.
//!
//! A DSQL token is a SigV4 query presign of `GET https://<host>/?Action=DbConnect` (or
//! `DbConnectAdmin` for the `admin` role) for service `dsql`, without the `https://`: the host
//! has no port and the token names no user. Everything but the signer is plain data and is
//! always compiled; the signer needs the `aws` feature (aws-sigv4, already in aws-sdk-rds's
//! tree: see docs/dsql.md for why not aws-sdk-dsql).

use std::net::IpAddr;
use std::time::Duration;

use crate::error::ConfigError;

/// The token lifetime when `PGAUTH_DSQL_TOKEN_EXPIRES` is unset (what the AWS SDKs and CLI use).
pub const DEFAULT_TOKEN_EXPIRES: Duration = Duration::from_secs(900);

/// The longest token lifetime DSQL accepts (`X-Amz-Expires`), one week.
pub const MAX_TOKEN_EXPIRES: Duration = Duration::from_secs(604_800);

/// DSQL closes every connection after this long; pools must recycle theirs sooner.
pub const CONNECTION_LIMIT: Duration = Duration::from_secs(3600);

/// The role DSQL creates with a cluster; its tokens use the `DbConnectAdmin` action.
pub const ADMIN_ROLE: &str = "admin";

/// The SigV4 service name of DSQL tokens.
pub const SERVICE: &str = "dsql";

/// The setting that sets the token lifetime, in seconds.
pub const TOKEN_EXPIRES_VAR: &str = "PGAUTH_DSQL_TOKEN_EXPIRES";

/// The region in a DSQL endpoint name: `<cluster-id>.dsql.<region>.on.aws` → `<region>`.
#[must_use]
pub fn region_from_dsql_host(host: &str) -> Option<String> {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let rest = host.strip_suffix(".on.aws")?;
    let (prefix, region) = rest.rsplit_once('.')?;
    let cluster = prefix.strip_suffix(".dsql")?;
    let valid_cluster = !cluster.is_empty()
        && !cluster.contains('.')
        && cluster
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    (valid_cluster && super::is_region(region)).then(|| region.to_string())
}

/// Whether `host` is an Aurora DSQL cluster endpoint (`<cluster-id>.dsql.<region>.on.aws`).
#[must_use]
pub fn is_dsql_host(host: &str) -> bool {
    region_from_dsql_host(host).is_some()
}

/// The action a token for `user` names: `DbConnectAdmin` for `admin`, else `DbConnect`.
#[must_use]
pub fn action_for(user: &str) -> &'static str {
    if user == ADMIN_ROLE {
        "DbConnectAdmin"
    } else {
        "DbConnect"
    }
}

/// Reads `PGAUTH_DSQL_TOKEN_EXPIRES`: whole seconds from 1 to 604800.
pub(crate) fn parse_token_expires(value: &str) -> Result<Duration, ConfigError> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|s| (1..=MAX_TOKEN_EXPIRES.as_secs()).contains(s))
        .map(Duration::from_secs)
        .ok_or_else(|| {
            ConfigError::new(
                TOKEN_EXPIRES_VAR,
                format!(
                    "{value:?} is not a token lifetime; use whole seconds from 1 to 604800 (900 when unset)"
                ),
            )
        })
}

/// Checks a token lifetime set in code the way [`parse_token_expires`] checks the setting.
pub(crate) fn check_token_expires(expires: Duration) -> Result<(), ConfigError> {
    if expires < Duration::from_secs(1) || expires > MAX_TOKEN_EXPIRES {
        return Err(ConfigError::new(
            TOKEN_EXPIRES_VAR,
            format!(
                "{} s is not a token lifetime; use whole seconds from 1 to 604800",
                expires.as_secs()
            ),
        ));
    }
    Ok(())
}

/// Checks the host a DSQL token is signed for. DSQL routes on the TLS server name (SNI), so an
/// IP address cannot reach a cluster: the endpoint name goes in the host, the IP in `hostaddr`.
pub(crate) fn signing_host(host: &str, setting: &str) -> Result<String, ConfigError> {
    let host = host.trim().trim_end_matches('.');
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return Err(ConfigError::new(
            setting,
            format!(
                "{host} is an ip address, but aurora dsql needs the endpoint name for tls (sni) and in the token; set the host to the cluster endpoint (<cluster-id>.dsql.<region>.on.aws) and PGHOSTADDR (hostaddr) to {bare}"
            ),
        ));
    }
    if !super::is_signable_name(host) {
        return Err(ConfigError::new(
            setting,
            format!(
                "{host:?} is not a host name that can be signed; use the dsql cluster endpoint name"
            ),
        ));
    }
    Ok(host.to_ascii_lowercase())
}

#[cfg(feature = "aws")]
pub(crate) use signer::presign;

#[cfg(feature = "aws")]
mod signer {
    use std::time::{Duration, SystemTime};

    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{
        self, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    };
    use aws_sigv4::sign::v4;
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

    use crate::BoxError;

    /// What `application/x-www-form-urlencoded` leaves alone, as the SDKs' `url` crate does.
    const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'*')
        .remove(b'-')
        .remove(b'.')
        .remove(b'_');

    /// Presigns `GET https://<host>/?Action=<action>` for service `dsql`, returned without
    /// `https://`: byte for byte what aws-sdk-dsql's `AuthTokenGenerator` makes.
    pub(crate) fn presign(
        credentials: Credentials,
        region: &str,
        host: &str,
        action: &str,
        expires: Duration,
        now: SystemTime,
    ) -> Result<String, BoxError> {
        let identity = credentials.into();
        let mut settings = SigningSettings::default();
        settings.expires_in = Some(expires);
        settings.signature_location = SignatureLocation::QueryParams;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(super::SERVICE)
            .time(now)
            .settings(settings)
            .build()?;
        let unsigned = format!("{host}/?Action={action}");
        let url = format!("https://{unsigned}");
        let request = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::empty())?;
        let (instructions, _signature) = http_request::sign(request, &params.into())?.into_parts();
        let mut token = unsigned;
        for (name, value) in instructions.params() {
            token.push('&');
            token.push_str(name);
            token.push('=');
            token.extend(utf8_percent_encode(value, QUERY_VALUE));
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsql_hosts_and_regions() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "abcdefghijklmnopqrstuvwxyz.dsql.us-east-1.on.aws",
                Some("us-east-1"),
            ),
            ("peccy.dsql.eu-west-2.on.aws.", Some("eu-west-2")),
            ("ABC123.DSQL.AP-NORTHEAST-1.ON.AWS", Some("ap-northeast-1")),
            ("  abc.dsql.us-gov-west-1.on.aws ", Some("us-gov-west-1")),
            ("dsql.us-east-1.on.aws", None),
            (".dsql.us-east-1.on.aws", None),
            ("a.b.dsql.us-east-1.on.aws", None),
            ("abc.dsql.nowhere.on.aws", None),
            ("abc.dsql.us-east-1.on.aws.evil.example", None),
            ("abc.lambda-url.us-east-1.on.aws", None),
            ("db.abc.us-east-1.rds.amazonaws.com", None),
            ("127.0.0.1", None),
            ("", None),
        ];
        for (host, region) in cases {
            assert_eq!(region_from_dsql_host(host).as_deref(), *region, "{host:?}");
            assert_eq!(is_dsql_host(host), region.is_some(), "{host:?}");
        }
    }

    #[test]
    fn actions() {
        assert_eq!(action_for("admin"), "DbConnectAdmin");
        for user in ["app", "Admin", "admin2", "pgauth_dsql"] {
            assert_eq!(action_for(user), "DbConnect", "{user}");
        }
    }

    #[test]
    fn token_expires_setting() {
        for (value, secs) in [
            ("1", 1),
            ("900", 900),
            (" 3600 ", 3600),
            ("604800", 604_800),
        ] {
            assert_eq!(
                parse_token_expires(value).unwrap().as_secs(),
                secs,
                "{value}"
            );
        }
        for value in ["0", "604801", "-1", "15m", "", "9e2", "1.5"] {
            let e = parse_token_expires(value).unwrap_err();
            assert_eq!(e.setting(), TOKEN_EXPIRES_VAR, "{value}");
            assert!(e.message().contains("1 to 604800"), "{e}");
        }
        assert!(check_token_expires(Duration::from_secs(60)).is_ok());
        assert!(check_token_expires(Duration::ZERO).is_err());
        assert!(check_token_expires(Duration::from_secs(604_801)).is_err());
    }

    #[test]
    fn signing_hosts() {
        let ok = |h: &str, want: &str| assert_eq!(signing_host(h, "PGHOST").unwrap(), want);
        ok("abc.dsql.us-east-1.on.aws", "abc.dsql.us-east-1.on.aws");
        ok("ABC.dsql.us-east-1.on.aws.", "abc.dsql.us-east-1.on.aws");
        ok("localhost", "localhost");
        for ip in ["127.0.0.1", "10.0.0.5", "::1", "[fe80::1]"] {
            let e = signing_host(ip, "PGHOST").unwrap_err();
            assert_eq!(e.setting(), "PGHOST");
            assert!(
                e.message().contains("sni") && e.message().contains("PGHOSTADDR"),
                "{e}"
            );
        }
        for bad in [
            "",
            "a b",
            "a/b",
            "host:5432",
            "https://abc.dsql.us-east-1.on.aws",
        ] {
            assert!(signing_host(bad, "PGHOST").is_err(), "{bad:?}");
        }
    }

    /// aws-sdk-dsql 1.79's own test vectors (`auth_token::test`): same credentials, time,
    /// host, region and lifetime give the same token.
    #[cfg(feature = "aws")]
    #[test]
    fn aws_sdk_dsql_test_vectors() {
        use aws_credential_types::Credentials;
        use std::time::{SystemTime, UNIX_EPOCH};
        let t: SystemTime = UNIX_EPOCH + Duration::from_secs(1_724_716_800);
        let sign = |user: &str| {
            presign(
                Credentials::new("akid", "secret", None, None, "test"),
                "us-east-1",
                "peccy.dsql.us-east-1.on.aws",
                action_for(user),
                Duration::from_secs(450),
                t,
            )
            .unwrap()
        };
        let prefix = "&X-Amz-Algorithm=AWS4-HMAC-SHA256\
            &X-Amz-Credential=akid%2F20240827%2Fus-east-1%2Fdsql%2Faws4_request\
            &X-Amz-Date=20240827T000000Z&X-Amz-Expires=450&X-Amz-SignedHeaders=host\
            &X-Amz-Signature=";
        assert_eq!(
            sign("app"),
            format!(
                "peccy.dsql.us-east-1.on.aws/?Action=DbConnect{prefix}\
                 f5f2ad764ca5df44045d4ab6ccecba0eef941b0007e5765885a0b6ed3702a3f8"
            )
        );
        assert_eq!(
            sign("admin"),
            format!(
                "peccy.dsql.us-east-1.on.aws/?Action=DbConnectAdmin{prefix}\
                 267cf8d04d84444f7a62d5bdb40c44bfc6cb13dd6c64fa7f772df6bbaa90fff1"
            )
        );
    }

    #[cfg(feature = "aws")]
    #[test]
    fn session_tokens_are_form_encoded() {
        use aws_credential_types::Credentials;
        let token = presign(
            Credentials::new("akid", "secret", Some("a+b/c=".into()), None, "test"),
            "us-east-1",
            "peccy.dsql.us-east-1.on.aws",
            "DbConnect",
            Duration::from_secs(900),
            std::time::UNIX_EPOCH + Duration::from_secs(1_724_716_800),
        )
        .unwrap();
        assert!(
            token.ends_with("&X-Amz-Security-Token=a%2Bb%2Fc%3D"),
            "{token}"
        );
    }
}
