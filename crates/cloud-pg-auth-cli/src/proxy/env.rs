//! `pgauth proxy --print-env`: the libpq settings a client needs to use the proxy, and the
//! role and databases it serves, found as [`Proxy::bind`](super::Proxy::bind) finds them.

use std::net::SocketAddr;

use cloud_pg_auth::Settings;
use cloud_pg_auth::engine::CredentialConfig;

use super::{Listen, ProxyError, served_databases, served_user};

/// The libpq variables a client needs to use a proxy listening on `listen` for `user` and
/// `database`, in print order.
#[must_use]
pub(crate) fn client_env(
    listen: &Listen,
    user: &str,
    database: &str,
    local_tls: bool,
) -> Vec<(&'static str, String)> {
    let (host, port) = match listen {
        Listen::Tcp(addr) => {
            let ip = if addr.ip().is_unspecified() {
                // 0.0.0.0 / :: accept on every address; a client on this machine uses loopback.
                match addr {
                    SocketAddr::V4(_) => "127.0.0.1".to_string(),
                    SocketAddr::V6(_) => "::1".to_string(),
                }
            } else {
                addr.ip().to_string()
            };
            (ip, addr.port())
        }
        Listen::Unix { dir, port } => (dir.display().to_string(), *port),
    };
    let ssl_mode = if local_tls && matches!(listen, Listen::Tcp(_)) {
        "require"
    } else {
        "disable"
    };
    vec![
        ("PGHOST", host),
        ("PGPORT", port.to_string()),
        ("PGUSER", user.to_string()),
        ("PGDATABASE", database.to_string()),
        ("PGSSLMODE", ssl_mode.to_string()),
    ]
}

/// The served role and databases for `settings`, as [`Proxy::bind`](super::Proxy::bind) finds
/// them, without binding (for `--print-env`).
pub(crate) async fn served(
    settings: &Settings,
    extra_databases: &[String],
) -> Result<(String, Vec<String>), ProxyError> {
    settings.validate().map_err(cloud_pg_auth::Error::from)?;
    let user = match settings.get_user() {
        Some(user) => user.to_string(),
        None => {
            // Azure without PGUSER: the role is the token's identity.
            let mut credential = CredentialConfig::new(settings.clone());
            credential.disable_background_refresh();
            let auth = credential.build_auth().await?;
            let user = served_user(settings, &auth).await;
            auth.dispose().await;
            user?
        }
    };
    let databases = served_databases(settings, &user, extra_databases);
    Ok((user, databases))
}
