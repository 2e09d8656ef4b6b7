//! The emulator's Google principals: service accounts with RSA key pairs, and a user with an
//! OAuth client and a refresh token; and the credentials files that name them.

use std::fmt;
use std::path::{Path, PathBuf};

use jsonwebtoken::DecodingKey;
use serde_json::json;

use crate::Error;
use crate::util::random_alnum;

/// The suffix of service account emails, which their database user names drop.
pub const SERVICE_ACCOUNT_SUFFIX: &str = ".gserviceaccount.com";

/// A service account with its own RSA key (RS256, as Google's keys are).
pub struct ServiceAccount {
    email: String,
    key_id: String,
    /// PKCS#8 PEM, as Google writes it into a key file.
    private_key_pem: String,
    decoding: DecodingKey,
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("email", &self.email)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// A service account `name@project.iam.gserviceaccount.com` with a new key pair.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`] when the key pair cannot be generated.
    pub fn generate(name: &str, project: &str) -> Result<Self, Error> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)?;
        let decoding = DecodingKey::from_rsa_pem(key.public_key_pem().as_bytes())?;
        Ok(Self {
            email: format!("{name}@{project}.iam{SERVICE_ACCOUNT_SUFFIX}"),
            key_id: hex::encode(rand::random::<[u8; 20]>()),
            private_key_pem: key.serialize_pem(),
            decoding,
        })
    }

    /// The service account's email.
    pub fn email(&self) -> &str {
        &self.email
    }

    /// The database user name: the email without `.gserviceaccount.com`.
    pub fn username(&self) -> String {
        username_for(&self.email)
    }

    /// The key's id (`private_key_id`, the assertion's `kid`).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    #[cfg(test)]
    pub(crate) fn private_key_pem(&self) -> &str {
        &self.private_key_pem
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The key file Google would hand out for this account, with `token_uri`.
    pub fn key_json(&self, token_uri: &str) -> serde_json::Value {
        let project = self
            .email
            .split_once('@')
            .and_then(|(_, domain)| domain.split('.').next())
            .unwrap_or_default();
        json!({
            "type": "service_account",
            "project_id": project,
            "private_key_id": self.key_id,
            "private_key": self.private_key_pem,
            "client_email": self.email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "universe_domain": "googleapis.com",
        })
    }
}

/// A Google user with gcloud's OAuth client and a refresh token, as `gcloud auth
/// application-default login` leaves them.
#[derive(Clone)]
pub struct UserAccount {
    email: String,
    client_id: String,
    client_secret: String,
    refresh_token: String,
}

impl fmt::Debug for UserAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserAccount")
            .field("email", &self.email)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl UserAccount {
    /// A user `email` with a new client secret and refresh token.
    pub fn generate(email: &str) -> Self {
        Self {
            email: email.to_string(),
            client_id: format!("{}.apps.googleusercontent.com", random_alnum(24)),
            client_secret: random_alnum(24),
            refresh_token: format!("1//{}", random_alnum(64)),
        }
    }

    /// The user's email, which is also the database user name.
    pub fn email(&self) -> &str {
        &self.email
    }

    pub(crate) fn client_id(&self) -> &str {
        &self.client_id
    }

    pub(crate) fn client_secret(&self) -> &str {
        &self.client_secret
    }

    pub(crate) fn refresh_token(&self) -> &str {
        &self.refresh_token
    }

    /// The user credentials file, with `token_uri` (which gcloud's own file leaves out).
    pub fn credentials_json(&self, token_uri: &str) -> serde_json::Value {
        json!({
            "type": "authorized_user",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "refresh_token": self.refresh_token,
            "token_uri": token_uri,
            "universe_domain": "googleapis.com",
        })
    }
}

/// The database user name of a principal's email: without `.gserviceaccount.com`, cut to
/// 63 bytes.
pub fn username_for(email: &str) -> String {
    let name = email.strip_suffix(SERVICE_ACCOUNT_SUFFIX).unwrap_or(email);
    let mut end = name.len().min(63);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_string()
}

/// Writes `value` as `dir/name` (mode 0600 on Unix, as key files should be).
pub(crate) fn write_json(
    dir: &Path,
    name: &str,
    value: &serde_json::Value,
) -> Result<PathBuf, Error> {
    let path = dir.join(name);
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Http(e.to_string()))?;
    std::fs::write(&path, text).map_err(Error::io(format!("writing {}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(Error::io(format!("chmod {}", path.display())))?;
    }
    Ok(path)
}
