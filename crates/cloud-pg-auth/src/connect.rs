//! One tokio-postgres connection with a fresh token: the building block of the
//! deadpool, bb8 and diesel-async adapters and of every migration engine.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Client, Config, NoTls, Socket};

use crate::AccessToken;
use crate::auth::Auth;
use crate::error::Error;
use crate::net::Endpoint;
use crate::settings::{Settings, SslMode};
use crate::source::TokenSource;
use crate::status::AuthStatus;
use crate::tls::{CertCheck, MakeRustls, TlsPolicy};

/// Opens tokio-postgres connections for one server with tokens from one [`Auth`].
///
/// Each [`PgConnector::connect`] asks the `Auth` for a token (cached, usually without
/// waiting), logs in over the TLS policy of the settings and, when the server refuses the
/// credentials (SQLSTATE 28P01 or 28000), drops the token and retries once with a new one.
/// Clones share the same `Auth` and counters.
#[derive(Clone)]
pub struct PgConnector {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    endpoint: Endpoint,
    /// Resolve and check the dialled addresses before each login (a token without a
    /// verified certificate may go only to a loopback address).
    check_dialled: bool,
    user: Option<String>,
    target: String,
    tls: Option<MakeRustls>,
    auth: Auth,
    opened: AtomicU64,
    auth_retries: AtomicU64,
    warned_guid_user: AtomicBool,
}

/// Counters of a connector, for status output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ConnectorStats {
    /// Physical connections opened.
    pub connections_opened: u64,
    /// Logins retried after the server refused a token.
    pub auth_retries: u64,
}

impl PgConnector {
    /// A connector for `settings` (validated here) using `auth` for passwords.
    pub fn new(settings: &Settings, auth: Auth) -> Result<Self, Error> {
        settings.validate()?;
        let policy = TlsPolicy::from_settings(settings)?;
        let endpoint = Endpoint::from_settings(settings)?;
        let host = settings.host.clone().unwrap_or_default();
        let mut config = Config::new();
        config.host(&host).port(settings.port);
        if let Some(addr) = settings.hostaddr {
            // Dial the address, verify the certificate against `host` (libpq's hostaddr).
            config.hostaddr(addr);
        }
        if let Some(db) = &settings.dbname {
            config.dbname(db);
        }
        if let Some(app) = &settings.application_name {
            config.application_name(app);
        }
        if let Some(timeout) = settings.connect_timeout {
            config.connect_timeout(timeout);
        }
        config.ssl_mode(match policy.mode() {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            _ => PgSslMode::Require,
        });
        let tls = policy.client_config().cloned().map(MakeRustls::new);
        let target = format!(
            "{} as {}",
            endpoint.label(),
            settings.user.as_deref().unwrap_or("<user from token>")
        );
        let check_dialled = settings.resolved_method()?.is_token()
            && policy.check() == CertCheck::None
            && endpoint.unix_socket_dir().is_none();
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                endpoint,
                check_dialled,
                user: settings.user.clone(),
                target,
                tls,
                auth,
                opened: AtomicU64::new(0),
                auth_retries: AtomicU64::new(0),
                warned_guid_user: AtomicBool::new(false),
            }),
        })
    }

    /// Builds the credential from the settings and a connector using it.
    pub async fn from_settings(
        settings: &Settings,
        options: crate::AuthOptions,
    ) -> Result<Self, Error> {
        let auth = Auth::from_settings(settings, options).await?;
        Self::new(settings, auth)
    }

    /// An engine's connector and its own credential: from `source` when the caller gives
    /// one (then `Auto` settings mean that source, see [`Settings::for_custom_source`]), else
    /// from the source the settings name; with the settings' refresh policy and fallback
    /// password either way (see [`Auth::build`]).
    pub async fn build(
        settings: &Settings,
        source: Option<Arc<dyn TokenSource>>,
        options: crate::AuthOptions,
    ) -> Result<Self, Error> {
        let settings = settings.for_source(source.is_some());
        let auth = Auth::build(&settings, source, options).await?;
        Self::new(&settings, auth)
    }

    /// Opens one connection. The connection's I/O task is spawned on the current runtime;
    /// its handle is returned so pools can watch it.
    pub async fn connect(&self) -> Result<(Client, JoinHandle<()>), Error> {
        let (client, connection) = self.connect_raw().await?;
        Ok((client, connection.spawn()))
    }

    /// Like [`PgConnector::connect`], but hands back the connection's I/O half unspawned,
    /// for drivers that drive it themselves (diesel-async's
    /// `AsyncPgConnection::try_from_client_and_connection` keeps LISTEN/NOTIFY and
    /// connection errors that way).
    pub async fn connect_raw(&self) -> Result<(Client, RawConnection), Error> {
        let inner = &self.inner;
        let mut retried = false;
        loop {
            let token = inner.auth.token().await?;
            let user = self.user_for(&token)?;
            let mut config = inner.config.clone();
            if inner.check_dialled {
                // Dial exactly the address that was checked, not a fresh resolution.
                let addr = inner.endpoint.resolve().await?[0];
                if inner.endpoint.hostaddr().is_none() {
                    config.hostaddr(addr.ip());
                }
            }
            config.user(&user).password(token.secret().expose());
            match self.connect_once(&config).await {
                Ok(pair) => {
                    inner.opened.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(target_db = %inner.target, user = %user, "connection opened");
                    return Ok(pair);
                }
                Err(error) => {
                    let auth_failure = matches!(
                        error.code().map(tokio_postgres::error::SqlState::code),
                        Some("28P01" | "28000")
                    );
                    if auth_failure && !retried {
                        retried = true;
                        inner.auth_retries.fetch_add(1, Ordering::Relaxed);
                        tracing::info!(target_db = %inner.target, "login refused; retrying once with a new token");
                        inner.auth.invalidate(token.secret());
                        continue;
                    }
                    return Err(self.connect_error(&user, error, auth_failure));
                }
            }
        }
    }

    async fn connect_once(
        &self,
        config: &Config,
    ) -> Result<(Client, RawConnection), tokio_postgres::Error> {
        Ok(match &self.inner.tls {
            Some(tls) => {
                let (client, connection) = config.connect(tls.clone()).await?;
                (client, RawConnection::Tls(connection))
            }
            None => {
                let (client, connection) = config.connect(NoTls).await?;
                (client, RawConnection::Plain(connection))
            }
        })
    }

    fn user_for(&self, token: &AccessToken) -> Result<String, Error> {
        let details = token.details();
        if let Some(user) = &self.inner.user {
            if let Some(warning) = crate::azure::guid_username_warning(user, details)
                && !self.inner.warned_guid_user.swap(true, Ordering::Relaxed)
            {
                tracing::warn!("{warning}");
            }
            return Ok(user.clone());
        }
        // Only Azure gets here without PGUSER: validation requires it for the other methods.
        details
            .username
            .clone()
            .ok_or_else(|| Error::Config(crate::azure::username_required_error(details)))
    }

    fn connect_error(&self, user: &str, error: tokio_postgres::Error, auth_failure: bool) -> Error {
        let target = format!("{} as {user}", self.inner.endpoint.label());
        let text = crate::chain_text(&error);
        let message = if auth_failure {
            format!(
                "the server refused the credentials twice, also with the newest token available ({text}); check that the role {user:?} exists and is mapped to this identity (Azure: pgaadauth_create_principal; AWS: GRANT rds_iam), and see docs/troubleshooting.md"
            )
        } else if let Some(hint) = crate::tls::certificate_hint(&error) {
            hint
        } else {
            text
        };
        Error::Connect {
            target,
            message,
            source: Box::new(error),
        }
    }

    /// The credential in use.
    #[must_use]
    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    /// The auth status.
    #[must_use]
    pub fn status(&self) -> AuthStatus {
        self.inner.auth.status()
    }

    /// The engine status without pool figures (a migration engine's), or with the given ones.
    #[must_use]
    pub fn engine_status(&self, pool: Option<crate::PoolStatus>) -> crate::EngineStatus {
        let stats = self.stats();
        crate::EngineStatus::new(
            self.status(),
            stats.connections_opened,
            stats.auth_retries,
            pool,
        )
    }

    /// Connection counters.
    #[must_use]
    pub fn stats(&self) -> ConnectorStats {
        ConnectorStats {
            connections_opened: self.inner.opened.load(Ordering::Relaxed),
            auth_retries: self.inner.auth_retries.load(Ordering::Relaxed),
        }
    }

    /// `host:port as user`, for messages.
    #[must_use]
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// The tokio-postgres config without user or password (for adapters that need the host).
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Stops the refresher and drops the credential. Later connects fail with
    /// [`Error::Disposed`].
    pub async fn dispose(&self) {
        self.inner.auth.dispose().await;
    }
}

