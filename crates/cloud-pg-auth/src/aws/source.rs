//! [`AwsSource`]: RDS IAM and Aurora DSQL auth tokens signed with credentials from the default
//! chain or a caller-supplied provider. The DSQL constructors live in `dsql_source.rs`.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_rds::auth_token::{AuthTokenGenerator, Config as TokenConfig};
use aws_smithy_async::time::{SharedTimeSource, SystemTimeSource, TimeSource};
use aws_types::SdkConfig;
use aws_types::region::Region;
use futures_util::FutureExt as _;

use super::{AwsOptions, TOKEN_LIFETIME, signing_host, validate_username};
use crate::env::Env;
use crate::error::{ConfigError, Error, TokenError, TokenErrorKind};
use crate::source::{SourceInfo, TokenSource};
use crate::status::rfc3339;
use crate::token::{TokenDetails, UsernameSource};
use crate::{AccessToken, Secret};

/// RDS and Aurora IAM auth tokens, and Aurora DSQL tokens ([`AwsSource::load_dsql`]).
///
/// Each fetch asks the credentials provider once (the chain's providers are called directly,
/// as aws-sdk-rds does) and signs locally. The token expires 900 s after signing (DSQL: the
/// configured lifetime), or when the signing credentials expire, whichever is first. Build
/// one source per engine: the default chain's HTTP client belongs to this source.
pub struct AwsSource {
    pub(super) provider: SharedCredentialsProvider,
    pub(super) region: Region,
    pub(super) host: String,
    pub(super) user: String,
    pub(super) signer: Signer,
    pub(super) time_source: SharedTimeSource,
    pub(super) info: SourceInfo,
    pub(super) origin: String,
}

/// What a source signs: the two token kinds share the credentials and their handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Signer {
    /// An RDS `connect` token for `host:port` and `DBUser`, 900 s.
    Rds {
        /// The port signed with the host.
        port: u16,
    },
    /// An Aurora DSQL `DbConnect`/`DbConnectAdmin` token for the host alone.
    Dsql {
        /// `X-Amz-Expires`.
        expires: Duration,
    },
}

impl Signer {
    /// How long a token signed now is valid, credentials aside.
    fn lifetime(self) -> Duration {
        match self {
            Self::Rds { .. } => TOKEN_LIFETIME,
            Self::Dsql { expires } => expires,
        }
    }
}

impl AwsSource {
    /// A source that signs for `host:port` (or `PGAUTH_AWS_SIGNING_PORT`) and `user`
    /// with credentials from the default chain: environment, profile, web identity (IRSA),
    /// ECS/EKS container credentials, EC2 instance metadata.
    ///
    /// The environment step reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
    /// `AWS_SESSION_TOKEN` from `env`; when they are set there, those static credentials are
    /// used. Otherwise aws-config's chain runs, and it reads the process environment itself
    /// (aws-config 1.8 offers no way to hand it a snapshot).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an unsafe user name, a host that cannot be signed, or no region.
    pub async fn load(
        options: &AwsOptions,
        env: &Env,
        host: &str,
        port: u16,
        user: &str,
    ) -> Result<Self, Error> {
        validate_username(user)?;
        let (host, port) = Self::target_for(options, host, port)?;
        let region = options.resolve_region(&host)?;
        let (provider, kind) = credentials_provider(options, env, &region).await?;
        Ok(Self::with_credentials_provider(provider, region, &host, port, user)?.with_kind(kind))
    }

    /// Names the kind of credentials in the source's info (`environment`, `default-chain`).
    pub(super) fn with_kind(mut self, kind: &str) -> Self {
        self.info = self.info.credential_kind(kind);
        self.origin = self.info.label();
        self
    }

    /// A source that signs for `host:port` and `user` in `region` with credentials from
    /// `provider`. `host` and `port` are the ones signed (the RDS endpoint).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for an unsafe user name, a host that cannot be signed or a bad region.
    pub fn with_credentials_provider(
        provider: SharedCredentialsProvider,
        region: impl Into<String>,
        host: &str,
        port: u16,
        user: &str,
    ) -> Result<Self, Error> {
        validate_username(user)?;
        let host = signing_host(host, "PGHOST")?;
        let region = AwsOptions {
            region: Some(region.into()),
            ..Default::default()
        }
        .resolve_region(&host)?;
        let info = SourceInfo::new("aws")
            .cloud(region.clone())
            .credential_kind("custom")
            .identity(user.to_string())
            .endpoint(format!("{host}:{port}"));
        Ok(Self {
            provider,
            region: Region::new(region),
            host,
            user: user.to_string(),
            signer: Signer::Rds { port },
            time_source: SharedTimeSource::new(SystemTimeSource::new()),
            origin: info.label(),
            info,
        })
    }

