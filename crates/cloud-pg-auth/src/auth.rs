//! An engine's own credential: a token source behind a cache, with its background refresher.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::cache::{CacheOptions, RefreshTask, TokenCache};
use crate::clock::{Clock, SystemClock};
use crate::error::{ConfigError, Error};
use crate::settings::{AuthMethod, Settings};
use crate::source::{SourceInfo, StaticPassword, TokenSource};
use crate::status::AuthStatus;
use crate::{AccessToken, Secret};

/// Options of an [`Auth`], set with the builder methods below.
#[derive(Clone)]
pub struct AuthOptions {
    /// Keep the token fresh from a background task, so no connection open waits on the
    /// identity endpoint. On by default.
    pub(crate) background_refresh: bool,
    /// Cache options; `Auth::from_settings` fills the policy and fallback from the settings.
    pub(crate) cache: CacheOptions,
    /// The clock (tests move a [`ManualClock`](crate::clock::ManualClock)).
    pub(crate) clock: Arc<dyn Clock>,
}

impl Default for AuthOptions {
    fn default() -> Self {
        Self {
            background_refresh: true,
            cache: CacheOptions::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl fmt::Debug for AuthOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthOptions")
            .field("background_refresh", &self.background_refresh)
            .field("cache", &self.cache.policy)
            .field("fallback_password", &self.cache.fallback_password.is_some())
            .field("clock", &self.clock)
            .finish()
    }
}

impl AuthOptions {
    /// Turns the background refresher on or off.
    #[must_use]
    pub fn background_refresh(mut self, on: bool) -> Self {
        self.background_refresh = on;
        self
    }

    /// Sets the clock.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the cache options.
    #[must_use]
    pub fn cache(mut self, cache: CacheOptions) -> Self {
        self.cache = cache;
        self
    }

    /// The clock the credential reads.
    #[must_use]
    pub fn clock_handle(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }
}

/// The credential one engine owns: a [`TokenCache`] over its own [`TokenSource`], and the
/// background refresher if enabled.
///
/// Never share an `Auth` between engines or tokio runtimes: an HTTP client inside a cloud
/// credential is bound to the runtime that first used it. [`Auth::dispose`] stops the
/// refresher and drops the cache and source; afterwards `token()` returns
/// [`Error::Disposed`]. Clones share the same credential.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    info: SourceInfo,
    cache: Mutex<Option<TokenCache>>,
    refresher: Mutex<Option<RefreshTask>>,
    final_status: Mutex<Option<AuthStatus>>,
}

impl Auth {
    /// Wraps `source`. Starts the refresher when `options.background_refresh` is set and a
    /// tokio runtime is running (the refresher lives on that runtime).
    #[must_use]
    pub fn new(source: Arc<dyn TokenSource>, options: AuthOptions) -> Self {
        let cache = TokenCache::with_options(source, options.cache, options.clock);
        let refresher = if options.background_refresh {
            if tokio::runtime::Handle::try_current().is_ok() {
                Some(cache.spawn_refresher())
            } else {
                tracing::warn!("no tokio runtime: background token refresh is off");
                None
            }
        } else {
            None
        };
        Self {
            inner: Arc::new(Inner {
                info: cache.source_info().clone(),
                cache: Mutex::new(Some(cache)),
                refresher: Mutex::new(refresher),
                final_status: Mutex::new(None),
            }),
        }
    }

    /// Builds the source the settings name (password, Azure or AWS) and wraps it, with the
    /// settings' refresh policy and fallback password. Each call creates a new credential.
    /// Outside the crate: [`CredentialConfig::build_auth`](crate::engine::CredentialConfig::build_auth).
    pub(crate) async fn from_settings(
        settings: &Settings,
        options: AuthOptions,
    ) -> Result<Self, Error> {
        settings.validate()?;
        let source = source_from_settings(settings).await?;
        Ok(Self::for_settings(settings, source, options))
    }

