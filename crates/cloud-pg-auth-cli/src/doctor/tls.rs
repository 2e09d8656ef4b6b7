//! The TLS step: the handshake with the server, the certificate, and what was checked.

use std::time::Duration;

use cloud_pg_auth::azure::cloud_for_host;
use cloud_pg_auth::tls::{CertCheck, TlsPolicy};
use cloud_pg_auth::{AuthMethod, RootCerts, Settings, SslMode};
use serde_json::json;

use super::credential::same_audience;
use super::{Failure, State, StepFinding, error_failure, failure, resolved_settings};
use crate::tlsprobe::{self, ProbeError};

pub(super) async fn step_tls(state: &mut State<'_>) -> Result<StepFinding, Failure> {
    let settings = resolved_settings(state).clone();
    let host = settings.get_host().unwrap_or_default().to_string();
    let port = settings.get_port();
    let policy = TlsPolicy::from_settings(&settings)
        .map_err(|e| error_failure(&e, "check PGSSLROOTCERT: a PEM file of CA certificates"))?;
    let Some(config) = policy.client_config().cloned() else {
        if settings.host_is_unix_socket() {
            return Ok(StepFinding::skipped(format!(
                "{host} is a Unix socket directory: local, no TLS (PostgreSQL does not use TLS over Unix sockets)"
            )));
        }
        return Ok(StepFinding::skipped(format!(
            "sslmode={}: no TLS; the password goes in clear to the loopback host {host} (PGAUTH_INSECURE_LOOPBACK=1)",
            policy.mode().as_str()
        )));
    };
    let check = describe_check(&settings, state.method, policy.mode());
    let insecure = cloud_pg_auth::tls::client_config(&RootCerts::Bundled, CertCheck::None)
        .map_err(|e| error_failure(&e, "report this as a bug"))?;
    let timeout = settings
        .get_connect_timeout()
        .unwrap_or(Duration::from_secs(10));
    let target = tlsprobe::Target {
        host: &host,
        hostaddr: settings.get_hostaddr(),
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
            Ok(StepFinding::ok(summary).data(data))
        }
        Err(error) => Err(tls_failure(&error, &settings)),
    }
}

fn describe_check(settings: &Settings, method: AuthMethod, mode: SslMode) -> String {
    let roots = match settings.get_root_certs() {
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
            if settings.get_insecure_loopback() && settings.host_is_loopback() {
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
    let host = settings.get_host().unwrap_or_default();
    let port = settings.get_port();
    let at = match settings.get_hostaddr() {
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
                    _ => match settings.get_root_certs() {
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
