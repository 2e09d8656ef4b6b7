//! Shared by the integration tests: the emulator's variables as an environment, and
//! commands run in-process.

#![allow(dead_code)]

use cloud_pg_auth::Env;
use cloud_pg_auth_cli::{ExitAction, run};
use cloud_pg_auth_testkit::Emulator;

/// The emulator's exports plus `PATH`, with `overrides` on top (an empty value unsets).
pub(crate) fn vars(emulator: &Emulator, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut vars = emulator.env();
    vars.push((
        "PATH".to_string(),
        std::env::var("PATH").unwrap_or_default(),
    ));
    for (name, value) in overrides {
        vars.retain(|(n, _)| n != name);
        if !value.is_empty() {
            vars.push((name.to_string(), value.to_string()));
        }
    }
    vars
}

/// [`vars`] as the library's `Env`.
pub(crate) fn env(emulator: &Emulator, overrides: &[(&str, &str)]) -> Env {
    Env::from_pairs(vars(emulator, overrides))
}

/// What an in-process run produced.
#[derive(Debug)]
pub(crate) struct Ran {
    pub outcome: ExitAction,
    pub out: String,
    pub err: String,
}

impl Ran {
    pub(crate) fn code(&self) -> Option<u8> {
        match self.outcome {
            ExitAction::Exit(code) => Some(code),
            ExitAction::Exec(_) => None,
        }
    }
}

/// Runs `pgauth ARGS` in-process.
pub(crate) async fn pgauth(args: &[&str], env: &Env) -> Ran {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let outcome = run(&args, env, &mut out, &mut err).await;
    Ran {
        outcome,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

/// The `export NAME='value'` lines of `pgauth env`, unquoted.
pub(crate) fn parse_exports(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(v)
                .replace("'\\''", "'");
            (k.to_string(), v)
        })
        .collect()
}