    /// Signs with this clock instead of the system's (tests, golden vectors).
    #[must_use]
    pub fn with_time_source(mut self, time_source: impl TimeSource + 'static) -> Self {
        self.time_source = SharedTimeSource::new(time_source);
        self
    }

    /// The region signed for.
    #[must_use]
    pub fn region(&self) -> &str {
        self.region.as_ref()
    }

    /// The host signed for, and the port signed with it (RDS; a DSQL token signs no port).
    #[must_use]
    pub fn signing_target(&self) -> (&str, Option<u16>) {
        match self.signer {
            Signer::Rds { port } => (&self.host, Some(port)),
            Signer::Dsql { .. } => (&self.host, None),
        }
    }

    fn target_for(
        options: &AwsOptions,
        host: &str,
        port: u16,
    ) -> Result<(String, u16), ConfigError> {
        let host = signing_host(host, "PGHOST")?;
        Ok((host, options.signing_port.unwrap_or(port)))
    }
}

impl fmt::Debug for AwsSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSource")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl TokenSource for AwsSource {
    async fn fetch(&self) -> Result<AccessToken, TokenError> {
        let credentials = self
            .provider
            .provide_credentials()
            .await
            .map_err(|e| credentials_error(e, &self.origin))?;
        let now = self.time_source.now();
        let expires_at = match credentials.expiry() {
            Some(expiry) if expiry <= now => {
                return Err(TokenError::new(
                    TokenErrorKind::Transient,
                    &self.origin,
                    format!(
                        "the aws credentials expired at {} (now {}); the credentials provider \
                         returned stale credentials",
                        rfc3339(expiry),
                        rfc3339(now)
                    ),
                ));
            }
            Some(expiry) => expiry.min(now + self.signer.lifetime()),
            None => now + self.signer.lifetime(),
        };
        let token = match self.signer {
            Signer::Rds { port } => self.sign_rds(credentials, port).await?,
            Signer::Dsql { expires } => self.sign_dsql(credentials, expires, now)?,
        };
        let details = TokenDetails {
            identity: Some(self.user.clone()),
            username: Some(self.user.clone()),
            username_source: Some(UsernameSource::Settings),
            ids: Vec::new(),
        };
        Ok(AccessToken::new(token)
            .with_expiry(expires_at)
            .with_details(details))
    }

    fn info(&self) -> SourceInfo {
        self.info.clone()
    }
}

impl AwsSource {
    async fn sign_rds(&self, credentials: Credentials, port: u16) -> Result<Secret, TokenError> {
        let config = TokenConfig::builder()
            .credentials(credentials)
            .hostname(self.host.clone())
            .port(u64::from(port))
            .region(self.region.clone())
            .username(self.user.clone())
            .expires_in(TOKEN_LIFETIME.as_secs())
            .build()
            .map_err(|e| {
                TokenError::new(TokenErrorKind::Config, &self.origin, "bad token settings")
                    .with_cause(e)
            })?;
        let sdk_config = SdkConfig::builder()
            .region(self.region.clone())
            .time_source(self.time_source.clone())
            .build();
        let generator = AuthTokenGenerator::new(config);
        // The user name and host were checked; a panic would still be a bug, not a crash.
        let signed = AssertUnwindSafe(generator.auth_token(&sdk_config))
            .catch_unwind()
            .await;
        match signed {
            Ok(Ok(token)) => Ok(Secret::new(token.as_str())),
            Ok(Err(e)) => {
                Err(
                    TokenError::new(TokenErrorKind::Transient, &self.origin, "signing failed")
                        .with_cause(e),
                )
            }
            Err(_panic) => Err(TokenError::new(
                TokenErrorKind::Config,
                &self.origin,
                "aws-sdk-rds could not sign for this host and user; check PGHOST and PGUSER",
            )),
        }
    }
}

