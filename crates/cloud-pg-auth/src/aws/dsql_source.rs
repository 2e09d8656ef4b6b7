//! The Aurora DSQL side of [`AwsSource`]: its constructors and signing. Credentials, their
//! expiry and the token's details are shared with RDS (`source.rs`).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_async::time::{SharedTimeSource, SystemTimeSource};
use aws_types::region::Region;

use super::source::{AwsSource, Signer, credentials_provider};
use super::{AwsOptions, dsql};
use crate::Secret;
use crate::env::Env;
use crate::error::{ConfigError, Error, TokenError, TokenErrorKind};
use crate::settings::{AuthMethod, Settings};
use crate::source::SourceInfo;

impl AwsSource {
    /// A source of Aurora DSQL tokens for the cluster endpoint `host`, logging in as `user`
    /// (`admin` signs `DbConnectAdmin`, any other role `DbConnect`), with credentials found
    /// as [`AwsSource::load`] finds them. The region comes from `AWS_REGION`, else from the
    /// endpoint name; the lifetime from `PGAUTH_DSQL_TOKEN_EXPIRES` (900 s when unset).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an IP address or a name that cannot be signed as the host, no
    /// user, no region or a lifetime out of range.
    pub async fn load_dsql(
        options: &AwsOptions,
        env: &Env,
        host: &str,
        user: &str,
    ) -> Result<Self, Error> {
        let host = dsql::signing_host(host, "PGHOST")?;
        let region = options.resolve_region(&host)?;
        let expires = options.get_dsql_token_expires();
        dsql::check_token_expires(expires)?;
        check_user(user)?;
        let (provider, kind) = credentials_provider(options, env, &region).await?;
        Ok(
            Self::dsql_with_credentials_provider(provider, region, &host, user, expires)?
                .with_kind(kind),
        )
    }

    /// A source of Aurora DSQL tokens for `host` and `user` in `region`, valid `expires`,
    /// with credentials from `provider`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for a host that cannot be signed, no user, a bad region or a
    /// lifetime out of range (1 s to one week).
    pub fn dsql_with_credentials_provider(
        provider: SharedCredentialsProvider,
        region: impl Into<String>,
        host: &str,
        user: &str,
        expires: Duration,
    ) -> Result<Self, Error> {
        let host = dsql::signing_host(host, "PGHOST")?;
        check_user(user)?;
        dsql::check_token_expires(expires)?;
        let region = AwsOptions::default().region(region).resolve_region(&host)?;
        let info = SourceInfo::new("dsql")
            .cloud(region.clone())
            .credential_kind("custom")
            .identity(user.to_string())
            .endpoint(host.clone());
        Ok(Self {
            provider,
            region: Region::new(region),
            host,
            user: user.to_string(),
            signer: Signer::Dsql { expires },
            time_source: SharedTimeSource::new(SystemTimeSource::new()),
            origin: info.label(),
            info,
        })
    }

    /// The source the settings call for: DSQL tokens for [`AuthMethod::Dsql`], RDS ones
    /// otherwise.
    pub(crate) async fn for_settings(settings: &Settings) -> Result<Self, Error> {
        let host = settings.host.as_deref().unwrap_or_default();
        let user = settings.user.as_deref().unwrap_or_default();
        if settings.resolved_method()? == AuthMethod::Dsql {
            return Self::load_dsql(&settings.aws, &settings.env, host, user).await;
        }
        Self::load(&settings.aws, &settings.env, host, settings.port, user).await
    }

    /// Whether this source signs Aurora DSQL tokens.
    #[must_use]
    pub fn is_dsql(&self) -> bool {
        matches!(self.signer, Signer::Dsql { .. })
    }

    pub(super) fn sign_dsql(
        &self,
        credentials: Credentials,
        expires: Duration,
        now: SystemTime,
    ) -> Result<Secret, TokenError> {
        dsql::presign(
            credentials,
            self.region.as_ref(),
            &self.host,
            dsql::action_for(&self.user),
            expires,
            now,
        )
        .map(Secret::new)
        .map_err(|e| {
            TokenError::new(TokenErrorKind::Transient, &self.origin, "signing failed").with_cause(e)
        })
    }
}

