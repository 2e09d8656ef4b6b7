//! The doctor's TLS step: TCP connect, PostgreSQL's SSLRequest, a rustls handshake with the
//! same client config the library would use, and the names in the server's certificate.
//! No startup packet and no password are sent: the probe ends after the handshake.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Length 8, then the SSLRequest code 80877103 (1234 << 16 | 5679).
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// What a successful handshake showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsReport {
    /// `TLSv1_3` and so on.
    pub protocol: String,
    /// The negotiated cipher suite.
    pub cipher_suite: String,
    /// The server certificate's names.
    pub certificate: CertNames,
}

/// Why the probe failed.
#[derive(Debug)]
pub(crate) enum ProbeError {
    /// No TCP connection.
    Connect(std::io::Error),
    /// The server answered `N` to SSLRequest: it does not offer TLS.
    NoTls,
    /// The server answered something other than `S` or `N`.
    Unexpected(u8),
    /// The TLS handshake failed. `certificate` holds the names of the certificate the server
    /// presented, when a second, unverified handshake could read them.
    Handshake {
        /// The rustls error, when there is one.
        error: Option<rustls::Error>,
        /// The I/O error text otherwise.
        text: String,
        /// The certificate's names.
        certificate: Option<CertNames>,
    },
    /// No answer in time.
    Timeout,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "cannot connect: {e}"),
            Self::NoTls => f.write_str(
                "the server does not offer TLS (it answered 'N' to the SSLRequest, as PostgreSQL does with ssl=off)",
            ),
            Self::Unexpected(b) => write!(
                f,
                "the server answered the SSLRequest with {:?} instead of 'S' or 'N'; is this a PostgreSQL server?",
                char::from(*b)
            ),
            Self::Handshake { text, .. } => write!(f, "the TLS handshake failed: {text}"),
            Self::Timeout => f.write_str("no answer within the time allowed"),
        }
    }
}

/// Where the probe goes: `host` is the name the certificate is checked against; `hostaddr`
/// (libpq's), when set, is the address dialled instead of resolving `host`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    /// The server's name (or address), as in `PGHOST`.
    pub host: &'a str,
    /// `PGHOSTADDR`.
    pub hostaddr: Option<IpAddr>,
    /// The port.
    pub port: u16,
}

/// Connects to `target`, asks for TLS and completes a handshake with `config`.
pub(crate) async fn probe(
    target: Target<'_>,
    config: Arc<ClientConfig>,
    insecure_names: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<TlsReport, ProbeError> {
    match tokio::time::timeout(timeout, handshake(target, config)).await {
        Err(_) => Err(ProbeError::Timeout),
        Ok(Ok(report)) => Ok(report),
        Ok(Err(ProbeError::Handshake { error, text, .. })) => {
            // Read the names with a second handshake that checks nothing, so the message can
            // say which names the certificate does hold. Nothing is sent over it.
            let certificate =
                match tokio::time::timeout(timeout, handshake(target, insecure_names)).await {
                    Ok(Ok(report)) => Some(report.certificate),
                    _ => None,
                };
            Err(ProbeError::Handshake {
                error,
                text,
                certificate,
            })
        }
        Ok(Err(other)) => Err(other),
    }
}

async fn handshake(target: Target<'_>, config: Arc<ClientConfig>) -> Result<TlsReport, ProbeError> {
    let Target {
        host,
        hostaddr,
        port,
    } = target;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = match hostaddr {
        Some(addr) => TcpStream::connect((addr, port)).await,
        None => TcpStream::connect((bare, port)).await,
    };
    let mut tcp = tcp.map_err(ProbeError::Connect)?;
    tcp.write_all(&SSL_REQUEST)
        .await
        .map_err(ProbeError::Connect)?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer)
        .await
        .map_err(ProbeError::Connect)?;
    match answer[0] {
        b'S' => {}
        b'N' => return Err(ProbeError::NoTls),
        other => return Err(ProbeError::Unexpected(other)),
    }
    let name = cloud_pg_auth::tls::server_name(host).map_err(|e| ProbeError::Handshake {
        error: None,
        text: cloud_pg_auth::engine::chain_text(&e),
        certificate: None,
    })?;
    let stream = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            let error = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .cloned();
            ProbeError::Handshake {
                error,
                text: e.to_string(),
                certificate: None,
            }
        })?;
    let (_, conn) = stream.get_ref();
    let protocol = conn
        .protocol_version()
        .map(|v| format!("{v:?}").replace('_', "."))
        .unwrap_or_default();
    let cipher_suite = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()))
        .unwrap_or_default();
    let certificate = conn
        .peer_certificates()
        .and_then(|certs| certs.first())
        .map(cert_names)
        .unwrap_or_default();
    Ok(TlsReport {
        protocol,
        cipher_suite,
        certificate,
    })
}

/// The names a certificate is for, and its expiry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CertNames {
    /// Subject alternative names: DNS names and IP addresses.
    pub alt_names: Vec<String>,
    /// The subject's common name.
    pub common_name: Option<String>,
    /// `notAfter`, as `YYYY-MM-DDTHH:MM:SSZ`.
    pub not_after: Option<String>,
}

