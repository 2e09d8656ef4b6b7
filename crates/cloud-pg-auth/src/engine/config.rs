//! The builder state every engine shares, and its checks.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{
    DEFAULT_CONNECTION_TIMEOUT, DEFAULT_DISPOSE_TIMEOUT, DEFAULT_MAX_LIFETIME, DEFAULT_MAX_SIZE,
};
use crate::auth::{Auth, AuthOptions};
use crate::error::{ConfigError, Error};
use crate::settings::Settings;
use crate::source::TokenSource;

/// What every engine's credential is built from: the settings, the credential's options and
/// an optional token source of the caller's. A migration engine's builder holds one.
#[derive(Clone)]
pub struct CredentialConfig {
    settings: Settings,
    auth_options: AuthOptions,
    token_source: Option<Arc<dyn TokenSource>>,
    /// A migration engine's: refused where the runners cannot work (Aurora DSQL).
    migrations: bool,
}

impl CredentialConfig {
    /// The settings with the default options and the source they name.
    #[must_use]
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            auth_options: AuthOptions::default(),
            token_source: None,
            migrations: false,
        }
    }

    /// A migration engine's credential: the settings' migration identity
    /// ([`Settings::for_migrations`]: `PGAUTH_MIGRATION_USER`,
    /// `PGAUTH_MIGRATION_AZURE_CLIENT_ID`) and no background refresh. Every migration
    /// engine's builder starts from it.
    #[must_use]
    pub fn for_migrations(settings: Settings) -> Self {
        let mut config = Self::new(settings.for_migrations());
        config.disable_background_refresh();
        config.migrations = true;
        config
    }

    /// Sets the credential's options (background refresh, clock).
    pub fn set_auth_options(&mut self, options: AuthOptions) {
        self.auth_options = options;
    }

    /// Takes tokens from `source` instead of the source the settings name.
    pub fn set_token_source(&mut self, source: Arc<dyn TokenSource>) {
        self.token_source = Some(source);
    }

    /// The credential's options.
    #[must_use]
    pub fn auth_options(&self) -> &AuthOptions {
        &self.auth_options
    }

    /// The settings the engine logs in with: with a source of the caller's, `Auto` settings
    /// take the source's method (no password, no cloud to guess): Azure for an
    /// `azure::AzureSource`, whose tokens may name the user, else
    /// [`AuthMethod::Custom`](crate::AuthMethod::Custom), which logs in as `PGUSER`.
    #[must_use]
    pub fn login_settings(&self) -> Settings {
        self.settings
            .for_source(self.token_source.as_deref())
            .into_owned()
    }

    /// Turns the background refresher off whatever the options say: for migration engines,
    /// which are short-lived and may run on a runtime that ends soon.
    pub fn disable_background_refresh(&mut self) {
        self.auth_options = self.auth_options.clone().background_refresh(false);
    }

    /// Builds the engine's own credential, with the settings' refresh policy and fallback
    /// password: the one way to make a credential from settings.
    pub async fn build_auth(&self) -> Result<Auth, Error> {
        if self.migrations {
            self.login_settings().check_migration_support()?;
        }
        Auth::build(
            &self.settings,
            self.token_source.clone(),
            self.auth_options.clone(),
        )
        .await
    }

    /// Builds the engine's own credential and a tokio-postgres connector using it.
    #[cfg(feature = "tokio-postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio-postgres")))]
    pub async fn build_connector(&self) -> Result<crate::PgConnector, Error> {
        let settings = self.login_settings();
        // Validate the target before any credential is made.
        crate::login::LoginTarget::from_settings(&settings)?;
        let auth = self.build_auth().await?;
        crate::PgConnector::new(&settings, auth)
    }
}

impl fmt::Debug for CredentialConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialConfig")
            .field("settings", &self.settings)
            .field("auth_options", &self.auth_options)
            .field("token_source", &self.token_source)
            .field("migrations", &self.migrations)
            .finish()
    }
}

/// What every pooled engine's builder holds: the credential's configuration and the pool
/// options all four adapters share, with one set of checks.
#[derive(Clone)]
pub struct PoolConfig {
    credential: CredentialConfig,
    max_size: usize,
    max_lifetime: Option<Duration>,
    connection_timeout: Duration,
    dispose_timeout: Duration,
}

