//! One tokio-postgres connection with a fresh token: the building block of the
//! deadpool, bb8 and diesel-async adapters and of every migration engine.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::task::JoinHandle;
use tokio_postgres::config::{SslMode as PgSslMode, TargetSessionAttrs as PgTargetSessionAttrs};
use tokio_postgres::tls::NoTlsStream;
use tokio_postgres::{Client, Config, NoTls, Socket};

use crate::Secret;
use crate::auth::Auth;
use crate::error::Error;
use crate::login::{Attempt, AttemptError, LoginStats, LoginTarget};
use crate::settings::{Settings, SslMode, TargetSessionAttrs};
use crate::status::AuthStatus;
use crate::tls::MakeRustls;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Opens tokio-postgres connections for one server with tokens from one [`Auth`].
///
/// Each [`PgConnector::connect`] asks the `Auth` for a token (cached, usually without
/// waiting) and logs in through the [`LoginTarget`] of the settings: its TLS decision, user
/// and one retry with a new token when the server refuses the credentials. Clones share the
/// same `Auth` and counters.
#[derive(Clone)]
pub struct PgConnector {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    target: LoginTarget,
    tls: Option<MakeRustls>,
    auth: Auth,
}

impl PgConnector {
    /// A connector for `settings` (validated here) using `auth` for passwords.
    pub fn new(settings: &Settings, auth: Auth) -> Result<Self, Error> {
        let target = LoginTarget::from_settings(settings)?;
        let policy = target.tls();
        let endpoint = target.endpoint();
        let mut config = Config::new();
        config.host(endpoint.host()).port(endpoint.port());
        if let Some(addr) = endpoint.hostaddr() {
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
        if let Some(options) = &settings.options {
            config.options(options);
        }
        config.target_session_attrs(match settings.target_session_attrs {
            TargetSessionAttrs::Any => PgTargetSessionAttrs::Any,
            TargetSessionAttrs::ReadWrite => PgTargetSessionAttrs::ReadWrite,
            TargetSessionAttrs::ReadOnly => PgTargetSessionAttrs::ReadOnly,
        });
        config.keepalives(settings.keepalives);
        // The getters drop libpq's zeros ("the system's default"), which the system refuses.
        if let Some(idle) = settings.get_keepalives_idle() {
            config.keepalives_idle(idle);
        }
        if let Some(interval) = settings.get_keepalives_interval() {
            config.keepalives_interval(interval);
        }
        if let Some(count) = settings.get_keepalives_count() {
            config.keepalives_retries(count);
        }
        config.ssl_mode(match policy.mode() {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            _ => PgSslMode::Require,
        });
        let tls = policy.client_config().cloned().map(MakeRustls::new);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                target,
                tls,
                auth,
            }),
        })
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
        let refused: Mutex<Option<Secret>> = Mutex::new(None);
        let pair = inner
            .target
            .retry_once(|attempt| {
                let refused = &refused;
                async move {
                    if attempt == Attempt::Retry
                        && let Some(token) = lock(refused).take()
                    {
                        inner.auth.invalidate(&token);
                    }
                    let token = inner.auth.token().await?;
                    let user = inner.target.user_for(&token)?;
                    let mut config = inner.config.clone();
                    if let Some(addr) = inner.target.checked_address().await? {
                        // Dial exactly the address that was checked, not a fresh resolution.
                        config.hostaddr(addr);
                    }
                    config.user(&user).password(token.secret().expose());
                    self.connect_once(&config).await.map_err(|error| {
                        if let Some(message) = session_refusal(&error) {
                            return AttemptError::Before(Error::Connect {
                                target: inner.target.label(),
                                message,
                                sqlstate: None,
                                source: Box::new(error),
                            });
                        }
                        *lock(refused) = Some(token.secret().clone());
                        let sqlstate = error.code().map(|code| code.code().to_string());
                        AttemptError::Server { error, sqlstate }
                    })
                }
            })
            .await?;
        inner.target.count_opened();
        tracing::debug!(target_db = %inner.target.label(), "connection opened");
        Ok(pair)
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
        let stats = self.inner.target.stats();
        crate::EngineStatus::new(
            self.status(),
            stats.connections_opened,
            stats.auth_retries,
            pool,
        )
    }

    /// Connection counters.
    #[must_use]
    pub fn stats(&self) -> LoginStats {
        self.inner.target.stats()
    }

    /// `host:port as user`, for messages.
    #[must_use]
    pub fn target(&self) -> String {
        self.inner.target.label()
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
            .field("target", &self.inner.target.label())
            .field("tls", &self.inner.tls.is_some())
            .field("auth", &self.inner.auth)
            .field("stats", &self.stats())
            .finish()
    }
}

/// tokio-postgres's `target_session_attrs` refusal (an untyped I/O error after the login) as
/// the text every adapter gives.
fn session_refusal(error: &tokio_postgres::Error) -> Option<String> {
    let io = std::error::Error::source(error)?.downcast_ref::<std::io::Error>()?;
    if io.kind() != std::io::ErrorKind::PermissionDenied {
        return None;
    }
    match io.to_string().as_str() {
        "database does not allow writes" => TargetSessionAttrs::ReadWrite.refusal(Some("on"), None),
        "database is not read only" => TargetSessionAttrs::ReadOnly.refusal(Some("off"), None),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeSource, offline_password_settings, offline_settings};
    use crate::{AuthOptions, Secret, TokenErrorKind};

    #[tokio::test]
    async fn the_engine_config_takes_the_callers_source_or_the_one_the_settings_name() {
        use crate::engine::CredentialConfig;
        let (clock, source) = FakeSource::with_manual_clock(None);
        let mut settings = offline_settings();
        settings.fallback_password = Some(Secret::new("fallback-pw"));
        let options = AuthOptions::default().clock(Arc::new(clock));
        let mut config = CredentialConfig::new(settings);
        config.set_auth_options(options.clone());
        config.set_token_source(source.clone());
        let connector = {
            config.disable_background_refresh();
            config.build_connector()
        }
        .await
        .unwrap();
        assert_eq!(connector.target(), "127.0.0.1:1 as app");
        assert_eq!(connector.status().method, "callback");
        assert!(!connector.auth().refresher_running());
        source.fail(TokenErrorKind::Rejected, None);
        let token = connector.auth().token().await.unwrap();
        assert_eq!(token.secret().expose(), "fallback-pw");

        let mut config = CredentialConfig::new(offline_password_settings("pw"));
        config.set_auth_options(options.clone());
        let connector = config.build_connector().await.unwrap();
        assert_eq!(connector.status().method, "password");
        // `Auto` settings without a source name none.
        let error = CredentialConfig::new(offline_settings())
            .build_connector()
            .await
            .unwrap_err();
        assert!(
            matches!(&error, Error::Config(e) if e.setting() == "PGAUTH_METHOD"),
            "{error}"
        );
    }
}