impl CertNames {
    /// The names to show: the alternative names, else the common name.
    #[must_use]
    pub(crate) fn shown(&self) -> Vec<String> {
        if self.alt_names.is_empty() {
            self.common_name.iter().cloned().collect()
        } else {
            self.alt_names.clone()
        }
    }
}

/// Reads the names from a DER certificate; unknown shapes give empty fields, never a panic.
#[must_use]
pub(crate) fn cert_names(cert: &CertificateDer<'_>) -> CertNames {
    parse_names(cert.as_ref()).unwrap_or_default()
}

/// One DER element: tag, contents, and the rest of the input.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];

fn parse_names(der: &[u8]) -> Option<CertNames> {
    let (SEQUENCE, cert, _) = tlv(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = tlv(cert)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xa0 {
        rest = after; // version
    }
    let (_, _, rest) = tlv(rest)?; // serial
    let (_, _, rest) = tlv(rest)?; // signature algorithm
    let (_, _, rest) = tlv(rest)?; // issuer
    let (_, validity, rest) = tlv(rest)?;
    let (_, subject, mut rest) = tlv(rest)?;
    let mut names = CertNames {
        common_name: common_name(subject),
        not_after: not_after(validity),
        ..CertNames::default()
    };
    (_, _, rest) = tlv(rest)?; // subject public key info
    while let Some((tag, contents, after)) = tlv(rest) {
        rest = after;
        if tag != 0xa3 {
            continue;
        }
        let (SEQUENCE, mut extensions, _) = tlv(contents)? else {
            return Some(names);
        };
        while let Some((_, extension, after)) = tlv(extensions) {
            extensions = after;
            let (0x06, oid, mut fields) = tlv(extension)? else {
                continue;
            };
            if oid != OID_SAN {
                continue;
            }
            // An optional `critical` BOOLEAN precedes the OCTET STRING.
            let (mut tag, mut value, after) = tlv(fields)?;
            if tag == 0x01 {
                fields = after;
                (tag, value, _) = tlv(fields)?;
            }
            if tag != 0x04 {
                continue;
            }
            let (SEQUENCE, mut general_names, _) = tlv(value)? else {
                continue;
            };
            while let Some((tag, name, after)) = tlv(general_names) {
                general_names = after;
                match tag {
                    0x82 => names
                        .alt_names
                        .push(String::from_utf8_lossy(name).into_owned()),
                    0x87 => {
                        if let Ok(v4) = <[u8; 4]>::try_from(name) {
                            names.alt_names.push(Ipv4Addr::from(v4).to_string());
                        } else if let Ok(v6) = <[u8; 16]>::try_from(name) {
                            names.alt_names.push(Ipv6Addr::from(v6).to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Some(names)
}

fn common_name(mut name: &[u8]) -> Option<String> {
    while let Some((_, set, after)) = tlv(name) {
        name = after;
        let (SEQUENCE, attribute, _) = tlv(set)? else {
            continue;
        };
        let (0x06, oid, value) = tlv(attribute)? else {
            continue;
        };
        if oid == OID_CN {
            let (_, text, _) = tlv(value)?;
            return Some(String::from_utf8_lossy(text).into_owned());
        }
    }
    None
}

fn not_after(validity: &[u8]) -> Option<String> {
    let (_, _, rest) = tlv(validity)?;
    let (tag, time, _) = tlv(rest)?;
    let time = std::str::from_utf8(time).ok()?;
    let full = match tag {
        // UTCTime: YYMMDDHHMMSSZ, years 1950 to 2049.
        0x17 if time.len() == 13 => {
            let yy: u32 = time[..2].parse().ok()?;
            format!("{}{time}", if yy >= 50 { "19" } else { "20" })
        }
        0x18 if time.len() == 15 => time.to_string(),
        _ => return None,
    };
    Some(format!(
        "{}-{}-{}T{}:{}:{}Z",
        &full[..4],
        &full[4..6],
        &full[6..8],
        &full[8..10],
        &full[10..12],
        &full[12..14]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &[u8], expected: CertNames) {
        assert_eq!(
            parse_names(input).unwrap_or_default(),
            expected,
            "{input:?}"
        );
    }

    #[test]
    fn malformed_certificates_give_no_names() {
        check(&[], CertNames::default());
        check(&[0x30], CertNames::default());
        check(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], CertNames::default());
        check(&[0x30, 0x03, 0x30, 0x01, 0x00], CertNames::default());
        check(&[0x04, 0x00], CertNames::default());
    }

    #[test]
    fn certificate_names_are_read_from_der() {
        use rustls_pki_types::pem::PemObject as _;
        let ca = cloud_pg_auth_testkit::tls::TestCa::generate();
        let (cert_pem, _) = ca
            .try_issue(&["db.example.internal", "localhost", "127.0.0.1", "::1"])
            .unwrap();
        let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        let names = cert_names(&der);
        assert_eq!(
            names.alt_names,
            ["db.example.internal", "localhost", "127.0.0.1", "::1"]
        );
        assert!(names.not_after.is_some());
    }
}