impl PoolConfig {
    /// The defaults: [`DEFAULT_MAX_SIZE`] connections, [`DEFAULT_MAX_LIFETIME`],
    /// [`DEFAULT_CONNECTION_TIMEOUT`], [`DEFAULT_DISPOSE_TIMEOUT`], background refresh on.
    #[must_use]
    pub fn new(settings: Settings) -> Self {
        Self {
            credential: CredentialConfig::new(settings),
            max_size: DEFAULT_MAX_SIZE,
            max_lifetime: Some(DEFAULT_MAX_LIFETIME),
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            dispose_timeout: DEFAULT_DISPOSE_TIMEOUT,
        }
    }

    /// The credential's part.
    #[must_use]
    pub fn credential(&self) -> &CredentialConfig {
        &self.credential
    }

    /// The credential's part, to change.
    pub fn credential_mut(&mut self) -> &mut CredentialConfig {
        &mut self.credential
    }

    /// Sets the most connections the pool opens.
    pub fn set_max_size(&mut self, max_size: usize) {
        self.max_size = max_size;
    }

    /// Sets the max connection lifetime (`None`: no limit).
    pub fn set_max_lifetime(&mut self, max_lifetime: Option<Duration>) {
        self.max_lifetime = max_lifetime;
    }

    /// Sets how long a checkout may take.
    pub fn set_connection_timeout(&mut self, timeout: Duration) {
        self.connection_timeout = timeout;
    }

    /// Sets how long `dispose()` waits for checked-out connections.
    pub fn set_dispose_timeout(&mut self, timeout: Duration) {
        self.dispose_timeout = timeout;
    }

    /// The most connections the pool opens.
    #[must_use]
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// The max connection lifetime.
    #[must_use]
    pub fn max_lifetime(&self) -> Option<Duration> {
        self.max_lifetime
    }

    /// How long a checkout may take.
    #[must_use]
    pub fn connection_timeout(&self) -> Duration {
        self.connection_timeout
    }

    /// How long `dispose()` waits for checked-out connections.
    #[must_use]
    pub fn dispose_timeout(&self) -> Duration {
        self.dispose_timeout
    }

    /// Refuses options the pool libraries would misbehave (or panic) with, naming the builder
    /// method to change: no connections, a zero lifetime or a zero timeout.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.max_size == 0 {
            return Err(ConfigError::new("max_size", "must be at least 1"));
        }
        if u32::try_from(self.max_size).is_err() {
            return Err(ConfigError::new("max_size", "must fit in 32 bits"));
        }
        if self.max_lifetime == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                "max_lifetime",
                "must be more than zero; pass None to keep connections without a limit",
            ));
        }
        if self.connection_timeout.is_zero() {
            return Err(ConfigError::new(
                "connection_timeout",
                "must be more than zero (a checkout would always time out)",
            ));
        }
        // Aurora DSQL closes connections after an hour: the pool must recycle them first.
        self.credential
            .login_settings()
            .check_max_lifetime(self.max_lifetime)
    }
}

impl fmt::Debug for PoolConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolConfig")
            .field("credential", &self.credential)
            .field("max_size", &self.max_size)
            .field("max_lifetime", &self.max_lifetime)
            .field("connection_timeout", &self.connection_timeout)
            .field("dispose_timeout", &self.dispose_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::offline_password_settings;

    #[test]
    fn options_no_pool_can_work_with_are_refused_by_name() {
        type Change = fn(&mut PoolConfig);
        let cases: [(Change, &str); 4] = [
            (|c| c.set_max_size(0), "max_size"),
            (|c| c.set_max_size(usize::MAX), "max_size"),
            (|c| c.set_max_lifetime(Some(Duration::ZERO)), "max_lifetime"),
            (
                |c| c.set_connection_timeout(Duration::ZERO),
                "connection_timeout",
            ),
        ];
        for (change, setting) in cases {
            let mut config = PoolConfig::new(offline_password_settings("pw"));
            assert!(config.check().is_ok());
            change(&mut config);
            assert_eq!(config.check().unwrap_err().setting(), setting);
        }
        let mut config = PoolConfig::new(offline_password_settings("pw"));
        config.set_max_lifetime(None);
        config.set_dispose_timeout(Duration::ZERO);
        assert!(
            config.check().is_ok(),
            "no lifetime limit, no wait at dispose"
        );
    }

    #[test]
    fn debug_shows_no_password() {
        let config = PoolConfig::new(offline_password_settings("hunter2-secret"));
        let text = format!("{config:?}");
        assert!(!text.contains("hunter2-secret"), "{text}");
        assert!(text.contains("max_size: 10"), "{text}");
    }
}