/// The credentials provider of [`AwsSource::load`] and [`AwsSource::load_dsql`]: static
/// credentials from `env` when set there, else aws-config's default chain; with its kind.
pub(super) async fn credentials_provider(
    options: &AwsOptions,
    env: &Env,
    region: &str,
) -> Result<(SharedCredentialsProvider, &'static str), Error> {
    if let Some(credentials) = static_credentials(env)? {
        return Ok((SharedCredentialsProvider::new(credentials), "environment"));
    }
    let mut loader =
        aws_config::defaults(BehaviorVersion::latest()).region(Region::new(region.to_string()));
    if let Some(profile) = &options.profile {
        loader = loader.profile_name(profile);
    }
    let sdk_config = loader.load().await;
    let provider = sdk_config.credentials_provider().ok_or_else(|| {
        ConfigError::new(
            "AWS_PROFILE",
            "aws-config built no credentials provider; set aws credentials",
        )
    })?;
    Ok((provider, "default-chain"))
}

/// Static credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`
/// in the settings snapshot, the first step of the chain.
fn static_credentials(env: &Env) -> Result<Option<Credentials>, ConfigError> {
    match (
        env.get("AWS_ACCESS_KEY_ID"),
        env.secret("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(key), Some(secret)) => Ok(Some(Credentials::new(
            key,
            secret.expose(),
            env.secret("AWS_SESSION_TOKEN")
                .map(|t| t.expose().to_string()),
            None,
            "environment",
        ))),
        (Some(_), None) => Err(ConfigError::new(
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not; set both or neither",
        )),
        (None, Some(_)) => Err(ConfigError::new(
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not; set both or neither",
        )),
        (None, None) => Ok(None),
    }
}

