//! The Python peer (`xtask/peer/phoenix_peer.py`): run against the same emulator, its
//! figures read from the JSON it prints.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use cloud_pg_auth::BoxError;
use cloud_pg_auth_testkit::{Emulator, Faults};
use serde::Serialize;
use serde_json::Value;

use super::Sizes;
use super::phases::{fresh_faults, text, token_requests};

/// How to run the Python peer.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The interpreter (the bench's virtual environment's `python`).
    pub python: PathBuf,
    /// `xtask/peer/phoenix_peer.py`.
    pub script: PathBuf,
}

/// The Python peer's figures, measured against the same emulator.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PeerFigures {
    /// Token requests the emulator saw for the peer's herd.
    pub herd_token_requests: Option<u64>,
    /// New connections per second, same `opens` and `opens_concurrency` as the Rust side.
    pub opens_per_s: Option<f64>,
    /// Installed package versions (and Python's).
    pub packages: BTreeMap<String, String>,
    /// The script's own report of its herd.
    pub herd: Option<Value>,
    /// The script's own report of its opens.
    pub opens: Option<Value>,
    /// What could not run, with the error.
    pub errors: Vec<String>,
}

/// The last line of `stdout` that parses as a JSON object.
#[must_use]
pub fn last_json_object(stdout: &str) -> Option<Value> {
    stdout
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
        .find(Value::is_object)
}

impl Peer {
    /// Runs the script with the emulator's exports as its environment; returns its JSON.
    /// A non-zero exit with a JSON report (failed checkouts) still returns the report.
    pub async fn run(&self, emulator: &Emulator, args: &[String]) -> Result<Value, BoxError> {
        let child = tokio::process::Command::new(&self.python)
            .arg(&self.script)
            .args(args)
            .envs(emulator.env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("could not start {}: {e}", self.python.display()))?;
        let output = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
            .await
            .map_err(|_| {
                format!(
                    "{} {} did not finish within 300 s",
                    self.script.display(),
                    args.join(" ")
                )
            })??;
        let stdout = String::from_utf8_lossy(&output.stdout);
        match last_json_object(&stdout) {
            Some(report) => Ok(report),
            None => {
                // The script prints no secret; a Python traceback names code, not values.
                let stderr = String::from_utf8_lossy(&output.stderr);
                let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                Err(format!(
                    "{} {} exited with {} and no report: {}",
                    self.script.display(),
                    args.join(" "),
                    output.status,
                    tail.join(" | ")
                )
                .into())
            }
        }
    }

    /// The peer's herd (token requests measured here, around the script) and opens.
    pub async fn measure(&self, emulator: &Emulator, sizes: &Sizes) -> PeerFigures {
        let mut figures = PeerFigures::default();
        let herd_args = vec![
            "herd".to_string(),
            sizes.herd_checkouts.to_string(),
            sizes.herd_pool_max.to_string(),
        ];
        let outcome = async {
            fresh_faults(emulator, Faults::default()).await?;
            let before = token_requests(emulator);
            let report = self.run(emulator, &herd_args).await?;
            Ok::<_, BoxError>((token_requests(emulator) - before, report))
        }
        .await;
        match outcome {
            Ok((requests, report)) => {
                figures.herd_token_requests = Some(requests);
                figures.herd = Some(report);
            }
            Err(e) => figures.errors.push(format!("herd: {}", text(&e))),
        }
        let opens_args = vec![
            "opens".to_string(),
            sizes.opens.to_string(),
            sizes.opens_concurrency.to_string(),
        ];
        let outcome = async {
            fresh_faults(emulator, Faults::default()).await?;
            self.run(emulator, &opens_args).await
        }
        .await;
        match outcome {
            Ok(report) => {
                figures.opens_per_s = report.get("opens_per_s").and_then(Value::as_f64);
                figures.opens = Some(report);
            }
            Err(e) => figures.errors.push(format!("opens: {}", text(&e))),
        }
        let packages = figures
            .herd
            .iter()
            .chain(figures.opens.iter())
            .find_map(|r| r.get("packages").cloned());
        let packages = match packages {
            Some(p) => Some(p),
            None => self.run(emulator, &["versions".to_string()]).await.ok(),
        };
        // Kept once, at the top of the peer's figures, not in each report.
        for report in [&mut figures.herd, &mut figures.opens]
            .into_iter()
            .flatten()
        {
            if let Some(map) = report.as_object_mut() {
                map.remove("packages");
            }
        }
        if let Some(Value::Object(map)) = packages {
            figures.packages = map
                .into_iter()
                .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                .collect();
        }
        for (what, report) in [("herd", &figures.herd), ("opens", &figures.opens)] {
            if let Some(r) = report
                && r.get("failures").and_then(Value::as_u64).unwrap_or(0) > 0
            {
                let first = r.get("first_error").and_then(Value::as_str).unwrap_or("?");
                figures
                    .errors
                    .push(format!("{what}: failed checkouts, first: {first}"));
            }
        }
        emulator.reset().await;
        figures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peer_report_is_the_last_json_object() {
        let out = "warming up\n{\"mode\": \"opens\", \"opens_per_s\": 84.4}\n";
        let report = last_json_object(out).unwrap();
        assert_eq!(report["opens_per_s"], 84.4);
        assert_eq!(
            last_json_object("Traceback (most recent call last):\n  [1, 2]\n"),
            None
        );
    }
}
