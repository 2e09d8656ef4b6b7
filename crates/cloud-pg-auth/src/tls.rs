//! TLS with rustls and the aws-lc-rs provider, installed explicitly per config.
//!
//! libpq's sslmode meanings, with two hardenings for token methods, which never send their
//! token to a server whose name is not verified: `require` checks the certificate like
//! `verify-full` (Azure's and AWS's own guidance), and `verify-ca` (chain only) is accepted
//! only when the trusted roots come from a file the user named, never from the public roots,
//! where anyone with any publicly trusted certificate would pass.

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::error::Error;
use crate::settings::{RootCerts, Settings, SslMode};

/// The one crypto provider of this crate. Configs are built with it explicitly, so a process
/// that links both `ring` and `aws-lc-rs` (through other crates) never panics here.
#[must_use]
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Installs this crate's provider as the process default if none is installed yet, for
/// libraries (sqlx, reqwest) that build rustls configs with `ClientConfig::builder()`.
pub fn install_default_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The TLS decision for one server: whether to use TLS and how to check the certificate.
#[derive(Clone)]
pub struct TlsPolicy {
    mode: SslMode,
    check: CertCheck,
    config: Option<Arc<ClientConfig>>,
}

impl fmt::Debug for TlsPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsPolicy")
            .field("mode", &self.mode)
            .field("check", &self.check)
            .field("tls", &self.config.is_some())
            .finish()
    }
}

/// How the server certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertCheck {
    /// Chain and host name.
    Full,
    /// Chain only (`verify-ca`).
    ChainOnly,
    /// Nothing (`prefer`/`require` for passwords, or the loopback opt-in).
    None,
}

impl TlsPolicy {
    /// The policy for `settings` (which must have passed [`Settings::validate`]).
    pub fn from_settings(settings: &Settings) -> Result<Self, Error> {
        let method = settings.resolved_method()?;
        let mode = settings.effective_ssl_mode()?;
        // PostgreSQL never speaks TLS over a Unix socket; the socket is local.
        let unix_socket = settings
            .host
            .as_deref()
            .is_some_and(crate::net::is_unix_socket_dir);
        if mode == SslMode::Disable || unix_socket {
            return Ok(Self {
                mode: SslMode::Disable,
                check: CertCheck::None,
                config: None,
            });
        }
        let root_file = matches!(settings.root_certs, RootCerts::File(_));
        let check = match mode {
            SslMode::Disable => unreachable!("handled above"),
            SslMode::VerifyFull => CertCheck::Full,
            SslMode::VerifyCa if method.is_token() && !root_file => {
                return Err(verify_ca_needs_root_file().into());
            }
            SslMode::VerifyCa => CertCheck::ChainOnly,
            SslMode::Require | SslMode::Prefer if method.is_token() => {
                if settings.insecure_loopback && settings.host_is_loopback() {
                    CertCheck::None
                } else {
                    CertCheck::Full
                }
            }
            // A root file given with `require` means verify-ca in libpq.
            SslMode::Require if root_file => CertCheck::ChainOnly,
            SslMode::Require | SslMode::Prefer => CertCheck::None,
        };
        let config = client_config(&settings.root_certs, check)?;
        Ok(Self {
            mode,
            check,
            config: Some(config),
        })
    }

    /// How the server certificate is checked ([`CertCheck::None`] also without TLS).
    #[must_use]
    pub fn check(&self) -> CertCheck {
        self.check
    }

    /// The sslmode in force.
    #[must_use]
    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// The rustls config, or `None` for `disable`.
    #[must_use]
    pub fn client_config(&self) -> Option<&Arc<ClientConfig>> {
        self.config.as_ref()
    }
}

/// Loads root certificates.
pub fn root_store(roots: &RootCerts) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    match roots {
        RootCerts::Bundled => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        RootCerts::System => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = store.add(cert);
            }
            if store.is_empty() {
                return Err(tls_error(
                    "sslrootcert=system found no certificates in the operating system's store; give a PEM file in PGSSLROOTCERT",
                    None,
                ));
            }
        }
        RootCerts::File(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| {
                    tls_error(
                        &format!(
                            "cannot read PGSSLROOTCERT {}; give a PEM file of CA certificates",
                            path.display()
                        ),
                        Some(Box::new(e)),
                    )
                })?;
            for cert in certs {
                store.add(cert).map_err(|e| {
                    tls_error(
                        &format!(
                            "PGSSLROOTCERT {} holds a certificate rustls cannot use",
                            path.display()
                        ),
                        Some(Box::new(e)),
                    )
                })?;
            }
            if store.is_empty() {
                return Err(tls_error(
                    &format!("PGSSLROOTCERT {} holds no PEM certificate", path.display()),
                    None,
                ));
            }
        }
    }
    Ok(store)
}

