//! Connection options passed through to the server and the socket: libpq's `options`,
//! `target_session_attrs` and the TCP keepalives, with their builder methods and getters.

use std::str::FromStr;
use std::time::Duration;

use super::Settings;
use crate::error::ConfigError;

/// libpq's `target_session_attrs`: what the server must allow for the session to be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TargetSessionAttrs {
    /// Any server (libpq's default).
    #[default]
    Any,
    /// A server that accepts writes: after an HA failover flips DNS, a connection that lands
    /// on the old primary (now a standby) is refused instead of kept.
    ReadWrite,
    /// A server that refuses writes (a standby).
    ReadOnly,
}

impl TargetSessionAttrs {
    /// The libpq name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::ReadWrite => "read-write",
            Self::ReadOnly => "read-only",
        }
    }

    /// Why a session is refused after the login, or `None` when it is kept: libpq's check
    /// ([`SESSION_CHECK_QUERY`](Self::SESSION_CHECK_QUERY)) judged the same way for every
    /// driver. `transaction_read_only` is the server's answer, `failure` its error text when
    /// the query failed.
    #[must_use]
    pub fn refusal(
        self,
        transaction_read_only: Option<&str>,
        failure: Option<&str>,
    ) -> Option<String> {
        let query = Self::SESSION_CHECK_QUERY;
        let name = self.as_str();
        if self == Self::Any {
            return None;
        }
        if let Some(failure) = failure {
            return Some(format!(
                "target_session_attrs={name} (PGTARGETSESSIONATTRS) could not be checked: the server answered {query:?} with an error ({failure}); set target_session_attrs=any to skip the check"
            ));
        }
        match (self, transaction_read_only) {
            (Self::ReadWrite, Some("off")) | (Self::ReadOnly, Some("on")) => None,
            (Self::ReadWrite, Some("on")) => Some(format!(
                "target_session_attrs={name} (PGTARGETSESSIONATTRS) but the server is read-only (transaction_read_only is on: a standby, as after an HA failover, or default_transaction_read_only is set); connect to the primary, or set target_session_attrs=any"
            )),
            (Self::ReadOnly, Some("off")) => Some(format!(
                "target_session_attrs={name} (PGTARGETSESSIONATTRS) but the server accepts writes (transaction_read_only is off); connect to a standby, or set target_session_attrs=any"
            )),
            (_, other) => Some(format!(
                "target_session_attrs={name} (PGTARGETSESSIONATTRS) could not be checked: the server answered {query:?} with {other:?}, not on or off; set target_session_attrs=any to skip the check"
            )),
        }
    }

    /// The query libpq sends after the login for `read-write` and `read-only`.
    pub const SESSION_CHECK_QUERY: &'static str = "SHOW transaction_read_only";
}

impl FromStr for TargetSessionAttrs {
    type Err = ConfigError;

    fn from_str(value: &str) -> Result<Self, ConfigError> {
        match value.trim() {
            "any" => Ok(Self::Any),
            "read-write" => Ok(Self::ReadWrite),
            "read-only" => Ok(Self::ReadOnly),
            _ => Err(ConfigError::new(
                "PGTARGETSESSIONATTRS",
                format!(
                    "unsupported target_session_attrs {value:?}; use any, read-write or read-only"
                ),
            )),
        }
    }
}

/// The URL and key=value parameters this file reads, for the "supported:" list of errors.
pub(super) const SESSION_PARAMS: &[&str] = &[
    "options",
    "target_session_attrs",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
];

