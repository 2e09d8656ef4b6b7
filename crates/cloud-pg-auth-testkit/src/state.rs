//! ControlState in-process state: counters and fault settings. The control endpoint and the
//! [`Emulator`](crate::Emulator) methods act on the same state.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

use crate::Error;

/// Statuses a fault may inject.
pub(crate) const FAULT_STATUSES: &[u16] = &[400, 404, 410, 429, 500, 503];

/// A change of fault settings on the identity endpoints. Every field is optional: `None`
/// leaves the current setting alone. `POST /faults` takes the same object as JSON, where
/// `null` also clears a setting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faults {
    /// Latency added to every identity request, in milliseconds (0 = none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Answer token requests with this status (400, 404, 410, 429, 500 or 503).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// For how many token requests `status` applies (unlimited when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// `Retry-After` seconds sent with injected 429 and 503 answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// `true`: close the identity listeners (connections are refused, open ones reset);
    /// `false`: listen again on the same ports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<bool>,
    /// Lifetime of tokens issued from now on, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_lifetime: Option<u64>,
}

/// The fault settings in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultState {
    /// Added latency, milliseconds.
    pub latency_ms: u64,
    /// Injected status, if any.
    pub status: Option<u16>,
    /// Injected answers left (`None`: unlimited while `status` is set).
    pub remaining: Option<u64>,
    /// `Retry-After` seconds for 429/503.
    pub retry_after: Option<u64>,
    /// Identity listeners closed.
    pub down: bool,
    /// Lifetime of newly issued tokens, seconds.
    pub token_lifetime: u64,
}

/// Requests per identity endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointCounts {
    /// App Service / Container Apps protocol (`IDENTITY_ENDPOINT`).
    pub app_service: u64,
    /// IMDS protocol.
    pub imds: u64,
    /// Entra v2 token endpoint.
    pub entra: u64,
    /// Google's metadata server and OAuth 2 token endpoint (token requests only, not email
    /// look-ups).
    #[serde(default)]
    pub gcp: u64,
    /// Sum of the above.
    pub total: u64,
}

/// Counters, as `GET /stats` returns them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Token requests received per endpoint, counted on arrival (before added latency),
    /// including refused and faulted ones.
    pub token_requests: EndpointCounts,
    /// Tokens issued per endpoint (counted when answered).
    pub tokens_issued: EndpointCounts,
    /// Answers replaced by an injected fault status.
    pub faults_injected: u64,
    /// PostgreSQL logins that reached ReadyForQuery.
    pub logins_accepted: u64,
    /// Accepted logins by method (`entra`, `aws`, `password`).
    pub logins_accepted_by_method: BTreeMap<String, u64>,
    /// Refused logins by reason (e.g. `entra_expired`, `aws_signature`, `no_tls`).
    pub logins_rejected: BTreeMap<String, u64>,
    /// CancelRequest packets forwarded to PostgreSQL.
    pub cancel_requests: u64,
    /// Fault settings in force.
    pub faults: FaultState,
}

/// Which identity endpoint a request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    AppService,
    Imds,
    Entra,
    Gcp,
}

#[derive(Debug)]
struct Inner {
    stats: Stats,
    default_lifetime: u64,
}

/// The state shared by every task of one emulator.
#[derive(Debug)]
pub(crate) struct ControlState {
    inner: Mutex<Inner>,
    /// Desired state of the identity listeners (true = down).
    pub down_tx: watch::Sender<bool>,
}

