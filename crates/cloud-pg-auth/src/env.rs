//! A snapshot of environment variables, so settings can be read from the process or a map.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

/// Environment variables as the library reads them. Empty values count as unset.
///
/// `Debug` lists names only: values such as `PGPASSWORD` or `AZURE_CLIENT_SECRET` are secrets.
/// The names looked up are recorded, so diagnostics can say which variables were read.
#[derive(Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
    read: Arc<Mutex<BTreeSet<String>>>,
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
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            read: Arc::default(),
        }
    }

    /// The value of `name`, if set and not empty.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&str> {
        self.read.lock().unwrap().insert(name.to_string());
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Whether `name` is set and not empty.
    #[must_use]
    pub fn is_set(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The names that were looked up and are set, in order.
    #[must_use]
    pub fn names_read(&self) -> Vec<String> {
        self.read
            .lock()
            .unwrap()
            .iter()
            .filter(|n| self.vars.get(*n).is_some_and(|v| !v.is_empty()))
            .cloned()
            .collect()
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Env")
            .field("names", &self.vars.keys().collect::<Vec<_>>())
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
}
