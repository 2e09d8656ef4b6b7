//! `bench.json` and the plain text tables the bench prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{AdapterFigures, Machine, Opens, PeerFigures, Sizes};

/// `bench.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where the figures were taken.
    pub machine: Machine,
    /// The command that produced them.
    pub command: String,
    /// Whether the sizes were reduced.
    pub quick: bool,
    /// Figures per adapter.
    pub adapters: BTreeMap<String, AdapterFigures>,
    /// The Python peer.
    pub peer_python: PeerFigures,
    /// The Rust side of the opens comparison (deadpool).
    pub rust_opens_per_s: Option<f64>,
    /// It in detail.
    pub rust_opens: Option<Opens>,
    /// Open time and pooled query round trip, every adapter in one phase.
    pub latency: Option<crate::latency::Latency>,
    /// `pgauth proxy` ÷ direct: `proxy_pgbench_select_ratio`, `proxy_open_ratio` and their
    /// raw figures, as top-level keys.
    #[serde(flatten)]
    pub proxy: crate::bench_proxy::ProxyFigures,
    /// The sizes used.
    pub sizes: Sizes,
    /// What `--quick` reduced, `name: full -> quick`.
    pub reduced: Vec<String>,
    /// What the figures include and what they do not.
    pub notes: Vec<String>,
    /// Wall time of the whole bench.
    pub seconds: f64,
}

/// What a reader of `bench.json` needs to know to read the figures right.
#[must_use]
pub fn notes() -> Vec<String> {
    [
        "Everything runs on one machine: the emulator (PostgreSQL, its token-checking front, the identity endpoints), the adapters and the Python peer share the same cores.",
        "An 'open' is a new physical connection (TCP, TLS verify-full, login) plus one SELECT current_user, then the connection is discarded.",
        "connect_overhead_ratio also reflects the front's own check of the credential: an RS256 JWT for the cloud token, a SCRAM-SHA-256 verifier (PBKDF2) for the password.",
        "herd_token_requests counts identity requests from building a cold engine to the last of the concurrent checkouts; the peer's is counted around the whole script run.",
        "Token requests are differences of the emulator's counters around each phase; phases never overlap.",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect()
}

/// A plain text table: a header, a rule, rows; columns padded to their widest cell.
#[must_use]
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            } else {
                widths.push(cell.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            let _ = write!(out, "{cell}{}  ", " ".repeat(pad));
        }
        out.trim_end().to_string()
    };
    let mut out = line(&mut headers.iter().copied());
    out.push('\n');
    out.push_str(&line(
        &mut widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
    ));
    out.push('\n');
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
        out.push('\n');
    }
    out
}

fn show<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

impl Report {
    /// The figures as text tables.
    #[must_use]
    pub fn tables(&self) -> String {
        let headers = [
            "adapter",
            "herd token req",
            "churn opens",
            "fail",
            "token req",
            "lifetimes",
            "overhead ratio",
            "slow p99 ratio",
            "p99 ms none/slow",
            "outage fails",
        ];
        let rows: Vec<Vec<String>> = self
            .adapters
            .iter()
            .map(|(name, f)| {
                let churn = f.churn.as_ref();
                let slow = f.slow_endpoint.as_ref();
                vec![
                    name.clone(),
                    show(f.herd_token_requests),
                    show(churn.map(|c| c.opens)),
                    show(churn.map(|c| c.failures)),
                    show(churn.map(|c| c.token_requests)),
                    show(churn.map(|c| c.lifetimes)),
                    show(f.connect_overhead_ratio),
                    show(f.slow_endpoint_p99_ratio),
                    show(slow.map(|s| format!("{}/{}", s.none.p99_ms, s.slow.p99_ms))),
                    show(f.outage_failures),
                ]
            })
            .collect();
        let mut out = table(&headers, &rows);
        out.push('\n');
        let peer = &self.peer_python;
        let rows = vec![
            vec![
                "python peer (SQLAlchemy + asyncpg + azure-identity)".to_string(),
                show(peer.herd_token_requests),
                show(peer.opens_per_s),
            ],
            vec![
                format!(
                    "rust ({})",
                    self.rust_opens.as_ref().map_or("deadpool", |o| o.adapter)
                ),
                show(
                    self.adapters
                        .get("deadpool")
                        .and_then(|f| f.herd_token_requests),
                ),
                show(self.rust_opens_per_s),
            ],
        ];
        out.push_str(&table(
            &[
                "same emulator, same workload",
                "herd token req",
                &format!(
                    "opens/s ({} opens, {} at a time)",
                    self.sizes.opens, self.sizes.opens_concurrency
                ),
            ],
            &rows,
        ));
        let errors: Vec<String> = self
            .adapters
            .iter()
            .flat_map(|(name, f)| f.errors.iter().map(move |e| format!("{name}: {e}")))
            .chain(peer.errors.iter().map(|e| format!("python peer: {e}")))
            .collect();
        if !errors.is_empty() {
            out.push_str("\nnot measured or failed:\n");
            for e in errors {
                let _ = writeln!(out, "  {e}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns() {
        let t = table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "a    bb\n---  --\nxxx  y\n");
    }
}
