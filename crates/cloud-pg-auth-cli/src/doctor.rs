//! `pgauth doctor`: one check per step, in the order a login needs them, stopping at the
//! first failure with what to do. Never prints the token.

use std::io::Write;
use std::time::{Duration, SystemTime};

use cloud_pg_auth::azure::{AzureCloud, cloud_for_host};
use cloud_pg_auth::tls::{CertCheck, TlsPolicy};
use cloud_pg_auth::{
    AccessToken, Auth, AuthMethod, Env, Error, PgConnector, RootCerts, Settings, SslMode,
    TokenErrorKind, chain_text,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::redact;
use crate::session::{self, TokenSummary};
use crate::tlsprobe::{self, ProbeError};

/// The steps, in order: `(name, title)`.
pub const STEPS: [(&str, &str); 8] = [
    ("settings", "settings resolved"),
    ("credential", "credential found"),
    ("token", "token obtained"),
    ("audience", "token fits the server"),
    ("tls", "TLS handshake and certificate"),
    ("login", "login"),
    ("current_user", "current_user"),
    ("roles", "role membership and privileges"),
];

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
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
pub struct Step {
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
pub struct Report {
    /// Whether every step passed (or did not apply).
    pub ok: bool,
    /// The step that failed.
    pub failed_step: Option<&'static str>,
    /// Every step, run or not.
    pub steps: Vec<Step>,
}

struct Outcome {
    summary: String,
    details: Vec<String>,
    data: Value,
    skipped: bool,
}

impl Outcome {
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

/// Runs every step against the settings in `env` and prints the report to `out`.
pub async fn run(env: &Env, out: &mut dyn Write, json: bool) -> Report {
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
    for (index, (name, title)) in STEPS.iter().enumerate() {
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
            let result = match index {
                0 => step_settings(&mut state),
                1 => step_credential(&mut state).await,
                2 => step_token(&mut state).await,
                3 => step_audience(&mut state),
                4 => step_tls(&mut state).await,
                5 => step_login(&mut state).await,
                6 => step_current_user(&mut state).await,
                _ => step_roles(&mut state).await,
            };
            match result {
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
                    failed_step = Some(*name);
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
                    STEPS.len()
                );
            }
            Some(name) => {
                let index = STEPS.iter().position(|(n, _)| *n == name).unwrap_or(0);
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

fn settings<'a>(state: &'a State<'_>) -> &'a Settings {
    state
        .settings
        .as_ref()
        .expect("the settings step passed before this one")
}

fn step_settings(state: &mut State<'_>) -> Result<Outcome, Failure> {
    let env = state.env;
    let read = |env: &Env| env.names_read().join(", ");
    let settings = Settings::from_env_vars(env).map_err(|e| {
        failure(
            e.to_string(),
            format!(
                "change {}: {}",
                e.setting(),
                e.message()
                    .rsplit_once("; ")
                    .map_or(e.message(), |(_, advice)| advice)
            ),
        )
        .detail(format!("variables read: {}", read(env)))
        .data(json!({"setting": e.setting()}))
    })?;
    let method = settings
        .resolved_method()
        .map_err(|e| failure(e.to_string(), format!("change {}", e.setting())))?;
    state.method = method;
    let host = settings.host.clone().unwrap_or_default();
    let why = if env.is_set("PGAUTH_METHOD") || settings.method != AuthMethod::Auto {
        "PGAUTH_METHOD".to_string()
    } else if settings.password.is_some() {
        "auto: a password is set".to_string()
    } else {
        "auto: the host name".to_string()
    };
    let mode = settings.effective_ssl_mode().unwrap_or(SslMode::VerifyFull);
    let mut cloud = Value::Null;
    let mut region = Value::Null;
    let place = match method {
        AuthMethod::Azure => {
            let from = if env.is_set("PGAUTH_AZURE_CLOUD") {
                "PGAUTH_AZURE_CLOUD"
            } else {
                "default"
            };
            cloud = json!(settings.azure.cloud.as_str());
            format!(
                ", cloud {} ({from}), scope {}",
                settings.azure.cloud,
                settings.azure.effective_scope()
            )
        }
        AuthMethod::Aws => match settings.aws.resolve_region(&host) {
            Ok(r) => {
                region = json!(r);
                format!(", region {r}")
            }
            Err(e) => return Err(failure(e.to_string(), "set AWS_REGION")),
        },
        _ => String::new(),
    };
    let user = settings
        .user
        .clone()
        .unwrap_or_else(|| "from the token".to_string());
    let summary = format!(
        "method {} ({why}), server {host}:{}, database {}, user {user}, sslmode {}{place}",
        method.as_str(),
        settings.port,
        settings.dbname.as_deref().unwrap_or("(the user name)"),
        mode.as_str(),
    );
    let names = env.names_read();
    let mut outcome = Outcome::ok(summary)
        .detail(format!("variables read: {}", names.join(", ")))
        .data(json!({
            "method": method.as_str(),
            "method_from": why,
            "host": host,
            "port": settings.port,
            "database": settings.dbname,
            "user": settings.user,
            "sslmode": mode.as_str(),
            "cloud": cloud,
            "region": region,
            "variables_read": names,
        }));
    if settings.insecure_loopback {
        outcome = outcome.detail(
            "warning: PGAUTH_INSECURE_LOOPBACK=1 allows the token over plaintext or unverified TLS to this loopback host",
        );
    }
    state.settings = Some(settings);
    Ok(outcome)
}

async fn step_credential(state: &mut State<'_>) -> Result<Outcome, Failure> {
    let settings = settings(state).clone();
    let source = session::source(&settings)
        .await
        .map_err(|e| error_failure(&e, "check the credential settings named above"))?;
    let info = source.info();
    let mut summary = info.label();
    if let Some(identity) = &info.identity {
        summary.push_str(&format!(", identity {identity}"));
    }
    let mut outcome = Outcome::ok(summary).data(json!({
        "method": info.method,
        "credential_kind": info.credential_kind,
        "identity": info.identity,
        "endpoint": info.endpoint,
        "cloud": info.cloud,
    }));
    if state.method == AuthMethod::Azure
        && settings.azure.credential == cloud_pg_auth::azure::AzureCredentialKind::Auto
    {
        outcome = outcome.detail(
            "picked by PGAUTH_AZURE_CREDENTIAL=auto (workload identity, then managed identity, client secret, azure cli); set it to pin one",
        );
    }
    state.auth = Some(session::auth(&settings, source));
    Ok(outcome)
}

async fn step_token(state: &mut State<'_>) -> Result<Outcome, Failure> {
    let auth = state.auth.clone().expect("credential step passed");
    let token = auth
        .token()
        .await
        .map_err(|e| token_failure(&e, state.method))?;
    let summary = session::summarize(state.method, &token, state.now);
    let settings = settings(state);
    let mut outcome = Outcome::ok(summary.line()).data(summary.to_json());
    let user = match session::login_user(settings, &token) {
        Ok(user) => user,
        Err(e) => {
            // A service principal's token carries ids but no name: only the settings can say.
            return Err(failure(
                chain_text(&e),
                "set PGUSER to the role name of this identity: for a service principal (client secret, workload identity app), its display name in Entra, the name given to pgaadauth_create_principal",
            )
            .detail(summary.line())
            .data(json!({"setting": "PGUSER"})));
        }
    };
    if let Some(warning) = cloud_pg_auth::azure::guid_username_warning(&user, token.details()) {
        outcome = outcome.detail(format!("warning: {warning}"));
    }
    if settings.user.is_none() {
        outcome = outcome.detail(format!(
            "login role {user:?}, derived from the token (PGUSER is not set)"
        ));
    } else if let Some(derived) = &token.details().username
        && derived != &user
    {
        outcome = outcome.detail(format!(
            "note: PGUSER is {user:?} but the token's identity is named {derived:?}; the role must be mapped to this identity"
        ));
    }
    state.user = Some(user);
    state.token = Some(token);
    state.summary = summary;
    Ok(outcome)
}

fn step_audience(state: &mut State<'_>) -> Result<Outcome, Failure> {
    let settings = settings(state);
    let host = settings.host.clone().unwrap_or_default();
    match state.method {
        AuthMethod::Azure => {
            let (cloud, from) = match cloud_for_host(&host) {
                Some(c) => (c, format!("the host name {host}")),
                None if state.env.is_set("PGAUTH_AZURE_CLOUD") => {
                    (settings.azure.cloud, "PGAUTH_AZURE_CLOUD".to_string())
                }
                None => (
                    settings.azure.cloud,
                    "the default, as the host name does not say".to_string(),
                ),
            };
            let expected = cloud.audience();
            let Some(aud) = state.summary.audience.clone() else {
                return Err(failure(
                    "the token has no aud claim; it is not an Entra access token for a resource",
                    "check PGAUTH_AZURE_SCOPE and the credential: the token must be an access token for Azure Database for PostgreSQL",
                ));
            };
            let data = json!({"aud": aud, "expected": expected, "server_cloud": cloud.as_str(), "server_cloud_from": from});
            if same_audience(&aud, expected) {
                let mut outcome = Outcome::ok(format!(
                    "aud {aud} is Azure Database for PostgreSQL in the {cloud} cloud, the server's cloud (from {from})"
                ))
                .data(data);
                if cloud_for_host(&host).is_none() {
                    outcome = outcome.detail(format!(
                        "the host {host} does not name a cloud: a server in another cloud refuses this token at login (\"does not have a valid audience claim\")"
                    ));
                }
                return Ok(outcome);
            }
            let fix = match AzureCloud::ALL
                .into_iter()
                .find(|c| same_audience(&aud, c.audience()))
            {
                Some(other) if state.env.is_set("PGAUTH_AZURE_SCOPE") => format!(
                    "PGAUTH_AZURE_SCOPE asks for the {other} cloud's audience; unset PGAUTH_AZURE_SCOPE (or set PGAUTH_AZURE_CLOUD={cloud})"
                ),
                Some(_) => format!("set PGAUTH_AZURE_CLOUD={cloud}"),
                None => format!(
                    "the token is for another resource ({}); unset PGAUTH_AZURE_SCOPE or set it to {} (with the Azure CLI: az account get-access-token --resource-type oss-rdbms)",
                    describe_resource(&aud),
                    cloud.scope()
                ),
            };
            Err(failure(
                format!(
                    "the token's audience is {aud}, but the server (the {cloud} cloud, from {from}) accepts only {expected}"
                ),
                fix,
            )
            .data(data))
        }
        AuthMethod::Aws => {
            // The token is signed for PGHOST, the name TLS verifies; PGHOSTADDR only
            // changes the address dialled.
            let expected_host = host.clone();
            let expected_host = if expected_host.parse::<std::net::Ipv6Addr>().is_ok() {
                format!("[{expected_host}]")
            } else {
                expected_host
            };
            let expected_target = format!(
                "{expected_host}:{}",
                settings.aws.signing_port.unwrap_or(settings.port)
            );
            let expected_region = settings.aws.resolve_region(&host).unwrap_or_default();
            let user = state.user.clone().unwrap_or_default();
            let summary = &state.summary;
            let data = json!({
                "signed_for": summary.signed_target,
                "signed_user": summary.signed_user,
                "signed_region": summary.signed_region,
                "expected_target": expected_target,
                "expected_user": user,
                "expected_region": expected_region,
            });
            let mismatch = [
                (
                    "host:port",
                    summary.signed_target.as_deref(),
                    expected_target.as_str(),
                    "PGHOST / PGAUTH_AWS_SIGNING_PORT",
                ),
                (
                    "user",
                    summary.signed_user.as_deref(),
                    user.as_str(),
                    "PGUSER",
                ),
                (
                    "region",
                    summary.signed_region.as_deref(),
                    expected_region.as_str(),
                    "AWS_REGION",
                ),
            ]
            .into_iter()
            .find(|(_, got, want, _)| !got.is_some_and(|g| g.eq_ignore_ascii_case(want)));
            if let Some((what, got, want, setting)) = mismatch {
                return Err(failure(
                    format!(
                        "the token is signed for {what} {}, but the login is for {want}",
                        got.unwrap_or("(none)")
                    ),
                    format!("check {setting}"),
                )
                .data(data));
            }
            let mut outcome = Outcome::ok(format!(
                "signed for {expected_target} as {user} in {expected_region}, the server and user of this login"
            ))
            .data(data);
            if !cloud_pg_auth::aws::is_rds_host(&expected_host) {
                outcome = outcome.detail(format!(
                    "{expected_host} is not an RDS endpoint name: RDS checks the token against its own endpoint, so through a tunnel or proxy keep the instance's endpoint in PGHOST and put the address to dial in PGHOSTADDR"
                ));
            }
            Ok(outcome)
        }
        _ => Ok(Outcome::skipped(
            "not a token method: the password is sent as it is",
        )),
    }
}

fn same_audience(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

fn describe_resource(aud: &str) -> String {
    let known = [
        ("https://database.windows.net", "Azure SQL Database"),
        ("https://management.azure.com", "Azure Resource Manager"),
        (
            "https://management.core.windows.net",
            "Azure Resource Manager",
        ),
        ("https://graph.microsoft.com", "Microsoft Graph"),
        (
            "https://ossrdbms-aad.database.windows.net",
            "Azure Database for PostgreSQL, public cloud",
        ),
    ];
    match known.iter().find(|(a, _)| same_audience(aud, a)) {
        Some((_, name)) => format!("{aud}, {name}"),
        None => aud.to_string(),
    }
}

async fn step_tls(state: &mut State<'_>) -> Result<Outcome, Failure> {
    let settings = settings(state).clone();
    let host = settings.host.clone().unwrap_or_default();
    let port = settings.port;
    let policy = TlsPolicy::from_settings(&settings)
        .map_err(|e| error_failure(&e, "check PGSSLROOTCERT: a PEM file of CA certificates"))?;
    let Some(config) = policy.client_config().cloned() else {
        if settings.host_is_unix_socket() {
            return Ok(Outcome::skipped(format!(
                "{host} is a Unix socket directory: local, no TLS (PostgreSQL does not use TLS over Unix sockets)"
            )));
        }
        return Ok(Outcome::skipped(format!(
            "sslmode={}: no TLS; the password goes in clear to the loopback host {host} (PGAUTH_INSECURE_LOOPBACK=1)",
            policy.mode().as_str()
        )));
    };
    let check = describe_check(&settings, state.method, policy.mode());
    let insecure = cloud_pg_auth::tls::client_config(&RootCerts::Bundled, CertCheck::None)
        .map_err(|e| error_failure(&e, "report this as a bug"))?;
    let timeout = settings.connect_timeout.unwrap_or(Duration::from_secs(10));
    let target = tlsprobe::Target {
        host: &host,
        hostaddr: settings.hostaddr,
        port,
    };
    match tlsprobe::probe(target, config, insecure, timeout).await {
        Ok(report) => {
            let names = report.certificate.shown();
            let until = report
                .certificate
                .not_after
                .as_ref()
                .map(|t| format!(", valid until {t}"))
                .unwrap_or_default();
            let summary = format!(
                "{} {}, certificate for {}{until}, checked: {check}",
                report.protocol,
                report.cipher_suite,
                if names.is_empty() {
                    "(no names)".to_string()
                } else {
                    names.join(", ")
                },
            );
            let data = json!({
                "protocol": report.protocol,
                "cipher_suite": report.cipher_suite,
                "certificate_names": names,
                "not_after": report.certificate.not_after,
                "check": check,
            });
            // A real server's certificate names its cloud even when it is reached by IP or
            // through a private endpoint: compare it with the token's audience.
            if state.method == AuthMethod::Azure
                && let Some(cert_cloud) = names
                    .iter()
                    .find_map(|n| cloud_for_host(&n.replace('*', "x")))
                && let Some(aud) = &state.summary.audience
                && !same_audience(aud, cert_cloud.audience())
            {
                return Err(failure(
                    format!(
                        "the server's certificate ({}) is in the {cert_cloud} cloud, but the token's audience is {aud}",
                        names.join(", ")
                    ),
                    format!("set PGAUTH_AZURE_CLOUD={cert_cloud}"),
                )
                .data(data));
            }
            Ok(Outcome::ok(summary).data(data))
        }
        Err(error) => Err(tls_failure(&error, &settings)),
    }
}

fn describe_check(settings: &Settings, method: AuthMethod, mode: SslMode) -> String {
    let roots = match &settings.root_certs {
        RootCerts::File(path) => format!("PGSSLROOTCERT {}", path.display()),
        RootCerts::System => "the system's CA store".to_string(),
        _ => "the built-in public CAs".to_string(),
    };
    match mode {
        SslMode::VerifyFull => format!("chain and host name (verify-full) against {roots}"),
        SslMode::VerifyCa => format!(
            "chain only (verify-ca) against {roots}: any certificate that CA signed passes, whatever its name"
        ),
        SslMode::Require | SslMode::Prefer if method.is_token() => {
            if settings.insecure_loopback && settings.host_is_loopback() {
                "nothing (PGAUTH_INSECURE_LOOPBACK=1)".to_string()
            } else {
                format!(
                    "chain and host name (sslmode={} is checked like verify-full for tokens) against {roots}",
                    mode.as_str()
                )
            }
        }
        _ => format!("nothing (sslmode={})", mode.as_str()),
    }
}

fn tls_failure(error: &ProbeError, settings: &Settings) -> Failure {
    let host = settings.host.as_deref().unwrap_or_default();
    let port = settings.port;
    let at = match settings.hostaddr {
        Some(addr) => format!("{host}:{port} (dialled at {addr}, PGHOSTADDR)"),
        None => format!("{host}:{port}"),
    };
    match error {
        ProbeError::Connect(e) => failure(
            format!("cannot reach {at}: {e}"),
            "check PGHOST and PGPORT, that the server runs, and the network path (Azure: the server's firewall rules or private endpoint; AWS: the security group's inbound rule for this port)",
        ),
        ProbeError::Timeout => failure(
            format!("{at} did not answer in time"),
            "check the network path (firewall rules, security groups, VPN) and PGCONNECT_TIMEOUT",
        ),
        ProbeError::NoTls => failure(
            format!("{at}: {error}; a token is a password and is never sent in clear"),
            "turn TLS on at the server (ssl = on); Azure and RDS always offer it, so check that PGHOST and PGPORT reach the database and not a proxy without TLS. Only for a loopback test set-up: PGSSLMODE=disable with PGAUTH_INSECURE_LOOPBACK=1",
        ),
        ProbeError::Unexpected(_) => failure(
            format!("{at}: {error}"),
            "check PGHOST and PGPORT: they must point at PostgreSQL (or PgBouncer), not at another service",
        ),
        ProbeError::Handshake {
            error: rustls_error,
            text,
            certificate,
        } => {
            let names = certificate
                .as_ref()
                .map(|c| c.shown().join(", "))
                .filter(|n| !n.is_empty());
            let holds = names
                .as_ref()
                .map(|n| format!(" (the certificate is for {n})"))
                .unwrap_or_default();
            let name_mismatch = matches!(
                rustls_error,
                Some(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::NotValidForName
                        | rustls::CertificateError::NotValidForNameContext { .. }
                ))
            );
            let fix = match rustls_error {
                Some(rustls::Error::InvalidCertificate(cert)) => match cert {
                    rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. } => format!(
                        "connect by a name the certificate holds{}; to reach the server by an IP address, a private endpoint or an SSH tunnel / port-forward, keep that name in PGHOST (the URL's host) and put the address to dial in PGHOSTADDR (the URL's hostaddr), so verify-full still checks the name",
                        names.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
                    ),
                    rustls::CertificateError::Expired
                    | rustls::CertificateError::ExpiredContext { .. } => {
                        "the server's certificate has expired (or this machine's clock is wrong); check both".to_string()
                    }
                    _ => match &settings.root_certs {
                        RootCerts::File(path) => format!(
                            "PGSSLROOTCERT {} does not hold the CA that signed the server's certificate; for RDS use the global bundle from AWS, for Azure the DigiCert and Microsoft roots",
                            path.display()
                        ),
                        _ => "set PGSSLROOTCERT to the CA bundle that signs the server's certificate (for RDS, the global bundle from AWS)".to_string(),
                    },
                },
                _ => "check that the server speaks TLS 1.2 or 1.3 on this port".to_string(),
            };
            let mut failed = failure(
                format!("TLS handshake with {at} failed: {text}{holds}"),
                fix,
            )
            .data(json!({"certificate_names": certificate.as_ref().map(|c| c.shown())}));
            if name_mismatch {
                // The tempting shortcut, and why it is not one.
                failed = failed.detail(
                    "not a fix: sslmode=verify-ca checks only the chain, so anyone on the path with a publicly trusted certificate would receive the token; it is acceptable only with PGSSLROOTCERT naming a CA file you trust (such as a Cloud SQL instance's server CA)",
                );
            }
            failed
        }
    }
}

async fn step_login(state: &mut State<'_>) -> Result<Outcome, Failure> {
    let settings = settings(state).clone();
    let auth = state.auth.clone().expect("credential step passed");
    let user = state.user.clone().unwrap_or_default();
    let connector = PgConnector::new(&settings, auth)
        .map_err(|e| error_failure(&e, "check the settings named above"))?;
    match connector.connect().await {
        Ok((client, _task)) => {
            state.client = Some(client);
            Ok(Outcome::ok(format!(
                "logged in as {user} to database {}",
                settings.dbname.as_deref().unwrap_or(&user)
            )))
        }
        Err(error) => Err(login_failure(state, &error, &user)),
    }
}

/// What the server said, from the driver's error.
fn server_error(error: &Error) -> Option<(String, String, String)> {
    let Error::Connect { source, .. } = error else {
        return None;
    };
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
    while let Some(cause) = next {
        if let Some(db) = cause
            .downcast_ref::<cloud_pg_auth::tokio_postgres::Error>()
            .and_then(|e| e.as_db_error())
        {
            return Some((
                db.severity().to_string(),
                db.code().code().to_string(),
                db.message().to_string(),
            ));
        }
        next = cause.source();
    }
    None
}

fn login_failure(state: &State<'_>, error: &Error, user: &str) -> Failure {
    let settings = settings(state);
    let Some((severity, code, message)) = server_error(error) else {
        return error_failure(
            error,
            "the TLS step passed, so the server was reachable: retry, and check the server's log",
        );
    };
    let said = format!("the server said: {severity} {code} {message}");
    let oid = state.token.as_ref().and_then(|t| {
        cloud_pg_auth::azure::JwtClaims::parse(t.secret().expose()).and_then(|c| c.oid)
    });
    let derived = state
        .token
        .as_ref()
        .and_then(|t| t.details().username.clone());
    let create_azure = |name: &str| match &oid {
        Some(oid) => format!(
            "pgauth sql create-role --method azure --name '{name}' --object-id {oid} --type service"
        ),
        None => format!("pgauth sql create-role --method azure --name '{name}'"),
    };
    let db = settings.dbname.clone().unwrap_or_else(|| user.to_string());
    let (cause, fix) = if message.contains("does not have a valid audience claim") {
        let wanted = message
            .split("for the resource \"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("");
        match AzureCloud::ALL
            .into_iter()
            .find(|c| same_audience(wanted, c.audience()))
        {
            Some(cloud) => (
                "audience",
                format!(
                    "the server is in the {cloud} cloud: set PGAUTH_AZURE_CLOUD={cloud}{}",
                    if state.env.is_set("PGAUTH_AZURE_SCOPE") {
                        " and unset PGAUTH_AZURE_SCOPE"
                    } else {
                        ""
                    }
                ),
            ),
            None => (
                "audience",
                format!(
                    "request tokens for {wanted}: check PGAUTH_AZURE_CLOUD and PGAUTH_AZURE_SCOPE"
                ),
            ),
        }
    } else if message.contains("oid mismatch for role") {
        (
            "oid_mismatch",
            format!(
                "the role {user:?} is mapped to another identity than this token's (oid {}); log in as the role mapped to this identity{}, or have an administrator drop the role and run {}",
                oid.as_deref().unwrap_or("?"),
                derived
                    .as_ref()
                    .filter(|d| *d != user)
                    .map(|d| format!(" (PGUSER={d})"))
                    .unwrap_or_default(),
                create_azure(user)
            ),
        )
    } else if message.contains("cannot generate AAD_AUTH_TOKENTYPE_APP_USER") {
        (
            "token_type",
            format!(
                "the role {user:?} belongs to a user, but this token is an application's (managed identity or service principal); set PGUSER to the role of this identity{}, or create one: {}",
                derived
                    .as_ref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default(),
                create_azure(derived.as_deref().unwrap_or("NAME"))
            ),
        )
    } else if message.contains("has expired") || message.contains("not yet valid") {
        (
            "clock",
            "the token's time window and the server's clock disagree; check this machine's clock (timedatectl) and fetch a new token (pgauth doctor always fetches one)".to_string(),
        )
    } else if message.contains("tenant that is not associated") {
        (
            "tenant",
            "the identity belongs to another Entra tenant than the server; use an identity of the server's tenant (AZURE_TENANT_ID for workload identity and client secrets)".to_string(),
        )
    } else if message.contains("invalid format") || message.contains("validating the access token")
    {
        (
            "token_rejected",
            "the server could not validate the token: it must be an Entra access token exactly as issued, from the server's tenant; check PGAUTH_AZURE_CREDENTIAL and that nothing rewrites PGPASSWORD".to_string(),
        )
    } else if message.contains("PAM authentication failed") {
        (
            "iam_rejected",
            format!(
                "RDS refused the IAM token; check in this order: the role {user:?} exists and is granted rds_iam ({}), IAM authentication is enabled on the instance, the IAM policy allows rds-db:connect on dbuser:<resource id>/{user}, and the token is signed for the endpoint name RDS knows (PGHOST; through a tunnel, the tunnel's address goes in PGHOSTADDR)",
                format_args!("pgauth sql create-role --method aws --name {user}")
            ),
        )
    } else if message.contains("password authentication failed") && state.method.is_token() {
        let fix = match state.method {
            AuthMethod::Azure => format!(
                "no role {user:?} is mapped to this identity (a role not created by pgaadauth_create_principal checks the token as an ordinary password and fails this way); an administrator runs: {}",
                create_azure(user)
            ),
            _ => format!(
                "no role {user:?} uses IAM authentication (IAM applies only to members of rds_iam); an administrator runs: pgauth sql create-role --method aws --name {user}"
            ),
        };
        ("unmapped_identity", fix)
    } else if message.contains("no pg_hba.conf entry") {
        (
            "hba",
            "the server's pg_hba.conf has no entry for this connection; on a managed server check that TLS is used and the firewall allows this client".to_string(),
        )
    } else if code == "3D000" {
        (
            "database",
            format!("the database {db:?} does not exist; set PGDATABASE to an existing one"),
        )
    } else {
        (
            "server",
            "see the server's message above and docs/troubleshooting.md".to_string(),
        )
    };
    failure(said, fix).data(json!({
        "severity": severity,
        "sqlstate": code,
        "message": message,
        "cause": cause,
        "user": user,
    }))
}

async fn step_current_user(state: &mut State<'_>) -> Result<Outcome, Failure> {
    let client = state.client.as_ref().expect("login step passed");
    let expected = state.user.clone().unwrap_or_default();
    let row = client
        .query_one(
            "SELECT current_user::text, session_user::text, current_database()::text, current_setting('server_version')",
            &[],
        )
        .await
        .map_err(|e| failure(format!("the query failed: {}", chain_text(&e)), "check the server's log"))?;
    let current: String = row.get(0);
    let session: String = row.get(1);
    let database: String = row.get(2);
    let version: String = row.get(3);
    let data = json!({"current_user": current, "session_user": session, "database": database, "server_version": version});
    if current != expected {
        return Err(failure(
            format!("current_user is {current:?}, expected {expected:?}"),
            "something between this client and the server (a pooler's user mapping, a login trigger or ALTER ROLE ... SET ROLE) changes the user; check it",
        )
        .data(data));
    }
    Ok(Outcome::ok(format!(
        "{current} (session_user {session}), database {database}, PostgreSQL {version}"
    ))
    .data(data))
}

/// The most role names the roles step reads and shows.
pub const MAX_ROLES: i64 = 50;

async fn step_roles(state: &mut State<'_>) -> Result<Outcome, Failure> {
    let client = state.client.as_ref().expect("login step passed");
    let query_failed = |e: cloud_pg_auth::tokio_postgres::Error| {
        failure(
            format!("the query failed: {}", chain_text(&e)),
            "check the server's log",
        )
    };
    // A role can be a member of thousands of roles: ask for at most MAX_ROLES names (plus
    // the total), so neither memory nor the report grows with the server's catalogue.
    // rds_iam is listed first, as the AWS check below looks for it among them.
    let rows = client
        .query(
            "SELECT r.rolname::text, count(*) OVER () FROM pg_catalog.pg_roles r \
             WHERE r.rolname <> current_user AND pg_catalog.pg_has_role(current_user, r.oid, 'MEMBER') \
             ORDER BY r.rolname <> 'rds_iam', 1 LIMIT $1",
            &[&MAX_ROLES],
        )
        .await
        .map_err(query_failed)?;
    let total: i64 = rows.first().map_or(0, |r| r.get(1));
    let roles: Vec<String> = rows
        .iter()
        .take(MAX_ROLES as usize)
        .map(|r| r.get(0))
        .collect();
    let row = client
        .query_one(
            "SELECT has_database_privilege(current_database(), 'CONNECT'), \
             has_schema_privilege('public', 'USAGE'), has_schema_privilege('public', 'CREATE'), \
             (SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
              WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') AND has_table_privilege(c.oid, 'SELECT')), \
             (SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
              WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm'))",
            &[],
        )
        .await
        .map_err(query_failed)?;
    let (connect, usage, create): (bool, bool, bool) = (row.get(0), row.get(1), row.get(2));
    let (readable, tables): (i64, i64) = (row.get(3), row.get(4));
    let user = state.user.clone().unwrap_or_default();
    let data = json!({
        "member_of": roles,
        "member_of_count": total,
        "connect": connect,
        "schema_public_usage": usage,
        "schema_public_create": create,
        "tables_readable": readable,
        "tables": tables,
    });
    let yes = |b: bool| if b { "yes" } else { "no" };
    let privileges = format!(
        "in this database: CONNECT {}, schema public USAGE {} CREATE {}, SELECT on {readable} of {tables} tables",
        yes(connect),
        yes(usage),
        yes(create)
    );
    let member = if roles.is_empty() {
        "member of no other role".to_string()
    } else if total > roles.len() as i64 {
        format!(
            "member of {} and {} more",
            roles.join(", "),
            total - roles.len() as i64
        )
    } else {
        format!("member of {}", roles.join(", "))
    };
    if state.method == AuthMethod::Aws && !roles.iter().any(|r| r == "rds_iam") {
        return Err(failure(
            format!("{user} is not a member of rds_iam ({member})"),
            format!("an administrator runs: GRANT rds_iam TO \"{user}\";"),
        )
        .data(data));
    }
    let mut outcome = Outcome::ok(format!("{member}; {privileges}")).data(data);
    if !usage {
        outcome = outcome.detail(format!(
            "warning: no USAGE on schema public: the application cannot see its tables; an administrator runs: pgauth sql create-role ... --grant read|write|owner (or GRANT USAGE ON SCHEMA public TO \"{user}\")"
        ));
    }
    Ok(outcome)
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

fn token_failure(error: &Error, method: AuthMethod) -> Failure {
    let Error::Token(token) = error else {
        return error_failure(error, "see the message above");
    };
    let fix = match (method, token.kind()) {
        (_, TokenErrorKind::Throttled) => {
            "the identity endpoint asks to slow down; wait a little and run again".to_string()
        }
        (AuthMethod::Azure, TokenErrorKind::Rejected) => "the identity endpoint refused: check that the identity exists and is assigned to this resource (AZURE_CLIENT_ID names a user-assigned identity attached to it), the tenant and client id, and for workload identity the federated credential's issuer and subject".to_string(),
        (AuthMethod::Azure, TokenErrorKind::Transient) => "the identity endpoint did not answer properly: check that this runs where the identity exists (IDENTITY_ENDPOINT on App Service / Container Apps; PGAUTH_AZURE_MANAGED_IDENTITY=1 on a VM), or on a laptop run az login".to_string(),
        (AuthMethod::Aws, _) => "no usable AWS credentials: check AWS_PROFILE (aws sso login), the instance or task role, or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY".to_string(),
        _ => "see the message above".to_string(),
    };
    failure(token.chain_text(), fix).data(json!({"origin": token.origin()}))
}
