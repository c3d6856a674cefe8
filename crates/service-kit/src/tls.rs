//! TLS for the clients that use rustls: PostgreSQL, ClickHouse over HTTPS and
//! Redis over TLS (`rediss://`). Kafka's TLS and SASL are librdkafka's own
//! (OpenSSL), set through `[kafka.properties]`.
//!
//! Every client trusts either the CA certificates of one PEM file (its
//! `ca_file` key: a private CA, a managed service's bundle) or, when none is
//! configured, the system's store (`/etc/ssl/certs`, or `SSL_CERT_FILE` /
//! `SSL_CERT_DIR`). A configured file replaces the system store, so a server
//! whose certificate another CA signed is refused. The crypto provider is
//! rustls's `aws-lc-rs` everywhere (rustls's default, with
//! post-quantum key exchange).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject},
};

/// Why a TLS configuration could not be built; names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read CA certificates from {path} ({key}): {reason}")]
    CaFile { key: String, path: PathBuf, reason: String },
    #[error("cannot read the client certificate or key {path} ({key}): {reason}")]
    ClientIdentity { key: String, path: PathBuf, reason: String },
    #[error(
        "the system certificate store has no usable CA certificate ({0}); set a CA file (ca_file) or install \
         ca-certificates"
    )]
    NoSystemRoots(String),
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// How a client checks the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// The chain must lead to a trusted CA and the certificate must name the
    /// host connected to (PostgreSQL `verify-full`; always for ClickHouse and Redis).
    Full,
    /// The chain must lead to a trusted CA; the name is not checked
    /// (PostgreSQL `verify-ca`).
    ChainOnly,
    /// Encrypted, but any certificate is accepted (PostgreSQL `require` and
    /// `prefer` without a CA, as libpq does). The handshake's signatures are
    /// still checked, so the session is with the certificate's key holder.
    Nothing,
}

/// Where a client's trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The system's store.
    System,
    /// Only the certificates of this PEM file; `key` is the configuration
    /// key that named it, for error messages.
    File { path: PathBuf, key: String },
}

impl Roots {
    /// `File` for `Some(path)`, else `System`.
    pub fn from_option(path: Option<&Path>, key: &str) -> Self {
        match path {
            Some(path) => Roots::File { path: path.to_path_buf(), key: key.to_owned() },
            None => Roots::System,
        }
    }

    /// Loads the certificates.
    pub fn load(&self) -> Result<RootCertStore, TlsError> {
        let mut store = RootCertStore::empty();
        match self {
            Roots::File { path, key } => {
                let fail = |reason: String| TlsError::CaFile { key: key.clone(), path: path.clone(), reason };
                let certs = pem_certificates(path).map_err(fail)?;
                if certs.is_empty() {
                    return Err(fail("no PEM certificate in the file".into()));
                }
                for cert in certs {
                    store.add(cert).map_err(|e| fail(e.to_string()))?;
                }
            }
            Roots::System => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _ignored) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
                    return Err(TlsError::NoSystemRoots(if errors.is_empty() {
                        "no certificate found".into()
                    } else {
                        errors.join("; ")
                    }));
                }
            }
        }
        Ok(store)
    }
}

/// Every certificate of a PEM file; the reason as text when it cannot be read.
fn pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path).map_err(|e| e.to_string())?.collect::<Result<_, _>>().map_err(|e| e.to_string())
}

/// A client certificate and key (PEM files) presented to servers that ask for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The configuration keys that named them, for error messages.
    pub keys: (String, String),
}

/// The crypto provider of every rustls client here.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A rustls client configuration trusting `roots`, checking as `verify` says.
/// `roots` is not read for [`Verify::Nothing`].
pub fn client_config(
    roots: &Roots,
    verify: Verify,
    identity: Option<&ClientIdentity>,
) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match verify {
        Verify::Full => builder.with_root_certificates(roots.load()?),
        Verify::ChainOnly => {
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots.load()?), provider)
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(ChainOnly(verifier)))
        }
        Verify::Nothing => builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))),
    };
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some(identity) => {
            let fail = |path: &Path, key: &str, reason: String| TlsError::ClientIdentity {
                key: key.to_owned(),
                path: path.to_path_buf(),
                reason,
            };
            let certs =
                pem_certificates(&identity.cert).map_err(|reason| fail(&identity.cert, &identity.keys.0, reason))?;
            let key = PrivateKeyDer::from_pem_file(&identity.key)
                .map_err(|e| fail(&identity.key, &identity.keys.1, e.to_string()))?;
            Ok(builder.with_client_auth_cert(certs, key)?)
        }
    }
}

