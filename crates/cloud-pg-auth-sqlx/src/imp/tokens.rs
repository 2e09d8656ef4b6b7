//! Keeping the pool's connect options current: sqlx has no per-connection password hook, so
//! the engine installs each token of its credential in the options with
//! `Pool::set_connect_options`, from a watcher task and at checkout.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use cloud_pg_auth::clock::Clock;
use cloud_pg_auth::engine::LifecycleWatch;
use cloud_pg_auth::{AccessToken, Auth, Secret};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Pool;
use super::target::Target;

/// An installed token counts as stale this long before it expires, so that no new connection
/// starts a login with a token about to lapse.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

/// How often (on the credential's clock) the watcher compares the installed token with the
/// clock. The refresher sleeps on tokio's monotonic timer, which does not count the time a
/// suspended process spent asleep; this short tick notices the wall-clock jump, so that the
/// options are current soon after waking even without a checkout through the engine.
const STALE_CHECK: Duration = Duration::from_secs(5);

/// The token in the pool's connect options, and how it gets there.
pub(crate) struct Tokens {
    pool: Pool,
    target: Arc<Target>,
    auth: Auth,
    clock: Arc<dyn Clock>,
    /// Set with the options, under this lock, so a token installed while the engine is
    /// disposed never stays in them.
    installed: Mutex<Option<Installed>>,
    /// One install at a time, so an older token never replaces a newer one.
    install_lock: tokio::sync::Mutex<()>,
    closed: LifecycleWatch,
}

/// The token in the pool's connect options.
struct Installed {
    secret: Secret,
    expires_at: Option<SystemTime>,
    refresh_at: Option<SystemTime>,
}

impl Tokens {
    /// Installs tokens of `auth` (read on `clock`) in `pool`'s options until `closed`.
    pub(crate) fn new(
        pool: Pool,
        target: Arc<Target>,
        auth: Auth,
        clock: Arc<dyn Clock>,
        closed: LifecycleWatch,
    ) -> Self {
        Self {
            pool,
            target,
            auth,
            clock,
            installed: Mutex::new(None),
            install_lock: tokio::sync::Mutex::new(()),
            closed,
        }
    }

    fn installed(&self) -> std::sync::MutexGuard<'_, Option<Installed>> {
        self.installed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a new connection would log in with a token that is due for refresh, expired or
    /// about to expire (on the credential's clock), or with none.
    fn is_stale(&self) -> bool {
        let now = self.clock.now();
        match &*self.installed() {
            None => true,
            Some(installed) => {
                installed.refresh_at.is_some_and(|at| now >= at)
                    || installed
                        .expires_at
                        .is_some_and(|at| now + EXPIRY_MARGIN >= at)
            }
        }
    }

    /// Makes the installed token current before a checkout that may open a connection (a
    /// process that slept past the refresh time). A failure to get a token is an error only
    /// when the installed one is no longer valid.
    pub(crate) async fn ensure_fresh(&self) -> Result<(), cloud_pg_auth::Error> {
        if !self.is_stale() {
            return Ok(());
        }
        let _guard = self.install_lock.lock().await;
        if !self.is_stale() {
            return Ok(());
        }
        match self.auth.token().await {
            Ok(token) => self.install(&token),
            Err(error) => {
                let now = self.clock.now();
                let usable = self
                    .installed()
                    .as_ref()
                    .is_some_and(|i| i.expires_at.is_none_or(|at| now < at));
                if usable {
                    tracing::warn!(error = %cloud_pg_auth::engine::chain_text(&error), "token refresh failed; the installed token is still valid");
                    Ok(())
                } else {
                    Err(error)
                }
            }
        }
    }

    /// The installed token's secret.
    pub(crate) fn installed_secret(&self) -> Option<Secret> {
        self.installed().as_ref().map(|i| i.secret.clone())
    }

    /// After the server refused `rejected` (the token installed when the checkout began):
    /// drop it from the cache and install a new one, unless another caller already did.
    pub(crate) async fn replace_rejected(
        &self,
        rejected: Option<Secret>,
    ) -> Result<(), cloud_pg_auth::Error> {
        let _guard = self.install_lock.lock().await;
        if self.installed_secret() != rejected {
            return Ok(());
        }
        if let Some(rejected) = &rejected {
            self.auth.invalidate(rejected);
        }
        let token = self.auth.token().await?;
        self.install(&token)
    }

    /// Installs the credential's current token (at build, and the watcher after each new
    /// token).
    pub(crate) async fn install_current(&self) -> Result<(), cloud_pg_auth::Error> {
        let _guard = self.install_lock.lock().await;
        if self.closed.is_closed() {
            return Ok(());
        }
        let token = self.auth.token().await?;
        self.install(&token)
    }

    /// Installs `token` in the pool's connect options, if it is not installed already and
    /// the engine is open. Callers hold `install_lock`.
    fn install(&self, token: &AccessToken) -> Result<(), cloud_pg_auth::Error> {
        if self
            .installed()
            .as_ref()
            .is_some_and(|i| i.secret == *token.secret())
        {
            return Ok(());
        }
        let options = self.target.options_for(token)?;
        let refresh_at = self.auth.status().refresh_at;
        let mut installed = self.installed();
        if self.closed.is_closed() {
            return Ok(());
        }
        self.pool.set_connect_options(options);
        *installed = Some(Installed {
            secret: token.secret().clone(),
            expires_at: token.expires_at(),
            refresh_at,
        });
        tracing::debug!(target_db = %self.target.label(), "new token installed in the pool's connect options");
        Ok(())
    }

    /// Takes the token out of the pool's options (the engine is disposed: its flag is set
    /// first, so no install can follow).
    pub(crate) fn remove(&self) {
        let mut installed = self.installed();
        self.pool.set_connect_options(self.target.base_options());
        *installed = None;
    }

    /// Starts the task that installs each new token `changes` announces. It holds the
    /// installer weakly and ends when the engine or the credential is gone.
    pub(crate) fn spawn_watcher(self: &Arc<Self>, changes: watch::Receiver<u64>) -> JoinHandle<()> {
        tokio::spawn(watch_tokens(
            Arc::downgrade(self),
            changes,
            Arc::clone(&self.clock),
        ))
    }

    /// On the watcher's tick: installs a valid token when the installed one is stale (a
    /// wall-clock jump the refresher has not woken up to yet). Only with the background
    /// refresher on: without it, nothing fetches tokens in the background.
    async fn refresh_if_stale(&self) {
        if !self.auth.refresher_running() || !self.is_stale() || self.closed.is_closed() {
            return;
        }
        if let Err(error) = self.ensure_fresh().await {
            tracing::warn!(error = %cloud_pg_auth::engine::chain_text(&error), "the installed token is stale and no new one could be had");
        }
    }
}

async fn watch_tokens(
    tokens: Weak<Tokens>,
    mut changes: watch::Receiver<u64>,
    clock: Arc<dyn Clock>,
) {
    loop {
        let changed = tokio::select! {
            changed = changes.changed() => changed.is_ok(),
            () = clock.sleep(STALE_CHECK) => {
                let Some(tokens) = tokens.upgrade() else {
                    return;
                };
                tokens.refresh_if_stale().await;
                continue;
            }
        };
        let Some(tokens) = tokens.upgrade().filter(|_| changed) else {
            return;
        };
        if let Err(error) = tokens.install_current().await {
            tracing::warn!(error = %cloud_pg_auth::engine::chain_text(&error), "could not install the new token");
        }
    }
}
