//! The driver-neutral login layer: where a login goes, as whom, over which TLS decision, and
//! what a refused or failed login means. [`PgConnector`](crate::PgConnector) and the sqlx
//! adapter both log in through it, so they answer a refusal, a certificate failure or a
//! missing user name the same way.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use serde::Serialize;
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::error::{BoxError, ConfigError, Error};
use crate::net::Endpoint;
use crate::settings::Settings;
use crate::tls::{CertCheck, TlsPolicy};
use crate::token::AccessToken;

/// The SQLSTATEs with which a server refuses a login's credentials: `invalid_password` and
/// `invalid_authorization_specification` (the latter also when no `pg_hba.conf` line or role
/// mapping matches). Such a refusal is worth one retry with a new token.
pub const REFUSED_LOGIN_SQLSTATES: [&str; 2] = ["28P01", "28000"];

/// Whether `sqlstate` is one of [`REFUSED_LOGIN_SQLSTATES`].
#[must_use]
pub fn is_refused_login(sqlstate: Option<&str>) -> bool {
    sqlstate.is_some_and(|code| REFUSED_LOGIN_SQLSTATES.contains(&code))
}

/// Counters of one engine's logins, for status output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct LoginStats {
    /// Physical connections opened.
    pub connections_opened: u64,
    /// Logins retried after the server refused a token.
    pub auth_retries: u64,
}

/// Which try of a login [`LoginTarget::retry_once`] is making.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The first try, with the token the cache holds.
    First,
    /// The one retry, after the server refused the first try's token.
    Retry,
}

/// A failed login attempt, as [`LoginTarget::retry_once`] needs to see it.
#[derive(Debug)]
pub enum AttemptError<E> {
    /// The attempt never reached the server's verdict (no token, disposed credential, ...).
    Before(Error),
    /// The driver's error, with the SQLSTATE the server sent, if any.
    Server {
        /// The driver's error.
        error: E,
        /// The SQLSTATE, which decides whether the login is retried.
        sqlstate: Option<String>,
    },
}

impl<E> From<Error> for AttemptError<E> {
    fn from(error: Error) -> Self {
        Self::Before(error)
    }
}

/// Where one engine's logins go and as whom: the endpoint, the TLS decision of the settings
/// ([`TlsPolicy`]), the user (from the settings or the token) and the login counters.
pub struct LoginTarget {
    endpoint: Endpoint,
    policy: TlsPolicy,
    user: Option<String>,
    /// The role the fallback password logs in as (`PGAUTH_FALLBACK_USER`).
    fallback_user: Option<String>,
    /// Resolve and check the dialled addresses before each login (a token without a
    /// verified certificate may go only to a loopback address).
    check_dialled: bool,
    opened: AtomicU64,
    auth_retries: AtomicU64,
    warned_guid_user: AtomicBool,
    warned_fallback_as_user: AtomicBool,
    /// The role the latest login was given the fallback password for, `None` after a
    /// token: a second refusal then names the fallback role and its settings, not `PGUSER`.
    fallback_login: Mutex<Option<FallbackLogin>>,
}

/// As whom the fallback password was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FallbackLogin {
    user: String,
    /// `false`: no fallback role was set, so the password went as `PGUSER`.
    own_role: bool,
}

impl LoginTarget {
    /// The target of `settings`, validated, with its TLS decision.
    pub fn from_settings(settings: &Settings) -> Result<Self, Error> {
        settings.validate()?;
        let policy = TlsPolicy::from_settings(settings)?;
        let endpoint = Endpoint::from_settings(settings)?;
        let check_dialled = settings.resolved_method()?.is_token()
            && policy.check() == CertCheck::None
            && endpoint.unix_socket_dir().is_none();
        Ok(Self {
            endpoint,
            policy,
            user: settings.user.clone(),
            fallback_user: settings.fallback_user.clone(),
            check_dialled,
            opened: AtomicU64::new(0),
            auth_retries: AtomicU64::new(0),
            warned_guid_user: AtomicBool::new(false),
            warned_fallback_as_user: AtomicBool::new(false),
            fallback_login: Mutex::new(None),
        })
    }

