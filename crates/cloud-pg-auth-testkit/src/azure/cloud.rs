//! The Azure clouds the emulator imitates: audiences, authorities and host suffixes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The Azure cloud whose audiences and authorities the emulator imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    /// Azure public cloud.
    #[default]
    Public,
    /// Azure US Government.
    UsGov,
    /// Azure operated by 21Vianet (China).
    China,
}

impl Cloud {
    /// The `aud` of Azure Database for PostgreSQL tokens in this cloud.
    pub fn audience(self) -> &'static str {
        match self {
            Cloud::Public => "https://ossrdbms-aad.database.windows.net",
            Cloud::UsGov => "https://ossrdbms-aad.database.usgovcloudapi.net",
            Cloud::China => "https://ossrdbms-aad.database.chinacloudapi.cn",
        }
    }

    /// The scope clients request: the audience plus `/.default`.
    pub fn scope(self) -> String {
        format!("{}/.default", self.audience())
    }

    /// The real authority host of this cloud (informational; the emulator serves its own).
    pub fn authority_host(self) -> &'static str {
        match self {
            Cloud::Public => "https://login.microsoftonline.com/",
            Cloud::UsGov => "https://login.microsoftonline.us/",
            Cloud::China => "https://login.chinacloudapi.cn/",
        }
    }

    /// The host of the v1 token issuer (`iss = https://<host>/<tenant>/`).
    pub fn sts_host(self) -> &'static str {
        match self {
            Cloud::Public => "sts.windows.net",
            Cloud::UsGov => "sts.usgovcloudapi.net",
            Cloud::China => "sts.chinacloudapi.cn",
        }
    }

    /// The name used on the command line (`public`, `usgov`, `china`).
    pub fn name(self) -> &'static str {
        match self {
            Cloud::Public => "public",
            Cloud::UsGov => "usgov",
            Cloud::China => "china",
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Cloud {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "public" | "azurepubliccloud" | "azurecloud" => Ok(Cloud::Public),
            "usgov" | "usgovernment" | "azureusgovernment" | "azureusgovernmentcloud" => {
                Ok(Cloud::UsGov)
            }
            "china" | "azurechina" | "azurechinacloud" => Ok(Cloud::China),
            other => Err(Error::InvalidArgument(format!(
                "unknown cloud {other:?} (expected public, usgov or china)"
            ))),
        }
    }
}
