//! A snapshot of environment variables, so settings can be read from the process or a map.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::Secret;

/// The variables whose values are secrets (or may hold one, as a URL's password does). [`Env`]
/// hands them out only as [`Secret`]s, through [`Env::secret`].
pub const SECRET_VARS: &[&str] = &[
    "DATABASE_URL",
    "PGPASSWORD",
    "PGAUTH_FALLBACK_PASSWORD",
    "PGAUTH_MIGRATION_PASSWORD",
    "PGAUTH_PROXY_PASSWORD",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// Environment variables as the library reads them. Empty values count as unset.
///
/// The values of [`SECRET_VARS`] are kept as [`Secret`]s and read only through
/// [`Env::secret`]; [`Env::get`] answers `None` for them. `Debug` lists names only. The names
/// looked up are recorded, so diagnostics can say which variables were read.
#[derive(Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
    secrets: BTreeMap<String, Secret>,
    read: Arc<Mutex<BTreeSet<String>>>,
}

fn is_secret_var(name: &str) -> bool {
    SECRET_VARS.contains(&name)
}

impl Env {
    /// The current process environment.
    #[must_use]
    pub fn from_process() -> Self {
        Self::from_pairs(std::env::vars())
    }

    /// An environment made of the given pairs (tests, or settings from a file).
    #[must_use]
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut env = Self::default();
        for (name, value) in pairs {
            let (name, value) = (name.into(), value.into());
            if value.is_empty() {
                continue;
            }
            if is_secret_var(&name) {
                env.secrets.insert(name, Secret::new(value));
            } else {
                env.vars.insert(name, value);
            }
        }
        env
    }

    /// The value of `name`, if set and not empty; `None` for the secrets of
    /// [`SECRET_VARS`], which only [`Env::secret`] gives.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.record(name);
        self.vars.get(name).map(String::as_str)
    }

    /// The value of `name` as a [`Secret`], if set and not empty (any variable, secret or not).
    #[must_use]
    pub fn secret(&self, name: &str) -> Option<Secret> {
        self.record(name);
        match self.secrets.get(name) {
            Some(secret) => Some(secret.clone()),
            None => self.vars.get(name).map(|v| Secret::new(v.as_str())),
        }
    }

    /// Whether `name` is set and not empty.
    #[must_use]
    pub fn is_set(&self, name: &str) -> bool {
        self.record(name);
        self.vars.contains_key(name) || self.secrets.contains_key(name)
    }

    fn record(&self, name: &str) {
        self.read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_string());
    }

    /// The names that were looked up and are set, in order.
    #[must_use]
    pub fn names_read(&self) -> Vec<String> {
        self.read
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|n| self.vars.contains_key(*n) || self.secrets.contains_key(*n))
            .cloned()
            .collect()
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("names", &self.vars.keys().collect::<Vec<_>>())
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_unset_and_debug_hides_values() {
        let env = Env::from_pairs([("PGPASSWORD", "s3cret"), ("PGHOST", ""), ("PGUSER", "app")]);
        assert_eq!(env.get("PGHOST"), None);
        assert_eq!(env.get("PGUSER"), Some("app"));
        assert!(!format!("{env:?}").contains("s3cret"));
        assert_eq!(env.names_read(), vec!["PGUSER".to_string()]);
    }

    #[test]
    fn secrets_come_only_as_secrets() {
        let pairs: Vec<(&str, String)> = SECRET_VARS
            .iter()
            .map(|name| (*name, format!("value-of-{name}")))
            .collect();
        let env = Env::from_pairs(pairs.clone());
        let text = format!("{env:?}");
        for (name, value) in &pairs {
            assert_eq!(env.get(name), None, "{name} as plain text");
            assert!(env.is_set(name), "{name}");
            assert_eq!(env.secret(name).unwrap().expose(), value);
            assert!(!text.contains(value.as_str()), "{text}");
        }
        // Any variable can be read as a secret.
        let env = Env::from_pairs([("PGUSER", "app")]);
        assert_eq!(env.secret("PGUSER").unwrap().expose(), "app");
    }
}