    /// The server's host, port, `hostaddr` or socket directory.
    #[must_use]
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The TLS decision.
    #[must_use]
    pub fn tls(&self) -> &TlsPolicy {
        &self.policy
    }

    /// `host:port as user`, for messages and logs (never a password).
    #[must_use]
    pub fn label(&self) -> String {
        format!(
            "{} as {}",
            self.endpoint.label(),
            self.user.as_deref().unwrap_or("<user from token>")
        )
    }

    /// The login name for `token`: for the fallback password the fallback role
    /// (`PGAUTH_FALLBACK_USER`); else `PGUSER` (warning once when it looks like an Azure
    /// object id where a display name belongs), else the name the token carries.
    pub fn user_for(&self, token: &AccessToken) -> Result<String, Error> {
        if token.is_fallback() {
            let login = self.fallback_user_for(token)?;
            let user = login.user.clone();
            *self.lock_fallback_login() = Some(login);
            return Ok(user);
        }
        *self.lock_fallback_login() = None;
        let details = token.details();
        if let Some(user) = &self.user {
            if let Some(warning) = crate::azure::guid_username_warning(user, details)
                && !self.warned_guid_user.swap(true, Ordering::Relaxed)
            {
                tracing::warn!("{warning}");
            }
            return Ok(user.clone());
        }
        // Only Azure and Google get here without PGUSER (their tokens' details name the
        // user): validation requires it for the other methods.
        details
            .username
            .clone()
            .ok_or_else(|| Error::Config(crate::azure::username_required_error(details)))
    }

