//! libpq's key=value connection string (`host=db port=5432 dbname=app sslmode=verify-full`),
//! read into the same fields as a URL. Errors never quote a value: one may be a password.

use super::Settings;
use super::parse::supported_params;
use crate::error::ConfigError;

/// Whether `raw` reads as the key=value form: a parameter name, then `=`.
pub(super) fn is_conninfo(raw: &str) -> bool {
    let raw = raw.trim_start();
    let name_end = raw
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(raw.len());
    name_end > 0 && raw[name_end..].trim_start().starts_with('=')
}

impl Settings {
    /// Applies a key=value string: each known key as its URL parameter would be, unknown keys
    /// refused by name.
    pub(super) fn apply_conninfo(&mut self, setting: &str, raw: &str) -> Result<(), ConfigError> {
        // An empty value is libpq's "unset".
        for (key, value) in split_conninfo(setting, raw)?
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
        {
            if !self.apply_param(&format!("{setting} {key}"), &key, value)? {
                return Err(ConfigError::new(
                    setting,
                    format!("unknown key {key:?}; supported: {}", supported_params()),
                ));
            }
        }
        Ok(())
    }
}

/// Splits as libpq's `conninfo_parse` does: `key = value` pairs separated by whitespace; a
/// value is a bare word or single-quoted, and a backslash keeps the next character in both.
fn split_conninfo(setting: &str, raw: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let bad = |msg: &str| ConfigError::new(setting, msg);
    let mut pairs = Vec::new();
    let mut chars = raw.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') || !is_name(&key) {
            // Not quoted: the word may be a piece of an unquoted password with a space.
            return Err(bad(
                "has a word that is not key=value; write libpq's key=value pairs, quoting values with spaces in single quotes",
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => {
                        return Err(bad(&format!(
                            "has an unterminated quoted value for {key:?}; close it with '"
                        )));
                    }
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        pairs.push((key, value));
    }
}

fn is_name(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 40
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{Env, SslMode};

    fn read(conninfo: &str) -> Result<Settings, ConfigError> {
        Settings::from_env_vars(&Env::from_pairs([("DATABASE_URL", conninfo)]))
    }

    #[test]
    fn the_key_value_form_fills_the_url_fields() {
        type Check = fn(&Settings) -> bool;
        let cases: &[(&str, Check)] = &[
            ("host=db.local port=6543 user=app password=pw", |s| {
                s.get_host() == Some("db.local")
                    && s.get_port() == 6543
                    && s.get_user() == Some("app")
                    && s.get_password().map(|p| p.expose()) == Some("pw")
            }),
            ("host = db  dbname = 'my db' user=app password=x", |s| {
                s.get_dbname() == Some("my db")
            }),
            (r"host=db user=app password='it\'s \\ secret'", |s| {
                s.get_password().map(|p| p.expose()) == Some(r"it's \ secret")
            }),
            (r"host=db user=app password=a\ b", |s| {
                s.get_password().map(|p| p.expose()) == Some("a b")
            }),
            ("host=db user=app password=x dbname=''", |s| {
                s.get_dbname().is_none()
            }),
            (
                "host=db user=app password=x sslmode=verify-full connect_timeout=10",
                |s| {
                    s.get_ssl_mode() == Some(SslMode::VerifyFull)
                        && s.get_connect_timeout() == Some(Duration::from_secs(10))
                },
            ),
            (
                r"host=db user=app password=x options='-c search_path=app' keepalives_idle=30",
                |s| {
                    s.get_options() == Some("-c search_path=app")
                        && s.get_keepalives_idle() == Some(Duration::from_secs(30))
                },
            ),
        ];
        for (conninfo, check) in cases {
            let settings = read(conninfo).unwrap_or_else(|e| panic!("{conninfo:?}: {e}"));
            assert!(check(&settings), "{conninfo:?}: {settings:?}");
        }
    }

    #[test]
    fn bad_key_value_strings_are_refused_without_showing_a_password() {
        let cases: &[(&str, &str)] = &[
            (
                "host=db password=hunter2 sslcert=/x",
                "unknown key \"sslcert\"",
            ),
            (
                "host=db password='hunter2",
                "unterminated quoted value for \"password\"",
            ),
            ("host=db password=hunter 2", "a word that is not key=value"),
            (
                "host=db password=x =hunter2",
                "a word that is not key=value",
            ),
            ("host=db password=x port=abc", "is not a port"),
        ];
        for (conninfo, want) in cases {
            let error = read(conninfo).unwrap_err();
            let message = error.to_string();
            assert!(message.contains(want), "{conninfo:?}: {message}");
            assert!(!message.contains("hunter"), "{conninfo:?}: {message}");
            assert!(error.setting().starts_with("DATABASE_URL"), "{conninfo:?}");
        }
    }
}