impl Settings {
    /// Applies one of [`SESSION_PARAMS`] read from a URL or a key=value string; `Ok(false)`
    /// for any other key. `name` is the setting errors name.
    pub(super) fn apply_session_param(
        &mut self,
        key: &str,
        value: &str,
        name: &str,
    ) -> Result<bool, ConfigError> {
        match key {
            "options" => self.options = non_empty(value),
            "target_session_attrs" => {
                self.target_session_attrs = value
                    .parse()
                    .map_err(|e: ConfigError| ConfigError::new(name, e.message()))?;
            }
            "keepalives" => self.keepalives = parse_keepalives(name, value)?,
            "keepalives_idle" => self.keepalives_idle = Some(parse_seconds(name, value)?),
            "keepalives_interval" => self.keepalives_interval = Some(parse_seconds(name, value)?),
            "keepalives_count" => {
                self.keepalives_count = Some(value.trim().parse().map_err(|_| {
                    ConfigError::new(name, format!("{value:?} is not a whole number of probes"))
                })?);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Sets the server options sent at login (libpq's `options`, `PGOPTIONS`), such as
    /// `-c search_path=app -c statement_timeout=5s`. Each entry is `-c name=value` or
    /// `--name=value`; a space inside a value is written `\ `, as in libpq.
    #[must_use]
    pub fn options(mut self, options: impl Into<String>) -> Self {
        self.options = non_empty(&options.into());
        self
    }

    /// Sets what the server must allow (libpq's `target_session_attrs`,
    /// `PGTARGETSESSIONATTRS`). Checked after the login in every adapter, as libpq does.
    #[must_use]
    pub fn target_session_attrs(mut self, attrs: TargetSessionAttrs) -> Self {
        self.target_session_attrs = attrs;
        self
    }

    /// Turns TCP keepalives on the server connection on or off (libpq's `keepalives`, on by
    /// default).
    #[must_use]
    pub fn keepalives(mut self, on: bool) -> Self {
        self.keepalives = on;
        self
    }

    /// Sets the idle time before the first keepalive probe (libpq's `keepalives_idle`).
    #[must_use]
    pub fn keepalives_idle(mut self, idle: Duration) -> Self {
        self.keepalives_idle = Some(idle);
        self
    }

    /// Sets the time between keepalive probes (libpq's `keepalives_interval`).
    #[must_use]
    pub fn keepalives_interval(mut self, interval: Duration) -> Self {
        self.keepalives_interval = Some(interval);
        self
    }

    /// Sets how many unanswered probes drop the connection (libpq's `keepalives_count`).
    #[must_use]
    pub fn keepalives_count(mut self, count: u32) -> Self {
        self.keepalives_count = Some(count);
        self
    }

    /// The server options sent at login (`PGOPTIONS`), as set.
    #[must_use]
    pub fn get_options(&self) -> Option<&str> {
        self.options.as_deref()
    }

    /// The server options as `(name, value)` pairs, unescaped: for drivers that take them
    /// one by one (sqlx). Fails, naming `PGOPTIONS`, on an entry other than `-c name=value`
    /// or `--name=value`.
    pub fn get_option_pairs(&self) -> Result<Vec<(String, String)>, ConfigError> {
        self.options
            .as_deref()
            .map_or(Ok(Vec::new()), parse_options)
    }

    /// What the server must allow (`PGTARGETSESSIONATTRS`), `any` by default.
    #[must_use]
    pub fn get_target_session_attrs(&self) -> TargetSessionAttrs {
        self.target_session_attrs
    }

    /// Whether TCP keepalives are on (libpq's `keepalives`), on by default.
    #[must_use]
    pub fn get_keepalives(&self) -> bool {
        self.keepalives
    }

    /// The idle time before the first keepalive probe (`keepalives_idle`); `None` when unset
    /// or zero, which libpq documents as the system's default (the system refuses a zero).
    #[must_use]
    pub fn get_keepalives_idle(&self) -> Option<Duration> {
        self.keepalives_idle.filter(|d| !d.is_zero())
    }

    /// The time between keepalive probes (`keepalives_interval`); `None` when unset or zero
    /// (the system's default).
    #[must_use]
    pub fn get_keepalives_interval(&self) -> Option<Duration> {
        self.keepalives_interval.filter(|d| !d.is_zero())
    }

    /// How many unanswered probes drop the connection (`keepalives_count`); `None` when unset
    /// or zero (the system's default).
    #[must_use]
    pub fn get_keepalives_count(&self) -> Option<u32> {
        self.keepalives_count.filter(|&c| c > 0)
    }

    /// The checks [`Settings::validate`] makes of these options.
    pub(super) fn validate_session(&self) -> Result<(), ConfigError> {
        if self.options.as_deref().is_some_and(|o| o.contains('\0')) {
            return Err(ConfigError::new(
                "PGOPTIONS",
                "contains a NUL byte, which cannot reach the server; remove it",
            ));
        }
        self.get_option_pairs().map(drop)
    }
}

fn non_empty(value: &str) -> Option<String> {
    (!value.trim().is_empty()).then(|| value.to_string())
}

/// libpq's `keepalives`: an integer, zero turns them off.
fn parse_keepalives(setting: &str, value: &str) -> Result<bool, ConfigError> {
    value
        .trim()
        .parse::<i64>()
        .map(|n| n != 0)
        .map_err(|_| ConfigError::new(setting, format!("{value:?} is not a number; use 1 or 0")))
}

fn parse_seconds(setting: &str, value: &str) -> Result<Duration, ConfigError> {
    value
        .trim()
        .parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| {
            ConfigError::new(
                setting,
                format!("{value:?} is not a whole number of seconds"),
            )
        })
}

/// Splits libpq's `options` into words (whitespace separates, a backslash keeps the next
/// character) and reads each `-c name=value`, `-cname=value` or `--name=value`.
fn parse_options(raw: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                word.push(chars.next().unwrap_or('\\'));
                in_word = true;
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    let mut pairs = Vec::new();
    let mut words = words.into_iter();
    while let Some(word) = words.next() {
        let setting = if word == "-c" {
            words
                .next()
                .ok_or_else(|| ConfigError::new("PGOPTIONS", "ends with -c; write -c name=value"))?
        } else if let Some(rest) = word.strip_prefix("--").or_else(|| word.strip_prefix("-c")) {
            rest.to_string()
        } else {
            return Err(ConfigError::new(
                "PGOPTIONS",
                "has an entry other than -c name=value or --name=value; write each server setting as -c name=value",
            ));
        };
        match setting.split_once('=') {
            Some((name, value)) if !name.is_empty() => {
                pairs.push((name.to_string(), value.to_string()));
            }
            _ => {
                return Err(ConfigError::new(
                    "PGOPTIONS",
                    "has a -c entry without name=value; write -c name=value",
                ));
            }
        }
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_pairs_as_libpq_reads_them() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("-c search_path=app", &[("search_path", "app")]),
            (
                "-c search_path=app  -cstatement_timeout=5s --work_mem=4MB",
                &[
                    ("search_path", "app"),
                    ("statement_timeout", "5s"),
                    ("work_mem", "4MB"),
                ],
            ),
            (r"-c search_path=a\ b", &[("search_path", "a b")]),
            (r"-c x=back\\slash", &[("x", r"back\slash")]),
            ("  ", &[]),
        ];
        for (raw, want) in cases {
            let got = Settings::default()
                .options(*raw)
                .get_option_pairs()
                .unwrap();
            let want: Vec<_> = want
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(got, want, "{raw:?}");
        }
        for bad in ["-c", "-B 8", "-c =x", "-c novalue", "search_path=x"] {
            let error = Settings::default()
                .options(bad)
                .get_option_pairs()
                .unwrap_err();
            assert_eq!(error.setting(), "PGOPTIONS", "{bad:?}");
        }
    }

    #[test]
    fn session_params_are_read_and_checked() {
        let mut s = Settings::default();
        for (key, value) in [
            ("target_session_attrs", "read-write"),
            ("keepalives", "0"),
            ("keepalives_idle", "30"),
            ("keepalives_interval", "5"),
            ("keepalives_count", "3"),
        ] {
            assert!(s.apply_session_param(key, value, "url").unwrap(), "{key}");
        }
        assert_eq!(s.get_target_session_attrs(), TargetSessionAttrs::ReadWrite);
        assert!(!s.get_keepalives());
        assert_eq!(s.get_keepalives_idle(), Some(Duration::from_secs(30)));
        assert_eq!(s.get_keepalives_interval(), Some(Duration::from_secs(5)));
        assert_eq!(s.get_keepalives_count(), Some(3));
        // libpq: zero means the system's default, for every adapter.
        for key in ["keepalives_idle", "keepalives_interval", "keepalives_count"] {
            assert!(s.apply_session_param(key, "0", "url").unwrap(), "{key}");
        }
        assert_eq!(s.get_keepalives_idle(), None);
        assert_eq!(s.get_keepalives_interval(), None);
        assert_eq!(s.get_keepalives_count(), None);
        assert!(!s.apply_session_param("sslcert", "x", "url").unwrap());
        for (key, value) in [
            ("target_session_attrs", "primary"),
            ("keepalives", "yes"),
            ("keepalives_idle", "-1"),
            ("keepalives_count", "many"),
        ] {
            let error = s.apply_session_param(key, value, "url x").unwrap_err();
            assert_eq!(error.setting(), "url x", "{key}");
        }
    }

    #[cfg(feature = "tokio-postgres")]
    #[tokio::test]
    async fn the_tokio_postgres_config_carries_the_options() {
        use tokio_postgres::config::TargetSessionAttrs as Pg;

        use crate::engine::CredentialConfig;
        use crate::testing::offline_password_settings;

        let settings = offline_password_settings("pw")
            .options("-c search_path=app")
            .target_session_attrs(TargetSessionAttrs::ReadWrite)
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_count(3);
        let connector = CredentialConfig::new(settings)
            .build_connector()
            .await
            .unwrap();
        let config = connector.config();
        assert_eq!(config.get_options(), Some("-c search_path=app"));
        assert_eq!(config.get_target_session_attrs(), Pg::ReadWrite);
        assert!(config.get_keepalives());
        assert_eq!(config.get_keepalives_idle(), Duration::from_secs(30));
        assert_eq!(
            config.get_keepalives_interval(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(config.get_keepalives_retries(), Some(3));

        let off = offline_password_settings("pw").keepalives(false);
        let connector = CredentialConfig::new(off).build_connector().await.unwrap();
        assert!(!connector.config().get_keepalives());
        assert_eq!(connector.config().get_target_session_attrs(), Pg::Any);
    }

    #[test]
    fn session_refusals_follow_libpq() {
        use TargetSessionAttrs::{ReadOnly, ReadWrite};
        for (wanted, value, failure, refused_with) in [
            (ReadWrite, Some("off"), None, None),
            (ReadOnly, Some("on"), None, None),
            (ReadWrite, Some("on"), None, Some("the server is read-only")),
            (
                ReadOnly,
                Some("off"),
                None,
                Some("the server accepts writes"),
            ),
            (ReadWrite, None, None, Some("not on or off")),
            (ReadOnly, Some("maybe"), None, Some("not on or off")),
            (
                ReadWrite,
                Some("off"),
                Some("boom"),
                Some("with an error (boom)"),
            ),
        ] {
            let verdict = wanted.refusal(value, failure);
            match refused_with {
                None => assert_eq!(verdict, None, "{wanted:?} {value:?}"),
                Some(part) => {
                    let message = verdict.expect("refused");
                    assert!(message.contains(part), "{message}");
                    assert!(
                        message.starts_with(&format!(
                            "target_session_attrs={} (PGTARGETSESSIONATTRS)",
                            wanted.as_str()
                        )),
                        "{message}"
                    );
                }
            }
        }
        // `any` is never checked.
        assert_eq!(TargetSessionAttrs::Any.refusal(Some("on"), None), None);
    }
}