    /// An engine's own credential: from `source` when the caller gives one (then `Auto`
    /// settings take the source's method, see [`Settings::for_custom_source`]), else from the source
    /// the settings name; with the settings' refresh policy and fallback password either way.
    /// The settings are validated. What [`CredentialConfig::build_auth`] runs.
    ///
    /// [`CredentialConfig::build_auth`]: crate::engine::CredentialConfig::build_auth
    pub(crate) async fn build(
        settings: &Settings,
        source: Option<Arc<dyn TokenSource>>,
        options: AuthOptions,
    ) -> Result<Self, Error> {
        let settings = settings.for_source(source.as_deref());
        match source {
            Some(source) => {
                settings.validate()?;
                Ok(Self::for_settings(&settings, source, options))
            }
            None => Self::from_settings(&settings, options).await,
        }
    }

    /// Wraps an already built `source` with the settings' refresh policy, fallback password
    /// and fallback role. Outside the crate:
    /// [`CredentialConfig`](crate::engine::CredentialConfig) with its `token_source`.
    #[must_use]
    pub(crate) fn for_settings(
        settings: &Settings,
        source: Arc<dyn TokenSource>,
        mut options: AuthOptions,
    ) -> Self {
        options.cache.policy = settings.refresh.clone();
        if let Some(fallback) = &settings.fallback_password {
            options.cache.fallback_password = Some(fallback.clone());
            options.cache.fallback_user = settings.fallback_user.clone();
        }
        Self::new(source, options)
    }

    /// A token valid now. See [`TokenCache::token`].
    pub async fn token(&self) -> Result<AccessToken, Error> {
        let cache = self.cache()?;
        cache.token().await
    }

    /// Drops `rejected` from the cache after the server refused it.
    pub fn invalidate(&self, rejected: &Secret) {
        if let Ok(cache) = self.cache() {
            cache.invalidate(rejected);
        }
    }

    /// A receiver that changes each time a new token arrives (see [`TokenCache::subscribe`]);
    /// `changed()` fails once the credential is disposed or dropped.
    pub fn token_changes(&self) -> Result<tokio::sync::watch::Receiver<u64>, Error> {
        Ok(self.cache()?.subscribe())
    }

    /// Fetches a new token now.
    pub async fn refresh_now(&self) -> Result<AccessToken, Error> {
        self.cache()?.refresh_now().await
    }

    /// The status; after dispose, the last status before it.
    #[must_use]
    pub fn status(&self) -> AuthStatus {
        match self.cache() {
            Ok(cache) => cache.status(),
            Err(_) => lock(&self.inner.final_status)
                .clone()
                .unwrap_or_else(|| TokenCache::new(Arc::new(StaticPassword::new(""))).status()),
        }
    }

    /// What the source is.
    #[must_use]
    pub fn source_info(&self) -> &SourceInfo {
        &self.inner.info
    }

    /// Stops the refresher (waiting until it has ended) and drops the cache and source.
    /// Idempotent.
    pub async fn dispose(&self) {
        let refresher = lock(&self.inner.refresher).take();
        if let Some(task) = refresher {
            task.stop().await;
        }
        let cache = lock(&self.inner.cache).take();
        if let Some(cache) = cache {
            *lock(&self.inner.final_status) = Some(cache.status());
            tracing::debug!(source = %self.inner.info.label(), "credential disposed");
        }
    }

    /// [`Auth::dispose`] without waiting: aborts the refresher and drops the cache and source
    /// now. For an engine's last handle being dropped, where nothing can be awaited and
    /// clones of the `Auth` may live on (they then answer [`Error::Disposed`]). Idempotent.
    pub fn close(&self) {
        // Dropping the handle aborts the task.
        drop(lock(&self.inner.refresher).take());
        let cache = lock(&self.inner.cache).take();
        if let Some(cache) = cache {
            *lock(&self.inner.final_status) = Some(cache.status());
            tracing::debug!(source = %self.inner.info.label(), "credential dropped with its engine");
        }
    }

    /// Whether [`Auth::dispose`] ran.
    #[must_use]
    pub fn is_disposed(&self) -> bool {
        lock(&self.inner.cache).is_none()
    }

    /// Whether the background refresher is running.
    #[must_use]
    pub fn refresher_running(&self) -> bool {
        lock(&self.inner.refresher)
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }

    fn cache(&self) -> Result<TokenCache, Error> {
        lock(&self.inner.cache).clone().ok_or(Error::Disposed)
    }
}

/// A panic elsewhere while a lock was held must not fail every later call: each guarded
/// value is replaced whole, so it is never left half-updated.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("source", &self.inner.info)
            .field("disposed", &self.is_disposed())
            .field("refresher_running", &self.refresher_running())
            .finish()
    }
}

/// Creates the token source the settings call for. Each call creates a new credential.
pub async fn source_from_settings(settings: &Settings) -> Result<Arc<dyn TokenSource>, Error> {
    match settings.resolved_method()? {
        AuthMethod::Password => {
            let password = settings.password.clone().ok_or_else(|| {
                ConfigError::new(
                    "PGPASSWORD",
                    "PGAUTH_METHOD=password needs a password; set PGPASSWORD",
                )
            })?;
            Ok(Arc::new(StaticPassword::new(password)))
        }
        AuthMethod::Azure => azure_source(settings),
        AuthMethod::Aws | AuthMethod::Dsql => aws_source(settings).await,
        AuthMethod::Gcp => gcp_source(settings),
        AuthMethod::Custom => Err(Error::Config(ConfigError::new(
            "PGAUTH_METHOD",
            "method custom needs a token source passed in code (the engine builder's token_source)",
        ))),
        AuthMethod::Auto => unreachable!("resolved_method never returns Auto"),
    }
}

#[cfg(feature = "azure")]
fn azure_source(settings: &Settings) -> Result<Arc<dyn TokenSource>, Error> {
    Ok(Arc::new(crate::azure::AzureSource::new(&settings.azure)?))
}

#[cfg(not(feature = "azure"))]
fn azure_source(_: &Settings) -> Result<Arc<dyn TokenSource>, Error> {
    Err(missing_feature("azure"))
}

#[cfg(feature = "aws")]
async fn aws_source(settings: &Settings) -> Result<Arc<dyn TokenSource>, Error> {
    // RDS or Aurora DSQL tokens, as the method says.
    Ok(Arc::new(
        crate::aws::AwsSource::for_settings(settings).await?,
    ))
}

#[cfg(not(feature = "aws"))]
async fn aws_source(_: &Settings) -> Result<Arc<dyn TokenSource>, Error> {
    Err(missing_feature("aws"))
}

#[cfg(feature = "gcp")]
fn gcp_source(settings: &Settings) -> Result<Arc<dyn TokenSource>, Error> {
    // PGUSER unset: the user name comes from the principal's email.
    Ok(Arc::new(crate::gcp::GcpSource::new(
        &settings.gcp,
        settings.user.as_deref(),
    )?))
}

#[cfg(not(feature = "gcp"))]
fn gcp_source(_: &Settings) -> Result<Arc<dyn TokenSource>, Error> {
    Err(missing_feature("gcp"))
}

