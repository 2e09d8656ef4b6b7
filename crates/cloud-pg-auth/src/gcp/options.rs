//! The Google token source's settings, and which Application Default Credentials source
//! they pick.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::GcpProduct;
use crate::env::Env;
use crate::error::ConfigError;

/// The metadata server's host name when `GCE_METADATA_HOST` is unset.
pub const DEFAULT_METADATA_HOST: &str = "metadata.google.internal";

/// The default time allowed for one token request (the metadata server, or a token
/// endpoint exchange).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// The name of gcloud's Application Default Credentials file in its configuration folder.
const GCLOUD_ADC_FILE: &str = "application_default_credentials.json";

/// Environment variables [`GcpOptions::from_env`] reads.
pub const ENV_VARS: &[&str] = &[
    "PGAUTH_GCP_PRODUCT",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GCE_METADATA_HOST",
    "CLOUDSDK_CONFIG",
    "HOME",
    "APPDATA",
];

/// Settings of the Google token source. Build with [`GcpOptions::from_env`] or in code with
/// `GcpOptions::default()` and the builder methods, each named after the setting.
#[derive(Clone, PartialEq, Eq)]
pub struct GcpOptions {
    /// The product, which picks the login scope (`PGAUTH_GCP_PRODUCT`).
    pub(crate) product: GcpProduct,
    /// The metadata server as `host[:port]` (`GCE_METADATA_HOST`).
    pub(crate) metadata_host: Option<String>,
    /// A credentials file named explicitly (`GOOGLE_APPLICATION_CREDENTIALS`).
    pub(crate) credentials_file: Option<PathBuf>,
    /// gcloud's Application Default Credentials file, used when it exists and no file is
    /// named explicitly.
    pub(crate) gcloud_file: Option<PathBuf>,
    /// The time allowed for one token request.
    pub(crate) timeout: Duration,
}

impl Default for GcpOptions {
    fn default() -> Self {
        Self {
            product: GcpProduct::CloudSql,
            metadata_host: None,
            credentials_file: None,
            gcloud_file: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl fmt::Debug for GcpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Paths and host names only: the files' contents are never read here.
        f.debug_struct("GcpOptions")
            .field("product", &self.product)
            .field("metadata_host", &self.metadata_host)
            .field("credentials_file", &self.credentials_file)
            .field("gcloud_file", &self.gcloud_file)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The Application Default Credentials source the options pick, in ADC order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialsChoice {
    /// The file named by `GOOGLE_APPLICATION_CREDENTIALS`.
    ExplicitFile(PathBuf),
    /// gcloud's Application Default Credentials file.
    GcloudFile(PathBuf),
    /// The metadata server, as `host[:port]`.
    MetadataServer(String),
}

impl CredentialsChoice {
    /// A short name for status output: `credentials-file`, `gcloud-adc` or `metadata-server`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ExplicitFile(_) => "credentials-file",
            Self::GcloudFile(_) => "gcloud-adc",
            Self::MetadataServer(_) => "metadata-server",
        }
    }
}

impl GcpOptions {
    /// Reads the settings from `env` (see [`ENV_VARS`]). Reads no file: which credentials
    /// are used is decided by [`choose`](Self::choose) when the source is built.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the variable to fix.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let product = match env.get("PGAUTH_GCP_PRODUCT") {
            Some(value) => GcpProduct::parse(value)?,
            None => GcpProduct::default(),
        };
        let metadata_host = env
            .get("GCE_METADATA_HOST")
            .map(|host| check_metadata_host(host).map(str::to_string))
            .transpose()?;
        let credentials_file = env.get("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from);
        Ok(Self {
            product,
            metadata_host,
            credentials_file,
            gcloud_file: gcloud_file(env),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Sets the product (`PGAUTH_GCP_PRODUCT`).
    #[must_use]
    pub fn product(mut self, product: GcpProduct) -> Self {
        self.product = product;
        self
    }

    /// Sets the metadata server as `host[:port]` (`GCE_METADATA_HOST`).
    #[must_use]
    pub fn metadata_host(mut self, host: impl Into<String>) -> Self {
        self.metadata_host = Some(host.into());
        self
    }

    /// Names the credentials file (`GOOGLE_APPLICATION_CREDENTIALS`).
    #[must_use]
    pub fn credentials_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.credentials_file = Some(path.into());
        self
    }

    /// Sets where gcloud's Application Default Credentials file would be (used when it
    /// exists); by default found from `CLOUDSDK_CONFIG`, `HOME` or `APPDATA`.
    #[must_use]
    pub fn gcloud_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.gcloud_file = Some(path.into());
        self
    }

    /// Sets the time allowed for one token request ([`DEFAULT_TIMEOUT`] by default).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The product.
    #[must_use]
    pub fn get_product(&self) -> GcpProduct {
        self.product
    }

    /// The metadata server as `host[:port]`: `GCE_METADATA_HOST`, else
    /// [`DEFAULT_METADATA_HOST`].
    #[must_use]
    pub fn get_metadata_host(&self) -> &str {
        self.metadata_host
            .as_deref()
            .unwrap_or(DEFAULT_METADATA_HOST)
    }

    /// The credentials file named explicitly, if any.
    #[must_use]
    pub fn get_credentials_file(&self) -> Option<&Path> {
        self.credentials_file.as_deref()
    }

    /// Where gcloud's Application Default Credentials file is looked for, if anywhere.
    #[must_use]
    pub fn get_gcloud_file(&self) -> Option<&Path> {
        self.gcloud_file.as_deref()
    }

    /// The time allowed for one token request.
    #[must_use]
    pub fn get_timeout(&self) -> Duration {
        self.timeout
    }

    /// The login scope tokens are asked for.
    #[must_use]
    pub fn scope(&self) -> &'static str {
        self.product.login_scope()
    }

