//! `pgauth doctor`: one check per step, in the order a login needs them, stopping at the
//! first failure with what to do. Never prints the token.
//!
//! This file runs the steps and prints the report; each group of steps lives in its own
//! file, and `hints` explains the server's refusals at login.

mod credential;
mod dsql;
mod gcp;
mod hints;
mod login;
mod settings;
mod tls;

use std::future::{Future, ready};
use std::io::Write;
use std::pin::Pin;
use std::time::SystemTime;

use cloud_pg_auth::engine::chain_text;
use cloud_pg_auth::{AccessToken, Auth, AuthMethod, Env, Error, Settings};
use serde::Serialize;
use serde_json::{Value, json};

use crate::redact;
use crate::session::TokenSummary;

pub use login::MAX_ROLES;

/// What a step's check returns while it runs.
type StepFuture<'a> = Pin<Box<dyn Future<Output = Result<StepFinding, Failure>> + 'a>>;

/// One step: what it is called, what it checks, and the check.
struct StepDef {
    name: &'static str,
    title: &'static str,
    run: for<'a, 'e> fn(&'a mut State<'e>) -> StepFuture<'a>,
}

/// Every step, in the order a login needs them; each hands on what it learns in [`State`].
const STEP_DEFS: [StepDef; 8] = [
    StepDef {
        name: "settings",
        title: "settings resolved",
        run: |state| Box::pin(ready(settings::step_settings(state))),
    },
    StepDef {
        name: "credential",
        title: "credential found",
        run: |state| Box::pin(credential::step_credential(state)),
    },
    StepDef {
        name: "token",
        title: "token obtained",
        run: |state| Box::pin(credential::step_token(state)),
    },
    StepDef {
        name: "audience",
        title: "token fits the server",
        run: |state| Box::pin(ready(credential::step_audience(state))),
    },
    StepDef {
        name: "tls",
        title: "TLS handshake and certificate",
        run: |state| Box::pin(tls::step_tls(state)),
    },
    StepDef {
        name: "login",
        title: "login",
        run: |state| Box::pin(login::step_login(state)),
    },
    StepDef {
        name: "current_user",
        title: "current_user",
        run: |state| Box::pin(login::step_current_user(state)),
    },
    StepDef {
        name: "roles",
        title: "role membership and privileges",
        run: |state| Box::pin(login::step_roles(state)),
    },
];

/// The steps, in order: `(name, title)`.
pub const STEPS: [(&str, &str); 8] = {
    // Read off the step definitions, so the names cannot drift from the steps that run.
    let mut steps = [("", ""); 8];
    let mut index = 0;
    while index < STEP_DEFS.len() {
        steps[index] = (STEP_DEFS[index].name, STEP_DEFS[index].title);
        index += 1;
    }
    steps
};

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Status {
    /// Passed.
    Ok,
    /// Does not apply (a password method has no audience).
    Skipped,
    /// Failed: the doctor stops here.
    Failed,
    /// Not reached.
    NotRun,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Skipped => "skipped",
            Self::Failed => "FAILED",
            Self::NotRun => "not run",
        }
    }
}

/// One step's result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Step {
    /// Short name (`settings`, `login`, ...).
    pub name: &'static str,
    /// What is checked.
    pub title: &'static str,
    /// How it ended.
    pub status: Status,
    /// One line saying what was found.
    pub summary: String,
    /// More lines: warnings, variables read, names.
    pub details: Vec<String>,
    /// What to do, for a failed step.
    pub fix: Option<String>,
    /// Machine-readable facts.
    pub data: Value,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    /// Whether every step passed (or did not apply).
    pub ok: bool,
    /// The step that failed.
    pub failed_step: Option<&'static str>,
    /// Every step, run or not.
    pub steps: Vec<Step>,
}

struct StepFinding {
    summary: String,
    details: Vec<String>,
    data: Value,
    skipped: bool,
}

impl StepFinding {
    fn ok(summary: impl Into<String>) -> Self {
        Self {
            summary: summary.into(),
            details: Vec::new(),
            data: Value::Null,
            skipped: false,
        }
    }

    fn skipped(summary: impl Into<String>) -> Self {
        Self {
            skipped: true,
            ..Self::ok(summary)
        }
    }

    fn detail(mut self, line: impl Into<String>) -> Self {
        self.details.push(line.into());
        self
    }

    fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }
}

struct Failure {
    summary: String,
    fix: String,
    details: Vec<String>,
    data: Value,
}

fn failure(summary: impl Into<String>, fix: impl Into<String>) -> Failure {
    Failure {
        summary: summary.into(),
        fix: fix.into(),
        details: Vec::new(),
        data: Value::Null,
    }
}

impl Failure {
    fn detail(mut self, line: impl Into<String>) -> Self {
        self.details.push(line.into());
        self
    }

    fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }
}

/// A failure from a library error: the chain as the summary; for a setting, what to change.
fn error_failure(error: &Error, fallback_fix: &str) -> Failure {
    match error {
        Error::Config(e) => failure(
            e.to_string(),
            format!("change {} (the message says how)", e.setting()),
        )
        .data(json!({"setting": e.setting()})),
        other => failure(chain_text(other), fallback_fix),
    }
}

/// Prints steps as they finish (people) or nothing until the end (JSON).
struct Printer<'a> {
    out: &'a mut dyn Write,
    json: bool,
}

impl Printer<'_> {
    fn step(&mut self, index: usize, step: &Step) {
        if self.json {
            return;
        }
        let _ = writeln!(
            self.out,
            "{:>2}. {:<13} {:<8} {}",
            index + 1,
            step.name,
            step.status.label(),
            step.summary
        );
        for line in &step.details {
            let _ = writeln!(self.out, "{:26}{line}", "");
        }
        if let Some(fix) = &step.fix {
            let _ = writeln!(self.out, "{:26}fix: {fix}", "");
        }
        let _ = self.out.flush();
    }
}

/// Everything the steps learn and hand on.
struct State<'e> {
    env: &'e Env,
    now: SystemTime,
    settings: Option<Settings>,
    method: AuthMethod,
    auth: Option<Auth>,
    token: Option<AccessToken>,
    summary: TokenSummary,
    user: Option<String>,
    client: Option<cloud_pg_auth::tokio_postgres::Client>,
}

/// The settings the first step resolved; every later step runs only after it passed.
fn resolved_settings<'a>(state: &'a State<'_>) -> &'a Settings {
    state
        .settings
        .as_ref()
        .expect("the settings step passed before this one")
}

/// Runs every step against the settings in `env` and prints the report to `out`.
pub(crate) async fn run(env: &Env, out: &mut dyn Write, json: bool) -> Report {
    let mut state = State {
        env,
        now: SystemTime::now(),
        settings: None,
        method: AuthMethod::Auto,
        auth: None,
        token: None,
        summary: TokenSummary::default(),
        user: None,
        client: None,
    };
    let mut printer = Printer { out, json };
    if !json {
        let _ = writeln!(
            printer.out,
            "pgauth doctor: checking the login step by step (the token itself is never shown)"
        );
    }
    let mut steps = Vec::new();
    let mut failed_step = None;
    for (index, def) in STEP_DEFS.iter().enumerate() {
        let (name, title) = (def.name, def.title);
        let step = if failed_step.is_some() {
            Step {
                name,
                title,
                status: Status::NotRun,
                summary: String::new(),
                details: Vec::new(),
                fix: None,
                data: Value::Null,
            }
        } else {
            match (def.run)(&mut state).await {
                Ok(o) => Step {
                    name,
                    title,
                    status: if o.skipped {
                        Status::Skipped
                    } else {
                        Status::Ok
                    },
                    summary: o.summary,
                    details: o.details,
                    fix: None,
                    data: o.data,
                },
                Err(f) => {
                    failed_step = Some(name);
                    Step {
                        name,
                        title,
                        status: Status::Failed,
                        summary: f.summary,
                        details: f.details,
                        fix: Some(f.fix),
                        data: f.data,
                    }
                }
            }
        };
        let step = redacted(step);
        printer.step(index, &step);
        steps.push(step);
    }
    if let Some(auth) = &state.auth {
        auth.dispose().await;
    }
    let report = Report {
        ok: failed_step.is_none(),
        failed_step,
        steps,
    };
    if json {
        let _ = writeln!(
            printer.out,
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        let _ = writeln!(printer.out);
        match failed_step {
            None => {
                let _ = writeln!(
                    printer.out,
                    "verdict: OK, all {} steps passed; try: pgauth psql -- -c 'select current_user'",
                    STEP_DEFS.len()
                );
            }
            Some(name) => {
                let index = STEP_DEFS.iter().position(|d| d.name == name).unwrap_or(0);
                let _ = writeln!(
                    printer.out,
                    "verdict: FAILED at step {} ({name}); apply the fix above and run pgauth doctor again (docs/troubleshooting.md has more)",
                    index + 1
                );
            }
        }
    }
    report
}

/// `step` without URL passwords: errors and labels from the library and the cloud SDKs may
/// quote a `DATABASE_URL` or an endpoint written `scheme://user:password@host`.
fn redacted(mut step: Step) -> Step {
    step.summary = redact::url_passwords(&step.summary);
    for line in &mut step.details {
        *line = redact::url_passwords(line);
    }
    step.fix = step.fix.map(|fix| redact::url_passwords(&fix));
    redact::json(&mut step.data);
    step
}
