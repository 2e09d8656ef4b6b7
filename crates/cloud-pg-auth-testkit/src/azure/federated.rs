//! The federated (Kubernetes service account) token of workload identity.

use serde::{Deserialize, Serialize};

/// Claims of the federated (Kubernetes service account) token the emulator writes to
/// `AZURE_FEDERATED_TOKEN_FILE`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FederatedClaims {
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    pub iss: String,
    pub sub: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

pub(crate) const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";