#[cfg(not(all(feature = "azure", feature = "aws", feature = "gcp")))]
fn missing_feature(name: &str) -> Error {
    Error::Config(ConfigError::new(
        "PGAUTH_METHOD",
        format!(
            "{name} support is not compiled in; enable the feature \"{name}\" of cloud-pg-auth (or of the adapter crate)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::*;
    use crate::TokenErrorKind;
    use crate::testing::{FakeSource, offline_password_settings, offline_settings};
    use cloud_pg_auth_testkit::{PATIENCE, poll_until};

    #[tokio::test]
    async fn close_stops_the_refresher_and_drops_the_source_while_clones_live() {
        let (clock, source) = FakeSource::with_manual_clock(Some(Duration::from_secs(3600)));
        let dropped = source.drop_flag();
        let auth = Auth::new(
            source.clone(),
            AuthOptions::default().clock(Arc::new(clock)),
        );
        drop(source);
        let clone = auth.clone();
        assert!(auth.refresher_running());
        auth.close();
        auth.close();
        assert!(!clone.refresher_running());
        assert!(clone.is_disposed());
        assert!(dropped.load(Ordering::SeqCst), "the source was dropped");
        assert!(matches!(clone.token().await, Err(Error::Disposed)));
        assert!(!clone.status().background_refresh);
    }

    #[tokio::test]
    async fn a_custom_source_gets_the_settings_refresh_policy_and_fallback_password() {
        let (clock, source) = FakeSource::with_manual_clock(Some(Duration::from_secs(3600)));
        let mut settings = offline_settings();
        settings.refresh.min_margin = Duration::from_secs(20 * 60);
        settings.fallback_password = Some(Secret::new("fallback-pw"));
        // The caller's cache options give way to the settings', as without a source.
        let options = AuthOptions::default()
            .clock(Arc::new(clock.clone()))
            .background_refresh(false)
            .cache(CacheOptions::default().fallback_password("callers-pw"));
        let auth = Auth::build(&settings, Some(source.clone()), options)
            .await
            .unwrap();
        assert_eq!(
            auth.token().await.unwrap().secret().expose(),
            "fake-token-1"
        );
        let status = auth.status();
        assert_eq!(status.method, "callback");
        assert_eq!(
            status.refresh_at,
            Some(clock.now() + Duration::from_secs(40 * 60)),
            "the settings' refresh margin applies"
        );
        source.fail(TokenErrorKind::Rejected, None);
        clock.advance(Duration::from_secs(2 * 3600));
        assert_eq!(auth.token().await.unwrap().secret().expose(), "fallback-pw");
        assert_eq!(auth.status().fallback_count, 1);
    }

    #[tokio::test]
    async fn build_validates_the_settings_the_engine_will_use() {
        let source = || FakeSource::with_manual_clock(None).1;
        // No source and no method: nothing to log in with.
        let error = Auth::build(&offline_settings(), None, AuthOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&error, Error::Config(e) if e.setting() == "PGAUTH_METHOD"),
            "{error}"
        );
        // A source does not excuse a missing host.
        let mut settings = offline_settings();
        settings.host = None;
        let error = Auth::build(&settings, Some(source()), AuthOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(&error, Error::Config(e) if e.setting() == "PGHOST"),
            "{error}"
        );
        // A source with password settings replaces the password.
        let settings = offline_password_settings("pw");
        let auth = Auth::build(&settings, Some(source()), AuthOptions::default())
            .await
            .unwrap();
        assert_eq!(auth.source_info().label(), "callback fake");
        auth.dispose().await;
        // Without a source, the settings name it.
        let auth = Auth::build(&settings, None, AuthOptions::default())
            .await
            .unwrap();
        assert_eq!(auth.status().method, "password");
        assert_eq!(auth.token().await.unwrap().secret().expose(), "pw");
        auth.dispose().await;
    }

    #[test]
    fn a_refresher_lost_with_its_runtime_no_longer_defers_refreshes() {
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let (clock, source) = FakeSource::with_manual_clock(Some(Duration::from_secs(3600)));
        // The refresher's first fetch is still in flight when its runtime shuts down.
        source.set_delay(Duration::from_secs(3600));
        let first = runtime();
        let auth = first.block_on(async {
            let options = AuthOptions::default().clock(Arc::new(clock.clone()));
            let auth = Auth::new(source.clone(), options);
            poll_until("source.calls() == 1", PATIENCE, async || {
                source.calls() == 1
            })
            .await;
            auth
        });
        assert!(auth.status().background_refresh);
        drop(first);
        assert!(
            !auth.status().background_refresh,
            "the refresher ended with its runtime"
        );
        assert!(!auth.refresher_running());

        source.set_delay(Duration::ZERO);
        runtime().block_on(async {
            // The fetch lost with the first runtime is not waited for: a new one starts.
            let token = auth.token().await.unwrap();
            assert_eq!(token.secret().expose(), "fake-token-2");
            // Due for refresh and still valid: with no refresher left, the caller refreshes.
            clock.advance(Duration::from_secs(3300));
            let token = auth.token().await.unwrap();
            assert_eq!(token.secret().expose(), "fake-token-3");
            assert_eq!(source.calls(), 3);
        });
    }
}
