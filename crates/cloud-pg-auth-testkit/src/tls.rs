//! A throw-away certificate authority and rustls configurations built on it.
//!
//! Every rustls configuration here is built with an explicit aws-lc-rs provider, so nothing
//! depends on a process-wide default provider being installed.

use std::fmt;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

/// The crypto provider every configuration of the testkit uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A certificate authority generated on the fly, for tests.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl fmt::Debug for TestCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// Generates a new CA (ECDSA P-256 key, self-signed).
    ///
    /// # Panics
    /// Only if the crypto library cannot generate a key, which does not happen in practice.
    pub fn generate() -> TestCa {
        Self::try_generate().expect("generate a test certificate authority")
    }

    fn try_generate() -> Result<TestCa, Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            format!("pgauth-emulator test CA {}", &crate::util::uuid()[..8]),
        );
        dn.push(DnType::OrganizationName, "cloud-pg-auth-testkit");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        Ok(TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate, PEM-encoded (what `PGSSLROOTCERT` points to).
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// Issues a server certificate for `names` (DNS names, or IP addresses which become IP
    /// SANs). Returns `(certificate PEM, private key PEM)`.
    ///
    /// # Panics
    /// If a name is neither a valid DNS name nor an IP address.
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        self.try_issue(names).expect("issue a test certificate")
    }

    /// Like [`TestCa::issue`], returning an error for invalid names.
    pub fn try_issue(&self, names: &[&str]) -> Result<(String, String), Error> {
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("localhost"),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// Parses every certificate of a PEM bundle.
pub fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::Tls(format!("bad certificate pem: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Tls("no certificate in pem".into()));
    }
    Ok(certs)
}

/// A rustls server configuration for `cert_pem`/`key_pem`, offering the given ALPN protocols.
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, Error> {
    let certs = parse_certs(cert_pem)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| Error::Tls(format!("bad private key pem: {e}")))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// A rustls client configuration trusting only the CA certificate(s) in `ca_pem`.
pub fn client_config(ca_pem: &str) -> Result<Arc<rustls::ClientConfig>, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in parse_certs(ca_pem)? {
        roots.add(cert)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificate_parses_into_configs() {
        let ca = TestCa::generate();
        let (cert, key) = ca.issue(&["localhost", "127.0.0.1"]);
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        server_config(&cert, &key, &[b"postgresql"]).unwrap();
        client_config(&ca.cert_pem()).unwrap();
    }
}