    /// The fallback role: the one the cache put on the token, else the settings'. Without
    /// one the password goes as `PGUSER`, as before `PGAUTH_FALLBACK_USER` existed, which a
    /// token role refuses: say so once.
    fn fallback_user_for(&self, token: &AccessToken) -> Result<FallbackLogin, Error> {
        if let Some(user) = token
            .details()
            .get_username()
            .or(self.fallback_user.as_deref())
        {
            return Ok(FallbackLogin {
                user: user.to_string(),
                own_role: true,
            });
        }
        let Some(user) = &self.user else {
            return Err(Error::Config(ConfigError::new(
                "PGAUTH_FALLBACK_USER",
                "the fallback password needs a role to log in as and PGUSER is not set (the user comes from the token); set PGAUTH_FALLBACK_USER to a password role",
            )));
        };
        if !self.warned_fallback_as_user.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                user = %user,
                "the fallback password is sent as PGUSER, which a token role (rds_iam, Entra-mapped) does not accept; set PGAUTH_FALLBACK_USER to a password role"
            );
        }
        Ok(FallbackLogin {
            user: user.clone(),
            own_role: false,
        })
    }

    fn lock_fallback_login(&self) -> std::sync::MutexGuard<'_, Option<FallbackLogin>> {
        self.fallback_login
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The address to dial instead of resolving the host again, when the dialled address
    /// must be the one checked (a token without a verified certificate goes only to a
    /// loopback address): `None` when the driver may resolve the host itself.
    pub async fn checked_address(&self) -> Result<Option<IpAddr>, Error> {
        if !self.check_dialled {
            return Ok(None);
        }
        let addr = self.endpoint.resolve().await?[0];
        Ok(Some(self.endpoint.hostaddr().unwrap_or(addr.ip())))
    }

    /// Counts a physical connection opened.
    pub fn count_opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
        crate::metrics::connection_opened(self.label());
    }

    /// The login counters.
    #[must_use]
    pub fn stats(&self) -> LoginStats {
        LoginStats {
            connections_opened: self.opened.load(Ordering::Relaxed),
            auth_retries: self.auth_retries.load(Ordering::Relaxed),
        }
    }

    /// Runs `attempt` and, when the server refused its credentials (a SQLSTATE of
    /// [`REFUSED_LOGIN_SQLSTATES`]), once more with [`Attempt::Retry`], on which the
    /// attempt drops the refused token and takes a new one. Any other failure, or a second
    /// refusal, comes back as [`Error::Connect`] with an explanation
    /// ([`LoginTarget::login_error`]).
    pub async fn retry_once<T, E, F, Fut>(&self, mut attempt: F) -> Result<T, Error>
    where
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, AttemptError<E>>>,
        E: std::error::Error + Send + Sync + 'static,
    {
        // One span per login, whatever the adapter; the token fetch it may start nests
        // under it. The target is `host:port as user`: never a password or token.
        let span = tracing::info_span!(
            "cloud_pg_auth.login",
            target = %self.label(),
            attempt = Empty,
            outcome = Empty,
            sqlstate = Empty,
        );
        let login = async {
            let span = tracing::Span::current();
            let mut which = Attempt::First;
            loop {
                span.record("attempt", if which == Attempt::First { 1 } else { 2 });
                match attempt(which).await {
                    Ok(value) => {
                        span.record("outcome", "ok");
                        return Ok(value);
                    }
                    Err(AttemptError::Before(error)) => {
                        span.record("outcome", "error");
                        return Err(error);
                    }
                    Err(AttemptError::Server { error, sqlstate }) => {
                        if let Some(code) = &sqlstate {
                            span.record("sqlstate", code.as_str());
                        }
                        let refused = is_refused_login(sqlstate.as_deref());
                        if refused {
                            crate::metrics::login_refused(self.label());
                        }
                        if refused && which == Attempt::First {
                            which = Attempt::Retry;
                            self.auth_retries.fetch_add(1, Ordering::Relaxed);
                            crate::metrics::login_retried(self.label());
                            tracing::info!(target_db = %self.label(), "login refused; retrying once with a new token");
                            continue;
                        }
                        span.record("outcome", if refused { "refused" } else { "error" });
                        return Err(self.login_error(error, sqlstate, refused));
                    }
                }
            }
        };
        login.instrument(span).await
    }

    /// A failed login as every adapter reports it: a second refusal says what to check (for
    /// the fallback password, its role and settings), a certificate failure says what to do
    /// (from the typed rustls error in the chain), else the driver's error chain. The
    /// driver's error stays the source.
    pub fn login_error<E>(&self, error: E, sqlstate: Option<String>, refused_twice: bool) -> Error
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let text = crate::error::chain_text(&error);
        // The latest login's credentials: concurrent logins take them from one cache, so
        // they differ only at the moment tokens stop or come back.
        let fallback = self.lock_fallback_login().clone();
        let mut target = self.label();
        let message = if refused_twice {
            match &fallback {
                Some(login) => {
                    target = format!("{} as {}", self.endpoint.label(), login.user);
                    refused_fallback_message(&text, login)
                }
                None => {
                    let user = self.user.as_deref().unwrap_or("<user from token>");
                    format!(
                        "the server refused the credentials twice, also with the newest token available ({text}); check that the role {user:?} exists and is mapped to this identity (Azure: pgaadauth_create_principal; AWS: GRANT rds_iam), and see docs/troubleshooting.md"
                    )
                }
            }
        } else if let Some(hint) = crate::tls::certificate_hint(&error) {
            hint
        } else {
            text
        };
        Error::Connect {
            target,
            message,
            sqlstate,
            source: Box::new(error) as BoxError,
        }
    }
}

/// Why the fallback password was refused twice: no valid token was to be had, so the
/// fallback role and its password are what to check.
fn refused_fallback_message(text: &str, login: &FallbackLogin) -> String {
    let user = &login.user;
    if login.own_role {
        format!(
            "the server refused the fallback password twice ({text}); no valid token was available, so the login went as the fallback role {user:?} (PGAUTH_FALLBACK_USER): check that this role exists, can log in with a password and that PGAUTH_FALLBACK_PASSWORD is its password, and see docs/troubleshooting.md"
        )
    } else {
        format!(
            "the server refused the fallback password twice ({text}); no valid token was available and PGAUTH_FALLBACK_USER is unset, so PGAUTH_FALLBACK_PASSWORD was sent as PGUSER {user:?}, which a token role (rds_iam, Entra-mapped) refuses: set PGAUTH_FALLBACK_USER to a password role whose password is PGAUTH_FALLBACK_PASSWORD, and see docs/troubleshooting.md"
        )
    }
}

impl fmt::Debug for LoginTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginTarget")
            .field("target", &self.label())
            .field("tls", &self.policy.mode())
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests;
