//! Azure clouds: each one's token scope, Entra authority and server host suffix.

use std::fmt;
use std::str::FromStr;

use crate::error::ConfigError;

/// An Azure cloud: decides the token scope, the Entra authority and the server host suffix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AzureCloud {
    /// Azure public cloud (`PGAUTH_AZURE_CLOUD=public`, the default).
    #[default]
    Public,
    /// Azure US Government (`PGAUTH_AZURE_CLOUD=usgov`).
    UsGov,
    /// Azure operated by 21Vianet in China (`PGAUTH_AZURE_CLOUD=china`).
    China,
}

impl AzureCloud {
    /// Every cloud, for lookups.
    pub const ALL: [AzureCloud; 3] = [Self::Public, Self::UsGov, Self::China];

    /// The OAuth scope of Azure Database for PostgreSQL in this cloud.
    #[must_use]
    pub fn scope(self) -> &'static str {
        match self {
            Self::Public => "https://ossrdbms-aad.database.windows.net/.default",
            Self::UsGov => "https://ossrdbms-aad.database.usgovcloudapi.net/.default",
            Self::China => "https://ossrdbms-aad.database.chinacloudapi.cn/.default",
        }
    }

    /// The token audience (`aud`): the scope without `/.default`.
    #[must_use]
    pub fn audience(self) -> &'static str {
        match self {
            Self::Public => "https://ossrdbms-aad.database.windows.net",
            Self::UsGov => "https://ossrdbms-aad.database.usgovcloudapi.net",
            Self::China => "https://ossrdbms-aad.database.chinacloudapi.cn",
        }
    }

    /// The Entra authority, as an `https` URL (what `AZURE_AUTHORITY_HOST` would hold).
    #[must_use]
    pub fn authority_host(self) -> &'static str {
        match self {
            Self::Public => "https://login.microsoftonline.com",
            Self::UsGov => "https://login.microsoftonline.us",
            Self::China => "https://login.chinacloudapi.cn",
        }
    }

    /// The host name suffix of Azure Database for PostgreSQL servers in this cloud.
    #[must_use]
    pub fn host_suffix(self) -> &'static str {
        match self {
            Self::Public => ".postgres.database.azure.com",
            Self::UsGov => ".postgres.database.usgovcloudapi.net",
            Self::China => ".postgres.database.chinacloudapi.cn",
        }
    }

    /// `public`, `usgov` or `china`, the value of `PGAUTH_AZURE_CLOUD`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::UsGov => "usgov",
            Self::China => "china",
        }
    }

    /// The cloud whose authority host `url` is, if it is a known one.
    pub(super) fn for_authority(url: &str) -> Option<Self> {
        let host = host_of_url(url)?;
        Self::ALL
            .into_iter()
            .find(|c| host_of_url(c.authority_host()).is_some_and(|a| a.eq_ignore_ascii_case(host)))
    }
}

impl fmt::Display for AzureCloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AzureCloud {
    type Err = ConfigError;

    /// Parses `public`, `usgov` or `china` (case-insensitive; the SDKs' names such as
    /// `AzureUSGovernment` and `AzureChinaCloud` are accepted too).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v = s.trim().to_ascii_lowercase().replace(['-', '_', ' '], "");
        match v.as_str() {
            "public" | "azure" | "azurepublic" | "azurecloud" | "azurepubliccloud" => {
                Ok(Self::Public)
            }
            "usgov" | "usgovernment" | "azureusgovernment" | "azureusgov" | "azuregovernment" => {
                Ok(Self::UsGov)
            }
            "china" | "azurechina" | "azurechinacloud" => Ok(Self::China),
            _ => Err(ConfigError::new(
                "PGAUTH_AZURE_CLOUD",
                format!("unknown azure cloud {s:?}; use public, usgov or china"),
            )),
        }
    }
}

/// The Azure cloud a server host name belongs to, from its suffix; `None` for other hosts.
#[must_use]
pub fn cloud_for_host(host: &str) -> Option<AzureCloud> {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    AzureCloud::ALL.into_iter().find(|c| {
        host.strip_suffix(c.host_suffix())
            .is_some_and(|name| !name.is_empty())
    })
}

/// The host of an `http(s)://host[:port]/...` URL, without parsing anything else.
pub(super) fn host_of_url(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.split(':').next()?,
    };
    (!host.is_empty()).then_some(host)
}