/// `verify-ca`: the web PKI checks without the name check.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError, Error};
        // The verifier checks the chain first and the name last, so a name
        // error means the chain was good.
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(Error::InvalidCertificate(
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
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `require` / `prefer` without a CA: any certificate, signatures still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// PostgreSQL over rustls: `sslmode` (libpq's meaning) and `sslrootcert`,
/// `sslcert`, `sslkey` in the URL, besides `postgres.ca_file`.
pub mod postgres {
    use std::{
        future::Future,
        io,
        pin::Pin,
        sync::Arc,
        task::{Context, Poll},
    };

    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

    use super::*;

    /// libpq's `sslmode` values.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum SslMode {
        /// Plain TCP only.
        Disable,
        /// TLS when the server offers it (libpq's default); `allow` is read as this.
        Prefer,
        /// TLS or no connection.
        Require,
        /// TLS, the chain checked against the CA.
        VerifyCa,
        /// TLS, the chain and the host name checked.
        VerifyFull,
    }

    impl SslMode {
        fn parse(text: &str) -> Result<Self, String> {
            Ok(match text {
                "disable" => SslMode::Disable,
                "allow" | "prefer" => SslMode::Prefer,
                "require" => SslMode::Require,
                "verify-ca" => SslMode::VerifyCa,
                "verify-full" => SslMode::VerifyFull,
                other => {
                    return Err(format!(
                        "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                    ));
                }
            })
        }
    }

    /// The connection settings of a PostgreSQL URL (or `key=value` string),
    /// with the TLS parameters tokio-postgres does not know taken out.
    #[derive(Debug)]
    pub struct Settings {
        pub config: tokio_postgres::Config,
        pub ssl_mode: SslMode,
        pub tls: PgTls,
    }

    /// Reads `url` (`postgres://…?sslmode=verify-full&sslrootcert=/ca.pem`
    /// or `host=… sslmode=…`) and builds its TLS connector. The CA comes
    /// from `sslrootcert` (`system` for the system store) when given, else
    /// from `ca_file`, else the system store. As with libpq, `require` and
    /// `prefer` check no certificate unless a CA is named (then they check
    /// the chain like `verify-ca`); `verify-ca` checks the chain,
    /// `verify-full` the chain and the host name.
    pub fn settings(url: &str, ca_file: Option<&Path>) -> anyhow::Result<Settings> {
        let split = split_tls_params(url);
        let invalid = |e: String| anyhow::anyhow!("invalid postgres url: {e}");
        let ssl_mode = match &split.sslmode {
            Some(mode) => SslMode::parse(mode).map_err(invalid)?,
            None => SslMode::Prefer,
        };
        let mut config: tokio_postgres::Config = split.rest.parse().map_err(|e| invalid(format!("{e}")))?;
        config.ssl_mode(match ssl_mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        let named_ca = match split.sslrootcert.as_deref() {
            Some("system") => Some(Roots::System),
            Some(path) => Some(Roots::File { path: PathBuf::from(path), key: "sslrootcert in postgres.url".into() }),
            None => ca_file.map(|path| Roots::File { path: path.to_path_buf(), key: "postgres.ca_file".into() }),
        };
        let verify = match (ssl_mode, &named_ca) {
            (SslMode::VerifyFull, _) => Verify::Full,
            (SslMode::VerifyCa, _) => Verify::ChainOnly,
            (_, Some(_)) => Verify::ChainOnly,
            (_, None) => Verify::Nothing,
        };
        let identity = match (&split.sslcert, &split.sslkey) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(ClientIdentity {
                cert: cert.into(),
                key: key.into(),
                keys: ("sslcert in postgres.url".into(), "sslkey in postgres.url".into()),
            }),
            _ => return Err(invalid("sslcert and sslkey go together".into())),
        };
        let tls = if ssl_mode == SslMode::Disable {
            PgTls { config: None }
        } else {
            let roots = named_ca.unwrap_or(Roots::System);
            PgTls { config: Some(Arc::new(client_config(&roots, verify, identity.as_ref())?)) }
        };
        Ok(Settings { config, ssl_mode, tls })
    }

    struct Split {
        rest: String,
        sslmode: Option<String>,
        sslrootcert: Option<String>,
        sslcert: Option<String>,
        sslkey: Option<String>,
    }

    /// Takes `sslmode`, `sslrootcert`, `sslcert` and `sslkey` out of a URL's
    /// query or a `key=value` string.
    fn split_tls_params(url: &str) -> Split {
        let mut split = Split { rest: String::new(), sslmode: None, sslrootcert: None, sslcert: None, sslkey: None };
        let mut take = |name: &str, value: String| -> bool {
            let slot = match name {
                "sslmode" => &mut split.sslmode,
                "sslrootcert" => &mut split.sslrootcert,
                "sslcert" => &mut split.sslcert,
                "sslkey" => &mut split.sslkey,
                _ => return false,
            };
            *slot = Some(value);
            true
        };
        let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            match url.split_once('?') {
                None => url.to_owned(),
                Some((head, query)) => {
                    let kept: Vec<&str> = query
                        .split('&')
                        .filter(|pair| match pair.split_once('=') {
                            Some((name, value)) => !take(
                                name,
                                percent_encoding::percent_decode_str(value).decode_utf8_lossy().into_owned(),
                            ),
                            None => true,
                        })
                        .collect();
                    if kept.is_empty() { head.to_owned() } else { format!("{head}?{}", kept.join("&")) }
                }
            }
        } else {
            url.split_whitespace()
                .filter(|pair| match pair.split_once('=') {
                    Some((name, value)) => !take(name, value.trim_matches('\'').to_owned()),
                    None => true,
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        split.rest = rest;
        split
    }

    /// tokio-postgres's TLS over rustls (the `MakeTlsConnect` of a pool).
    #[derive(Clone)]
    pub struct PgTls {
        /// `None` for `sslmode=disable`.
        config: Option<Arc<ClientConfig>>,
    }

    impl std::fmt::Debug for PgTls {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("PgTls").field("enabled", &self.config.is_some()).finish()
        }
    }

    impl<S> MakeTlsConnect<S> for PgTls
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        type Stream = PgTlsStream<S>;
        type TlsConnect = PgTlsConnect;
        type Error = io::Error;

        /// Called for every host, whatever the mode; with `sslmode=disable`
        /// the connector is never used.
        fn make_tls_connect(&mut self, domain: &str) -> Result<PgTlsConnect, io::Error> {
            let name = ServerName::try_from(domain.to_owned())
                .map_err(|e| io::Error::other(format!("cannot check a certificate for host {domain:?}: {e}")))?;
            Ok(PgTlsConnect { config: self.config.clone(), name })
        }
    }

    pub struct PgTlsConnect {
        config: Option<Arc<ClientConfig>>,
        name: ServerName<'static>,
    }

    impl<S> TlsConnect<S> for PgTlsConnect
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        type Stream = PgTlsStream<S>;
        type Error = io::Error;
        type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream<S>>> + Send>>;

        fn connect(self, stream: S) -> Self::Future {
            let Some(config) = self.config else {
                return Box::pin(async { Err(io::Error::other("TLS is off (sslmode=disable)")) });
            };
            let connector = tokio_rustls::TlsConnector::from(config);
            let name = self.name;
            Box::pin(async move {
                let host = name.to_str().into_owned();
                connector.connect(name, stream).await.map(PgTlsStream).map_err(|e| {
                    io::Error::new(e.kind(), format!("TLS handshake with the postgres server {host} failed: {e}"))
                })
            })
        }
    }

    /// A TLS session with a PostgreSQL server.
    pub struct PgTlsStream<S>(tokio_rustls::client::TlsStream<S>);

    impl<S> tokio_postgres::tls::TlsStream for PgTlsStream<S>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        /// No channel binding: SCRAM-SHA-256 without `-PLUS` (the
        /// certificate's hash would depend on its signature algorithm).
        fn channel_binding(&self) -> ChannelBinding {
            ChannelBinding::none()
        }
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for PgTlsStream<S> {
        fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
        }
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for PgTlsStream<S> {
        fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().0).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn takes_the_tls_parameters_out_of_a_url() {
            let split = split_tls_params(
                "postgres://a:b@db:5432/x?sslmode=verify-full&application_name=q&sslrootcert=%2Fetc%2Fca.pem",
            );
            assert_eq!(split.rest, "postgres://a:b@db:5432/x?application_name=q");
            assert_eq!(split.sslmode.as_deref(), Some("verify-full"));
            assert_eq!(split.sslrootcert.as_deref(), Some("/etc/ca.pem"));
            let only = split_tls_params("postgresql://db/x?sslmode=require");
            assert_eq!(only.rest, "postgresql://db/x");
            let kv = split_tls_params("host=db user=a sslmode=verify-ca sslrootcert=/ca.pem dbname=x");
            assert_eq!(kv.rest, "host=db user=a dbname=x");
            assert_eq!((kv.sslmode.as_deref(), kv.sslrootcert.as_deref()), (Some("verify-ca"), Some("/ca.pem")));
        }

        #[test]
        fn reads_every_sslmode_and_refuses_others() {
            for (text, mode) in [
                ("disable", SslMode::Disable),
                ("allow", SslMode::Prefer),
                ("prefer", SslMode::Prefer),
                ("require", SslMode::Require),
                ("verify-ca", SslMode::VerifyCa),
                ("verify-full", SslMode::VerifyFull),
            ] {
                let url = format!("postgres://db/x?sslmode={text}&sslrootcert=system");
                match settings(&url, None) {
                    Ok(settings) => assert_eq!(settings.ssl_mode, mode),
                    // A machine without a system store cannot build the verifying modes.
                    Err(error) => assert!(format!("{error:#}").contains("system certificate store"), "{error:#}"),
                }
            }
            let error = settings("postgres://db/x?sslmode=verify", None).unwrap_err();
            assert!(format!("{error:#}").contains("sslmode=verify is not one of"), "{error:#}");
        }

        #[test]
        fn a_missing_ca_file_names_the_key() {
            let error =
                settings("postgres://db/x?sslmode=verify-full", Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
            let text = format!("{error:#}");
            assert!(text.contains("/nonexistent/ca.pem") && text.contains("postgres.ca_file"), "{text}");
        }

        #[test]
        fn disable_builds_no_tls() {
            let settings = settings("postgres://db/x?sslmode=disable", Some(Path::new("/nonexistent"))).unwrap();
            assert_eq!(settings.config.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
            assert!(settings.tls.config.is_none());
        }
    }
}

/// The hyper client of ClickHouse over HTTPS (and HTTP: `https_or_http`).
pub mod clickhouse {
    use super::*;

    /// A `clickhouse::Client` whose HTTP client speaks TLS with `roots`,
    /// otherwise configured like the crate's default (TCP keep-alive 60 s,
    /// idle connections kept 2 s, under ClickHouse's 3 s).
    pub fn client(roots: &Roots) -> Result<::clickhouse::Client, TlsError> {
        Ok(with_tls(client_config(roots, Verify::Full, None)?))
    }

    /// A client that trusts no CA: every `https://` request fails. Used
    /// when the configured CA cannot be read, so nothing goes out unchecked.
    pub fn client_trusting_nothing() -> ::clickhouse::Client {
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("aws-lc-rs supports the default protocol versions")
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        with_tls(config)
    }

    fn with_tls(tls: ClientConfig) -> ::clickhouse::Client {
        use hyper_util::{
            client::legacy::{Client, connect::HttpConnector},
            rt::TokioExecutor,
        };
        let mut http = HttpConnector::new();
        http.set_keepalive(Some(std::time::Duration::from_secs(60)));
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let http =
            Client::builder(TokioExecutor::new()).pool_idle_timeout(std::time::Duration::from_secs(2)).build(connector);
        ::clickhouse::Client::with_http_client(http)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_certificates_is_refused_with_its_key() {
        let path = std::env::temp_dir().join(format!("service-kit-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let error = Roots::File { path: path.clone(), key: "redis.ca_file".into() }.load().unwrap_err();
        std::fs::remove_file(&path).unwrap();
        let text = error.to_string();
        assert!(text.contains("redis.ca_file") && text.contains("no PEM certificate"), "{text}");
    }
}