impl ControlState {
    pub(crate) fn new(default_lifetime: Duration) -> ControlState {
        let secs = default_lifetime.as_secs().max(1);
        let stats = Stats {
            faults: FaultState {
                token_lifetime: secs,
                ..FaultState::default()
            },
            ..Stats::default()
        };
        ControlState {
            inner: Mutex::new(Inner {
                stats,
                default_lifetime: secs,
            }),
            down_tx: watch::channel(false).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    pub(crate) fn faults(&self) -> FaultState {
        self.lock().stats.faults.clone()
    }

    pub(crate) fn token_lifetime(&self) -> Duration {
        Duration::from_secs(self.lock().stats.faults.token_lifetime)
    }

    /// Clears counters and faults (and brings the listeners back up).
    pub(crate) fn reset(&self) {
        let mut g = self.lock();
        let lifetime = g.default_lifetime;
        g.stats = Stats {
            faults: FaultState {
                token_lifetime: lifetime,
                ..FaultState::default()
            },
            ..Stats::default()
        };
        drop(g);
        self.down_tx.send_replace(false);
    }

    /// Applies a typed change.
    pub(crate) fn apply(&self, f: &Faults) -> Result<FaultState, Error> {
        let mut obj = serde_json::Map::new();
        let v = serde_json::to_value(f).map_err(|e| Error::InvalidFaults(e.to_string()))?;
        if let Value::Object(m) = v {
            obj = m;
        }
        self.apply_json(&Value::Object(obj))
    }

    /// Applies a change given as JSON (`null` clears a setting).
    pub(crate) fn apply_json(&self, v: &Value) -> Result<FaultState, Error> {
        let obj = v
            .as_object()
            .ok_or_else(|| Error::InvalidFaults("expected a json object".into()))?;
        let uint = |key: &str, v: &Value| -> Result<Option<u64>, Error> {
            match v {
                Value::Null => Ok(None),
                v => v.as_u64().map(Some).ok_or_else(|| {
                    Error::InvalidFaults(format!("{key} must be a non-negative integer or null"))
                }),
            }
        };
        for key in obj.keys() {
            if ![
                "latency_ms",
                "status",
                "count",
                "retry_after",
                "down",
                "token_lifetime",
            ]
            .contains(&key.as_str())
            {
                return Err(Error::InvalidFaults(format!("unknown key {key:?}")));
            }
        }
        // Validate everything before changing anything.
        let latency = obj
            .get("latency_ms")
            .map(|v| uint("latency_ms", v))
            .transpose()?;
        let status = obj.get("status").map(|v| uint("status", v)).transpose()?;
        if let Some(Some(s)) = status
            && !(s <= u16::MAX as u64 && FAULT_STATUSES.contains(&(s as u16)))
        {
            return Err(Error::InvalidFaults(format!(
                "status must be one of {FAULT_STATUSES:?}, got {s}"
            )));
        }
        let count = obj.get("count").map(|v| uint("count", v)).transpose()?;
        let retry_after = obj
            .get("retry_after")
            .map(|v| uint("retry_after", v))
            .transpose()?;
        let lifetime = obj
            .get("token_lifetime")
            .map(|v| uint("token_lifetime", v))
            .transpose()?;
        if let Some(Some(0)) = lifetime {
            return Err(Error::InvalidFaults(
                "token_lifetime must be positive".into(),
            ));
        }
        let down = match obj.get("down") {
            None => None,
            Some(Value::Null) => Some(false),
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(Error::InvalidFaults("down must be a boolean".into())),
        };

        let mut g = self.lock();
        let default_lifetime = g.default_lifetime;
        let f = &mut g.stats.faults;
        if let Some(l) = latency {
            f.latency_ms = l.unwrap_or(0);
        }
        if let Some(s) = status {
            f.status = s.map(|s| s as u16);
            f.remaining = None;
        }
        if let Some(c) = count {
            f.remaining = c;
        }
        if f.remaining == Some(0) || f.status.is_none() {
            f.status = None;
            f.remaining = None;
        }
        if let Some(r) = retry_after {
            f.retry_after = r;
        }
        if let Some(l) = lifetime {
            f.token_lifetime = l.unwrap_or(default_lifetime);
        }
        if let Some(d) = down {
            f.down = d;
        }
        let state = f.clone();
        drop(g);
        if let Some(d) = down {
            self.down_tx.send_replace(d);
        }
        Ok(state)
    }

    pub(crate) fn count_request(&self, e: Endpoint) {
        let mut g = self.lock();
        let c = &mut g.stats.token_requests;
        bump(c, e);
    }

    pub(crate) fn count_issued(&self, e: Endpoint) {
        let mut g = self.lock();
        bump(&mut g.stats.tokens_issued, e);
    }

    /// Consumes one injected fault, if any: returns (status, retry_after).
    pub(crate) fn take_fault(&self) -> Option<(u16, Option<u64>)> {
        let mut g = self.lock();
        let f = &mut g.stats.faults;
        let status = f.status?;
        let retry = f.retry_after;
        match f.remaining {
            Some(n) if n <= 1 => {
                f.status = None;
                f.remaining = None;
            }
            Some(n) => f.remaining = Some(n - 1),
            None => {}
        }
        g.stats.faults_injected += 1;
        Some((status, retry))
    }

    pub(crate) fn latency(&self) -> Duration {
        Duration::from_millis(self.lock().stats.faults.latency_ms)
    }

    pub(crate) fn login_accepted(&self, method: &str) {
        let mut g = self.lock();
        g.stats.logins_accepted += 1;
        *g.stats
            .logins_accepted_by_method
            .entry(method.to_string())
            .or_default() += 1;
    }

    pub(crate) fn login_rejected(&self, reason: &str) {
        let mut g = self.lock();
        *g.stats
            .logins_rejected
            .entry(reason.to_string())
            .or_default() += 1;
    }

    pub(crate) fn cancel_forwarded(&self) {
        self.lock().stats.cancel_requests += 1;
    }
}

fn bump(c: &mut EndpointCounts, e: Endpoint) {
    match e {
        Endpoint::AppService => c.app_service += 1,
        Endpoint::Imds => c.imds += 1,
        Endpoint::Entra => c.entra += 1,
        Endpoint::Gcp => c.gcp += 1,
    }
    c.total += 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(input: Value, expected: Result<FaultState, &str>) {
        let shared = ControlState::new(Duration::from_secs(3600));
        let got = shared.apply_json(&input).map_err(|e| e.to_string());
        match expected {
            Ok(state) => assert_eq!(got, Ok(state), "input {input}"),
            Err(text) => {
                let err = got.expect_err("expected an error");
                assert!(err.contains(text), "input {input}: {err}");
            }
        }
    }

    #[test]
    fn fault_json_is_validated_and_merged() {
        let base = FaultState {
            token_lifetime: 3600,
            ..FaultState::default()
        };
        check(json!({}), Ok(base.clone()));
        check(
            json!({"status": 503, "count": 2, "retry_after": 7}),
            Ok(FaultState {
                status: Some(503),
                remaining: Some(2),
                retry_after: Some(7),
                ..base.clone()
            }),
        );
        check(
            json!({"status": 429}),
            Ok(FaultState {
                status: Some(429),
                ..base.clone()
            }),
        );
        check(json!({"status": 503, "count": 0}), Ok(base.clone()));
        check(
            json!({"latency_ms": 250, "token_lifetime": 90, "down": true}),
            Ok(FaultState {
                latency_ms: 250,
                token_lifetime: 90,
                down: true,
                ..base.clone()
            }),
        );
        check(json!({"status": 418}), Err("status must be one of"));
        check(json!({"latency_ms": -1}), Err("latency_ms must be"));
        check(json!({"down": "yes"}), Err("down must be a boolean"));
        check(json!({"token_lifetime": 0}), Err("must be positive"));
        check(json!({"bogus": 1}), Err("unknown key"));
        check(json!([1]), Err("expected a json object"));
    }

    #[test]
    fn faults_are_consumed_by_count() {
        let shared = ControlState::new(Duration::from_secs(60));
        shared
            .apply(&Faults {
                status: Some(500),
                count: Some(2),
                ..Faults::default()
            })
            .unwrap();
        assert_eq!(shared.take_fault(), Some((500, None)));
        assert_eq!(shared.take_fault(), Some((500, None)));
        assert_eq!(shared.take_fault(), None);
        assert_eq!(shared.stats().faults_injected, 2);
    }
}