fn credentials_error(error: CredentialsError, origin: &str) -> TokenError {
    // aws-config is built without its `sso` feature; say what works instead of only
    // "feature not enabled".
    if crate::error::chain_text(&error).contains("sso") {
        return TokenError::new(
            TokenErrorKind::Config,
            origin,
            "this profile uses aws sso, which this build does not read directly; give the \
             profile `credential_process = aws configure export-credentials --profile \
             <sso-profile> --format process` (see docs/aws.md) and keep running \
             `aws sso login`",
        )
        .with_cause(error);
    }
    let (kind, message) = match &error {
        CredentialsError::CredentialsNotLoaded(_) => (
            TokenErrorKind::Config,
            "no aws credentials were found (environment, profile, web identity, container, \
             ec2 instance role); set AWS_PROFILE or AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY, or run with an iam role",
        ),
        CredentialsError::InvalidConfiguration(_) => (
            TokenErrorKind::Config,
            "the aws credentials configuration is invalid",
        ),
        CredentialsError::ProviderTimedOut(_) => (
            TokenErrorKind::Transient,
            "the aws credentials provider timed out",
        ),
        _ => (
            TokenErrorKind::Transient,
            "the aws credentials provider failed",
        ),
    };
    TokenError::new(kind, origin, message).with_cause(error)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use aws_smithy_async::time::StaticTimeSource;

    use super::*;

    const T0: u64 = 1_724_709_600;

    fn source(credentials: Credentials, host: &str, port: u16, user: &str) -> AwsSource {
        AwsSource::with_credentials_provider(
            SharedCredentialsProvider::new(credentials),
            "us-east-1",
            host,
            port,
            user,
        )
        .unwrap()
        .with_time_source(StaticTimeSource::from_secs(T0))
    }

    #[tokio::test]
    async fn golden_vector() {
        let s = source(
            Credentials::new("akid", "secret", None, None, "test"),
            "prod-instance.us-east-1.rds.amazonaws.com",
            3306,
            "peccy",
        );
        let token = s.fetch().await.unwrap();
        assert_eq!(
            token.secret().expose(),
            "prod-instance.us-east-1.rds.amazonaws.com:3306/?Action=connect&DBUser=peccy\
             &X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=akid%2F20240826%2Fus-east-1%2Frds-db%2Faws4_request\
             &X-Amz-Date=20240826T220000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=dd0cba843009474347af724090233265628ace491ea17ce3eb3da098b983ad89"
        );
        assert_eq!(
            token.expires_at(),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(T0 + 900))
        );
        assert_eq!(token.details().username.as_deref(), Some("peccy"));
        let info = s.info();
        assert_eq!(info.method, "aws");
        assert_eq!(info.cloud.as_deref(), Some("us-east-1"));
        assert_eq!(
            info.endpoint.as_deref(),
            Some("prod-instance.us-east-1.rds.amazonaws.com:3306")
        );
    }

    fn check_expiry(credentials_expiry: Option<u64>, expected: Result<u64, &str>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let credentials = Credentials::new(
            "AKIDEXAMPLE",
            "secret-key",
            Some("session-token".into()),
            credentials_expiry.map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s)),
            "test",
        );
        let s = source(credentials, "db.us-east-1.rds.amazonaws.com", 5432, "app");
        let got = rt.block_on(s.fetch());
        match expected {
            Ok(secs) => {
                let token = got.unwrap();
                assert_eq!(
                    token.expires_at(),
                    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
                    "{credentials_expiry:?}"
                );
                assert!(
                    token
                        .secret()
                        .expose()
                        .contains("X-Amz-Security-Token=session-token")
                );
            }
            Err(fragment) => {
                let e = got.unwrap_err();
                assert!(e.message().contains(fragment), "{e}");
                assert!(!e.chain_text().contains("secret-key"));
            }
        }
    }

    #[test]
    fn expiry_is_the_earlier_of_token_and_credentials() {
        check_expiry(None, Ok(T0 + 900));
        check_expiry(Some(T0 + 3600), Ok(T0 + 900));
        check_expiry(Some(T0 + 300), Ok(T0 + 300));
        check_expiry(Some(T0 + 1), Ok(T0 + 1));
        check_expiry(Some(T0), Err("the aws credentials expired"));
        check_expiry(Some(T0 - 60), Err("the aws credentials expired"));
    }

    fn check_new(host: &str, user: &str, region: &str, expected: Result<(), &str>) {
        let got = AwsSource::with_credentials_provider(
            SharedCredentialsProvider::new(Credentials::new("a", "b", None, None, "t")),
            region,
            host,
            5432,
            user,
        );
        match (got, expected) {
            (Ok(_), Ok(())) => {}
            (Err(Error::Config(e)), Err(setting)) => assert_eq!(e.setting(), setting, "{e}"),
            (got, _) => panic!("{host} {user} {region}: unexpected {got:?}"),
        }
    }

    #[test]
    fn bad_users_hosts_and_regions_fail_before_signing() {
        check_new("db.us-east-1.rds.amazonaws.com", "app", "us-east-1", Ok(()));
        check_new("::1", "app", "us-east-1", Ok(()));
        check_new(
            "db.us-east-1.rds.amazonaws.com",
            "a b",
            "us-east-1",
            Err("PGUSER"),
        );
        check_new(
            "db.us-east-1.rds.amazonaws.com",
            "a@b",
            "us-east-1",
            Err("PGUSER"),
        );
        check_new(
            "db.us-east-1.rds.amazonaws.com",
            "",
            "us-east-1",
            Err("PGUSER"),
        );
        check_new("db host", "app", "us-east-1", Err("PGHOST"));
        check_new(
            "db.us-east-1.rds.amazonaws.com",
            "app",
            "nowhere",
            Err("AWS_REGION"),
        );
    }

    #[tokio::test]
    async fn ipv6_hosts_are_bracketed() {
        let s = source(
            Credentials::new("akid", "secret", None, None, "test"),
            "::1",
            5432,
            "peccy",
        );
        let token = s.fetch().await.unwrap();
        assert!(
            token
                .secret()
                .expose()
                .starts_with("[::1]:5432/?Action=connect&DBUser=peccy&")
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let s = source(
            Credentials::new(
                "AKIDEXAMPLE",
                "very-secret-key",
                Some("tok".into()),
                None,
                "t",
            ),
            "db.us-east-1.rds.amazonaws.com",
            5432,
            "app",
        );
        let printed = format!("{s:?} {s:#?}");
        assert!(!printed.contains("very-secret-key"), "{printed}");
        assert!(!printed.contains("AKIDEXAMPLE"), "{printed}");
    }
}