fn check_user(user: &str) -> Result<(), ConfigError> {
    if user.is_empty() {
        return Err(ConfigError::new(
            "PGUSER",
            "aurora dsql needs the role to log in as; set PGUSER to admin or to a role mapped with AWS IAM GRANT",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use aws_smithy_async::time::StaticTimeSource;

    use super::*;
    use crate::TokenSource;

    const T0: u64 = 1_724_716_800;
    const HOST: &str = "peccy.dsql.us-east-1.on.aws";

    fn source(credentials: Credentials, user: &str, expires: u64) -> AwsSource {
        AwsSource::dsql_with_credentials_provider(
            SharedCredentialsProvider::new(credentials),
            "us-east-1",
            HOST,
            user,
            Duration::from_secs(expires),
        )
        .unwrap()
        .with_time_source(StaticTimeSource::from_secs(T0))
    }

    #[tokio::test]
    async fn tokens_match_the_sdk_and_name_the_action() {
        let akid = || Credentials::new("akid", "secret", None, None, "test");
        let token = source(akid(), "app", 450).fetch().await.unwrap();
        assert!(
            token
                .secret()
                .expose()
                .starts_with("peccy.dsql.us-east-1.on.aws/?Action=DbConnect&X-Amz-Algorithm=")
        );
        assert!(token.secret().expose().ends_with(
            "X-Amz-Signature=f5f2ad764ca5df44045d4ab6ccecba0eef941b0007e5765885a0b6ed3702a3f8"
        ));
        assert_eq!(
            token.expires_at(),
            Some(UNIX_EPOCH + Duration::from_secs(T0 + 450))
        );
        assert_eq!(token.details().username.as_deref(), Some("app"));
        let admin = source(akid(), "admin", 450).fetch().await.unwrap();
        assert!(admin.secret().expose().ends_with(
            "X-Amz-Signature=267cf8d04d84444f7a62d5bdb40c44bfc6cb13dd6c64fa7f772df6bbaa90fff1"
        ));
        let s = source(akid(), "app", 450);
        assert!(s.is_dsql());
        let info = s.info();
        assert_eq!(info.method, "dsql");
        assert_eq!(info.cloud.as_deref(), Some("us-east-1"));
        assert_eq!(info.endpoint.as_deref(), Some(HOST));
    }

    #[test]
    fn expiry_is_the_earlier_of_token_and_credentials() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let cases: &[(Option<u64>, u64, Result<u64, &str>)] = &[
            (None, 900, Ok(T0 + 900)),
            (None, 3600, Ok(T0 + 3600)),
            (Some(T0 + 600), 3600, Ok(T0 + 600)),
            (Some(T0 + 7200), 3600, Ok(T0 + 3600)),
            (Some(T0), 900, Err("the aws credentials expired")),
        ];
        for (credentials_expiry, expires, expected) in cases {
            let credentials = Credentials::new(
                "AKIDEXAMPLE",
                "secret-key",
                Some("session-token".into()),
                credentials_expiry.map(|s| UNIX_EPOCH + Duration::from_secs(s)),
                "test",
            );
            let got = rt.block_on(source(credentials, "app", *expires).fetch());
            match expected {
                Ok(at) => {
                    let token = got.unwrap();
                    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(*at);
                    assert_eq!(token.expires_at(), Some(at), "{credentials_expiry:?}");
                    let text = token.secret().expose();
                    assert!(
                        text.contains(&format!("X-Amz-Expires={expires}&")),
                        "{text}"
                    );
                    assert!(text.contains("X-Amz-Security-Token=session-token"));
                }
                Err(fragment) => {
                    let e = got.unwrap_err();
                    assert!(e.message().contains(fragment), "{e}");
                    assert!(!e.chain_text().contains("secret-key"));
                }
            }
        }
    }

    #[test]
    fn bad_hosts_users_regions_and_lifetimes_fail_before_signing() {
        let cases: &[(&str, &str, &str, u64, &str)] = &[
            ("127.0.0.1", "app", "us-east-1", 900, "PGHOST"),
            ("::1", "app", "us-east-1", 900, "PGHOST"),
            ("a b", "app", "us-east-1", 900, "PGHOST"),
            (HOST, "", "us-east-1", 900, "PGUSER"),
            (HOST, "app", "nowhere", 900, "AWS_REGION"),
            (HOST, "app", "us-east-1", 0, "PGAUTH_DSQL_TOKEN_EXPIRES"),
            (
                HOST,
                "app",
                "us-east-1",
                604_801,
                "PGAUTH_DSQL_TOKEN_EXPIRES",
            ),
        ];
        for (host, user, region, expires, setting) in cases {
            let got = AwsSource::dsql_with_credentials_provider(
                SharedCredentialsProvider::new(Credentials::new("a", "b", None, None, "t")),
                *region,
                host,
                user,
                Duration::from_secs(*expires),
            );
            match got {
                Err(Error::Config(e)) => assert_eq!(e.setting(), *setting, "{host}: {e}"),
                other => panic!("{host} {user} {region} {expires}: unexpected {other:?}"),
            }
        }
        // Any role name: the token does not carry it.
        assert!(
            AwsSource::dsql_with_credentials_provider(
                SharedCredentialsProvider::new(Credentials::new("a", "b", None, None, "t")),
                "us-east-1",
                HOST,
                "user@example.com",
                Duration::from_secs(900),
            )
            .is_ok()
        );
    }

    #[tokio::test]
    async fn load_reads_static_credentials_and_the_region_from_the_host() {
        let env = Env::from_pairs([
            ("AWS_ACCESS_KEY_ID", "akid"),
            ("AWS_SECRET_ACCESS_KEY", "very-secret-key"),
        ]);
        let options = AwsOptions::default().dsql_token_expires(Duration::from_secs(60));
        let s = AwsSource::load_dsql(&options, &env, "abc.dsql.eu-west-1.on.aws", "admin")
            .await
            .unwrap();
        assert_eq!(s.region(), "eu-west-1");
        assert_eq!(s.info().credential_kind.as_deref(), Some("environment"));
        let token = s.fetch().await.unwrap();
        assert!(token.secret().expose().contains("Action=DbConnectAdmin&"));
        assert!(token.secret().expose().contains("X-Amz-Expires=60&"));
        let printed = format!("{s:?}");
        assert!(!printed.contains("very-secret-key"), "{printed}");
    }
}