/// A rustls client config for the given roots and check.
pub fn client_config(roots: &RootCerts, check: CertCheck) -> Result<Arc<ClientConfig>, Error> {
    let provider = crypto_provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("no usable TLS protocol version", Some(Box::new(e))))?;
    let config = match check {
        CertCheck::Full => builder
            .with_root_certificates(root_store(roots)?)
            .with_no_client_auth(),
        CertCheck::ChainOnly => {
            let inner = WebPkiServerVerifier::builder_with_provider(
                Arc::new(root_store(roots)?),
                Arc::clone(&provider),
            )
            .build()
            .map_err(|e| tls_error("cannot build the certificate verifier", Some(Box::new(e))))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { inner }))
                .with_no_client_auth()
        }
        CertCheck::None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCheck {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn tls_error(message: &str, source: Option<crate::BoxError>) -> Error {
    Error::Tls {
        message: message.to_string(),
        source,
    }
}

/// The refusal of `verify-ca` without a root file, for token methods.
pub(crate) fn verify_ca_needs_root_file() -> crate::ConfigError {
    crate::ConfigError::new(
        "PGSSLMODE",
        "verify-ca checks only the certificate chain, so with the public roots anyone holding any publicly trusted certificate would receive the token; use verify-full, or set PGSSLROOTCERT to the CA file that signs this server (for example a Cloud SQL instance's server CA). To reach a private endpoint by IP or through a tunnel, keep the certificate's name in PGHOST and put the address in PGHOSTADDR",
    )
}

/// An explanation of a certificate failure found anywhere in `error`'s chain (a rustls
/// certificate error, possibly inside an I/O error), with what to do about it.
#[must_use]
pub fn certificate_hint(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(cause) = next {
        let tls = cause.downcast_ref::<rustls::Error>().or_else(|| {
            cause
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls::Error::InvalidCertificate(cert)) = tls {
            return Some(explain_certificate_error(cert));
        }
        next = cause.source();
    }
    None
}

fn explain_certificate_error(error: &CertificateError) -> String {
    match error {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!(
                "the server's certificate does not name this host ({error:?}); connect by a name the certificate holds; to reach the server by IP address or through a tunnel, keep that name in PGHOST (or the URL's host) and put the address to dial in PGHOSTADDR (hostaddr), so the certificate is still verified"
            )
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => format!(
            "the server's certificate has expired ({error:?}); check the server's certificate and this machine's clock"
        ),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => format!(
            "the server's certificate is not valid yet ({error:?}); check this machine's clock"
        ),
        _ => format!(
            "the server's certificate is not trusted ({error:?}); set PGSSLROOTCERT to the CA bundle that signs it (for RDS, the global bundle from AWS)"
        ),
    }
}

/// The server name to check, for SNI and verification (IP addresses get no SNI).
pub fn server_name(host: &str) -> Result<ServerName<'static>, Error> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| {
        tls_error(
            &format!("{host:?} is not a valid TLS server name"),
            Some(Box::new(e)),
        )
    })
}

/// `verify-ca`: the chain must be valid; the name may differ.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// libpq's `prefer`/`require` without a root file: encryption without authentication.
#[derive(Debug)]
struct NoCheck {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(feature = "tokio-postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio-postgres")))]
pub use pg::{MakeRustls, Stream};

#[cfg(feature = "tokio-postgres")]
mod pg {
    use std::future::Future;
    use std::io;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use rustls::ClientConfig;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
    use tokio_rustls::TlsConnector;
    use tokio_rustls::client::TlsStream as RustlsStream;

    /// A tokio-postgres TLS connector over rustls.
    #[derive(Clone)]
    pub struct MakeRustls {
        config: Arc<ClientConfig>,
    }

    impl std::fmt::Debug for MakeRustls {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("MakeRustls").finish_non_exhaustive()
        }
    }

    impl MakeRustls {
        /// A connector using `config`.
        #[must_use]
        pub fn new(config: Arc<ClientConfig>) -> Self {
            Self { config }
        }
    }

    impl<S> MakeTlsConnect<S> for MakeRustls
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        type Stream = Stream<S>;
        type TlsConnect = Connect;
        type Error = crate::Error;

        fn make_tls_connect(&mut self, domain: &str) -> Result<Connect, crate::Error> {
            Ok(Connect {
                config: Arc::clone(&self.config),
                name: super::server_name(domain)?,
            })
        }
    }

    /// One TLS handshake.
    #[derive(Debug)]
    pub struct Connect {
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    }

    impl<S> TlsConnect<S> for Connect
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        type Stream = Stream<S>;
        type Error = io::Error;
        type Future = Pin<Box<dyn Future<Output = io::Result<Stream<S>>> + Send>>;

        fn connect(self, stream: S) -> Self::Future {
            Box::pin(async move {
                let stream = TlsConnector::from(self.config)
                    .connect(self.name, stream)
                    .await?;
                Ok(Stream(Box::new(stream)))
            })
        }
    }

    /// A TLS stream to the server.
    pub struct Stream<S>(Box<RustlsStream<S>>);

    impl<S> std::fmt::Debug for Stream<S> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Stream").finish_non_exhaustive()
        }
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Stream<S> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut *self.0).poll_read(cx, buf)
        }
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Stream<S> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut *self.0).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut *self.0).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut *self.0).poll_shutdown(cx)
        }
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for Stream<S> {
        fn channel_binding(&self) -> ChannelBinding {
            // Cloud token logins use cleartext password auth, where channel binding does not
            // apply; SCRAM password roles fall back to no binding (tokio-postgres `Prefer`).
            ChannelBinding::none()
        }
    }
}
