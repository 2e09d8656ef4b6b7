//! The workload identity assertion: the federated token file, read with a size limit.
//!
//! azure_identity's `WorkloadIdentityCredential` reads the file whole, however large; this
//! assertion gives the same file to its `ClientAssertionCredential` instead, read anew at each
//! fetch (Kubernetes rotates the projected token in place).

use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::http::ClientMethodOptions;
use azure_identity::ClientAssertion;

use super::limits::MAX_FEDERATED_TOKEN_FILE;
use crate::error::ConfigError;
use crate::input::read_file;

/// The contents of `AZURE_FEDERATED_TOKEN_FILE`, as a client assertion.
#[derive(Clone)]
pub(crate) struct FederatedTokenFile {
    path: PathBuf,
}

impl FederatedTokenFile {
    /// Checks that the file can be read now, so a wrong path fails at start-up.
    pub(crate) fn new(path: &Path) -> Result<Self, ConfigError> {
        read(path).map_err(|e| {
            ConfigError::new(
                "AZURE_FEDERATED_TOKEN_FILE",
                format!(
                    "cannot set up workload identity with the token file {}: {e}",
                    path.display()
                ),
            )
        })?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }
}

impl fmt::Debug for FederatedTokenFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FederatedTokenFile")
            .field("path", &self.path)
            .finish()
    }
}

#[async_trait]
impl ClientAssertion for FederatedTokenFile {
    async fn secret(&self, _: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || read(&path))
            .await
            .map_err(|e| {
                azure_core::Error::with_error(
                    ErrorKind::Io,
                    e,
                    "reading the federated token file was cancelled",
                )
            })?
            .map_err(|e| {
                let message = format!(
                    "cannot read the federated token file {}: {e}",
                    self.path.display()
                );
                azure_core::Error::with_error(ErrorKind::Io, e, message)
            })
    }
}

/// The assertion in the file, without surrounding whitespace.
fn read(path: &Path) -> std::io::Result<String> {
    let bytes = read_file(path, MAX_FEDERATED_TOKEN_FILE, "the federated token file")?;
    let text = String::from_utf8(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the federated token file is not utf-8 text",
        )
    })?;
    Ok(text.trim().to_string())
}