    /// Picks the credentials in ADC order: the explicit file, gcloud's file when it
    /// exists, else the metadata server. Looks only at whether gcloud's file exists; never
    /// touches the network.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for `GCE_METADATA_HOST` when the metadata server is picked and the
    /// host set in code is not a `host[:port]`.
    pub fn choose(&self) -> Result<CredentialsChoice, ConfigError> {
        if let Some(path) = &self.credentials_file {
            return Ok(CredentialsChoice::ExplicitFile(path.clone()));
        }
        if let Some(path) = self.gcloud_file.as_ref().filter(|p| p.is_file()) {
            return Ok(CredentialsChoice::GcloudFile(path.clone()));
        }
        let host = check_metadata_host(self.get_metadata_host())?;
        Ok(CredentialsChoice::MetadataServer(host.to_string()))
    }
}

/// gcloud's file: `$CLOUDSDK_CONFIG/`, else `%APPDATA%\gcloud\` on Windows, else
/// `$HOME/.config/gcloud/`.
fn gcloud_file(env: &Env) -> Option<PathBuf> {
    if let Some(dir) = env.get("CLOUDSDK_CONFIG") {
        return Some(Path::new(dir).join(GCLOUD_ADC_FILE));
    }
    if cfg!(windows)
        && let Some(dir) = env.get("APPDATA")
    {
        return Some(Path::new(dir).join("gcloud").join(GCLOUD_ADC_FILE));
    }
    env.get("HOME")
        .map(|home| Path::new(home).join(".config/gcloud").join(GCLOUD_ADC_FILE))
}

/// Checks a `GCE_METADATA_HOST` value: a host name or address with an optional port, no
/// scheme and no path (libraries put it into `http://{host}/computeMetadata/v1/...`).
fn check_metadata_host(host: &str) -> Result<&str, ConfigError> {
    let host = host.trim();
    // `[v6]`, `[v6]:port`, `name`, `name:port`; `after` is what follows the name.
    let (name_ok, after) = match host.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, after)) => (addr.parse::<std::net::Ipv6Addr>().is_ok(), after),
            None => (false, ""),
        },
        None => {
            let name = host.split(':').next().unwrap_or_default();
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
            (ok, &host[name.len()..])
        }
    };
    let port_ok = after.is_empty()
        || after
            .strip_prefix(':')
            .and_then(|p| p.parse::<u16>().ok())
            .is_some_and(|p| p != 0);
    if name_ok && port_ok {
        Ok(host)
    } else {
        Err(ConfigError::new(
            "GCE_METADATA_HOST",
            format!(
                "{host:?} is not a host[:port]; set it to a host name or address with an \
                 optional port, without http:// or a path (for example 127.0.0.1:8080)"
            ),
        ))
    }
}