/// The I/O half of a connection opened by [`PgConnector::connect_raw`], not yet spawned.
/// It must be driven (spawned or awaited) for the client to work.
#[non_exhaustive]
pub enum RawConnection {
    /// Without TLS (`sslmode=disable`).
    Plain(tokio_postgres::Connection<Socket, NoTlsStream>),
    /// Over TLS (rustls).
    Tls(tokio_postgres::Connection<Socket, crate::tls::Stream<Socket>>),
}

impl RawConnection {
    /// Spawns the I/O task on the current runtime.
    #[must_use = "the handle tells when the connection has ended"]
    pub fn spawn(self) -> JoinHandle<()> {
        match self {
            Self::Plain(connection) => spawn_connection(connection),
            Self::Tls(connection) => spawn_connection(connection),
        }
    }
}

impl fmt::Debug for RawConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Plain(_) => "RawConnection::Plain",
            Self::Tls(_) => "RawConnection::Tls",
        })
    }
}

fn spawn_connection<S, T>(connection: tokio_postgres::Connection<S, T>) -> JoinHandle<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(error = %error, "connection closed with an error");
        }
    })
}

impl fmt::Debug for PgConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnector")
            .field("target", &self.inner.target)
            .field("tls", &self.inner.tls.is_some())
            .field("auth", &self.inner.auth)
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeSource, offline_password_settings, offline_settings};
    use crate::{AuthOptions, Secret, TokenErrorKind};

    #[tokio::test]
    async fn build_takes_the_callers_source_or_the_one_the_settings_name() {
        let (clock, source) = FakeSource::with_manual_clock(None);
        let mut settings = offline_settings();
        settings.fallback_password = Some(Secret::new("fallback-pw"));
        let options = AuthOptions::default()
            .clock(Arc::new(clock))
            .background_refresh(false);
        let connector = PgConnector::build(&settings, Some(source.clone()), options.clone())
            .await
            .unwrap();
        assert_eq!(connector.target(), "127.0.0.1:1 as app");
        assert_eq!(connector.status().method, "callback");
        source.fail(TokenErrorKind::Rejected, None);
        let token = connector.auth().token().await.unwrap();
        assert_eq!(token.secret().expose(), "fallback-pw");

        let connector = PgConnector::build(&offline_password_settings("pw"), None, options.clone())
            .await
            .unwrap();
        assert_eq!(connector.status().method, "password");
        // `Auto` settings without a source name none.
        let error = PgConnector::build(&offline_settings(), None, options)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, Error::Config(e) if e.setting() == "PGAUTH_METHOD"),
            "{error}"
        );
    }
}
