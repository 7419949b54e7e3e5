//! TLS to PostgreSQL with rustls (ring provider), following libpq's `sslmode`:
//!
//! | `sslmode` | TLS | certificate check |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (the default) | when the server offers it | none (as libpq without a root certificate) |
//! | `require` | always | none; with `sslrootcert`, as `verify-ca` (libpq does the same) |
//! | `verify-ca` | always | chain to `sslrootcert` (a PEM file, required), any host name |
//! | `verify-full` | always | chain and host name |
//!
//! `sslrootcert=<PEM file>` names the roots; `verify-full` without it (or with
//! `sslrootcert=system`, which makes `verify-full` the default mode) checks against the Mozilla
//! roots of `webpki-roots`. As libpq, `verify-ca` without a root file and `sslrootcert=system`
//! with any mode but `verify-full` are refused: a public root vouches for any public host name,
//! so a chain check against them without the name check lets any such certificate through.
//! tokio-postgres knows only `disable`, `prefer` and `require`, so [`parse`] takes `verify-ca`,
//! `verify-full` and `sslrootcert` out of the URL (or `key=value` string) before handing it
//! over, as `require`.
//!
//! A Unix socket (`host=/var/run/postgresql`) has no host name: tokio-postgres asks for a
//! connector all the same, and the server answers "no TLS" over a socket, so the connector made
//! for it fails only if a handshake is attempted. A `hostaddr` without `host` gets the address
//! as its host name (as libpq, no SNI is sent for it), so `prefer` and `require` encrypt there;
//! `verify-full` still needs a `host` to check the certificate against.
//!
//! No channel binding is offered (SCRAM works without it, as with libpq's default `prefer`).
//!
//! The adapter to tokio-postgres is written here (a few dozen lines over tokio-rustls) rather
//! than taken from `tokio-postgres-rustls`: that crate's rustls 0.23 release brings the
//! `x509-certificate` tree for channel binding, and `verify-ca` needs a verifier of our own
//! anyway.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WantsClientCert, WebPkiServerVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, ConfigBuilder, DigitallySignedStruct, RootCertStore,
    SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::Config;
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use super::columns::db_err;
use super::{PgStore, get};
use crate::error::{Result, StoreError};

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, no certificate check.
    Prefer,
    /// TLS, no certificate check (unless a root certificate is named: then as `VerifyCa`).
    Require,
    /// TLS, the chain checked against the roots, any host name.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

impl Mode {
    /// The URL's word for it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Disable => "disable",
            Mode::Prefer => "prefer",
            Mode::Require => "require",
            Mode::VerifyCa => "verify-ca",
            Mode::VerifyFull => "verify-full",
        }
    }
}

/// What a URL asks of TLS, once tokio-postgres has its own part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    /// The `sslmode`.
    pub(crate) mode: Mode,
    /// `sslrootcert`.
    pub(crate) root_cert: RootCert,
}

/// Where the root certificates of `sslrootcert` come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RootCert {
    /// Not given: the Mozilla roots for `verify-full`; `verify-ca` is refused.
    Unset,
    /// `sslrootcert=system`: the Mozilla roots, for `verify-full` only.
    System,
    /// A PEM file of root certificates.
    File(PathBuf),
}

/// Parses a `postgres://` URL or `key=value` string: the connection settings for tokio-postgres
/// and the TLS settings it does not know.
pub(crate) fn parse(url: &str) -> Result<(Config, TlsSettings)> {
    let invalid = |message: String| StoreError::Invalid {
        field: "url",
        message,
    };
    let mut mode = None;
    let mut root_cert = RootCert::Unset;
    let mut take = |key: &str, value: &str| -> Result<bool> {
        match key {
            "sslmode" => {
                let found = match value {
                    "disable" => Mode::Disable,
                    // libpq's `allow` tries plain first; a TLS server accepts plain too.
                    "allow" | "prefer" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    other => {
                        return Err(invalid(format!(
                            "sslmode={other} is not one of disable, allow, prefer, require, \
                             verify-ca, verify-full"
                        )));
                    }
                };
                mode = Some(found);
                Ok(true)
            }
            "sslrootcert" => {
                root_cert = if value == "system" {
                    RootCert::System
                } else {
                    RootCert::File(PathBuf::from(value))
                };
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    // Both settings are taken out, so tokio-postgres sees only what it knows; the mode goes
    // back in as the one of its three that opens the connection the same way.
    let rest = if let Some((base, query)) = url.split_once('?')
        && url.contains("://")
    {
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(key, &percent_decode(value))? {
                kept.push(pair.to_owned());
            }
        }
        if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else if url.contains("://") {
        url.to_owned()
    } else {
        let mut kept = Vec::new();
        for word in url.split_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            if !take(key.trim(), value.trim().trim_matches('\''))? {
                kept.push(word);
            }
        }
        kept.join(" ")
    };
    let mut config: Config = rest
        .parse()
        .map_err(|e| invalid(format!("not a PostgreSQL URL: {e}")))?;
    // libpq: `sslrootcert=system` makes `verify-full` the default.
    let mode = mode.unwrap_or(if root_cert == RootCert::System {
        Mode::VerifyFull
    } else {
        Mode::Prefer
    });
    // A `hostaddr` without `host` leaves tokio-postgres no name for the handshake, and it then
    // fails any TLS the server offers; the address itself serves as the name (no SNI is sent
    // for an address). `verify-full` is left without one, so it fails as libpq does: it needs a
    // host name to check.
    if config.get_hosts().is_empty() && mode != Mode::VerifyFull {
        let addresses: Vec<_> = config.get_hostaddrs().to_vec();
        for address in addresses {
            config.host(address.to_string());
        }
    }
    config.ssl_mode(match mode {
        Mode::Disable => SslMode::Disable,
        Mode::Prefer => SslMode::Prefer,
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
    });
    Ok((config, TlsSettings { mode, root_cert }))
}

/// `%XX` escapes of a URL query value decoded (a file path may carry them).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(Some(hi)), Some(Some(lo))) = (
                bytes.get(i + 1).map(|b| hex(*b)),
                bytes.get(i + 2).map(|b| hex(*b)),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl TlsSettings {
    /// The connector for these settings; fails, naming the database and the parameter, when
    /// the root certificates cannot be read or the settings would check a certificate against
    /// public roots without its host name (`verify-ca` without a root file, `sslrootcert=system`
    /// with a mode other than `verify-full`; libpq refuses both).
    pub(crate) fn connector(&self, database: &str) -> Result<RustlsConnect> {
        let tls_err = |message: String| StoreError::Tls {
            database: database.to_owned(),
            message,
        };
        match (self.mode, &self.root_cert) {
            (Mode::VerifyCa, RootCert::Unset) => {
                return Err(tls_err(
                    "sslmode=verify-ca needs sslrootcert=<PEM file of the server's CA>: against \
                     the public roots, without the host name check, any publicly trusted \
                     certificate for any domain would pass (use sslmode=verify-full to check \
                     against the public roots)"
                        .to_owned(),
                ));
            }
            (mode, RootCert::System) if mode != Mode::VerifyFull => {
                return Err(tls_err(format!(
                    "sslrootcert=system may be used only with sslmode=verify-full, not \
                     sslmode={}: the public roots vouch for any public domain, so only the host \
                     name check makes them mean anything",
                    mode.name()
                )));
            }
            _ => {}
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder: ConfigBuilder<ClientConfig, _> =
            ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .map_err(|e| tls_err(e.to_string()))?;
        let check = match (self.mode, &self.root_cert) {
            (Mode::Disable | Mode::Prefer, _) | (Mode::Require, RootCert::Unset) => None,
            (Mode::Require | Mode::VerifyCa, _) => Some(false),
            (Mode::VerifyFull, _) => Some(true),
        };
        let with_verifier: ConfigBuilder<ClientConfig, WantsClientCert> = match check {
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoCheck(provider))),
            Some(host_name) => {
                let mut roots = RootCertStore::empty();
                match &self.root_cert {
                    RootCert::File(path) => {
                        let certs = CertificateDer::pem_file_iter(path)
                            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                            .map_err(|e| {
                                tls_err(format!("cannot read sslrootcert {}: {e}", path.display()))
                            })?;
                        let (added, _) = roots.add_parsable_certificates(certs);
                        if added == 0 {
                            return Err(tls_err(format!(
                                "sslrootcert {} holds no usable certificate",
                                path.display()
                            )));
                        }
                    }
                    RootCert::Unset | RootCert::System => {
                        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                    }
                }
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| tls_err(e.to_string()))?;
                if host_name {
                    builder.with_webpki_verifier(webpki)
                } else {
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(AnyName(webpki)))
                }
            }
        };
        Ok(RustlsConnect {
            config: Arc::new(with_verifier.with_no_client_auth()),
        })
    }
}

/// `verify-ca`: the chain is checked, the host name is not.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        // The chain is checked before the name, so a name error means the chain was good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a root certificate: encrypted, the server not authenticated
/// (libpq's meaning). The handshake's signatures are still checked against the certificate.
#[derive(Debug)]
struct NoCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// tokio-postgres's TLS hook over rustls: one per pool, cloned for each connection.
#[derive(Clone)]
pub(crate) struct RustlsConnect {
    config: Arc<ClientConfig>,
}

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnector;
    type Error = Infallible;

    /// Never fails: tokio-postgres asks for a connector before it knows whether TLS will be
    /// used, with `""` for a Unix socket, and a server never offers TLS over a socket. A name
    /// that cannot be one makes a connector that fails if a handshake is attempted.
    fn make_tls_connect(
        &mut self,
        domain: &str,
    ) -> std::result::Result<RustlsConnector, Self::Error> {
        let name = if domain.is_empty() {
            Err(
                "no host name to check the server's certificate against (a Unix socket, or \
                 hostaddr without host)"
                    .to_owned(),
            )
        } else {
            ServerName::try_from(domain.to_owned())
                .map_err(|e| format!("host {domain:?} cannot be named in a TLS handshake: {e}"))
        };
        Ok(RustlsConnector {
            config: Arc::clone(&self.config),
            name,
        })
    }
}

/// One connection's TLS handshake, to the host name (or address) of the URL; or, when there is
/// none that TLS can use, why a handshake cannot be made.
pub(crate) struct RustlsConnector {
    config: Arc<ClientConfig>,
    name: std::result::Result<ServerName<'static>, String>,
}

impl<S> TlsConnect<S> for RustlsConnector
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move {
            let name = self
                .name
                .map_err(|message| io::Error::new(io::ErrorKind::InvalidInput, message))?;
            connector
                .connect(name, stream)
                .await
                .map(|s| RustlsStream(Box::new(s)))
        })
    }
}

/// A TLS connection to the server.
pub(crate) struct RustlsStream<S>(Box<tokio_rustls::client::TlsStream<S>>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
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

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl PgStore {
    /// Whether this store's connections to the server are encrypted (`pg_stat_ssl` of one of
    /// them), as `sslmode` and the server decided.
    pub async fn encrypted(&self) -> Result<bool> {
        let client = self.conn("tls state").await?;
        let row = client
            .query_one(
                "SELECT coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
                &[],
            )
            .await
            .map_err(db_err("tls state"))?;
        get(&row, 0, "tls state")
    }
}

/// Whether a connection failure came from TLS: a rustls error among its causes, or the server
/// refusing TLS that `sslmode` requires.
pub(crate) fn tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(cause) = next {
        if cause.is::<rustls::Error>()
            || cause
                .to_string()
                .starts_with("error performing TLS handshake")
        {
            return true;
        }
        if let Some(io) = cause.downcast_ref::<io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
        {
            return true;
        }
        next = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_modes_are_taken_out_of_the_url() {
        let (config, tls) = parse(
            "postgres://u:p@db.example:5433/nexus?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=n",
        )
        .expect("parse");
        assert_eq!(tls.mode, Mode::VerifyFull);
        assert_eq!(tls.root_cert, RootCert::File(PathBuf::from("/etc/ca.pem")));
        assert_eq!(config.get_ssl_mode(), SslMode::Require);
        assert_eq!(config.get_application_name(), Some("n"));
        assert_eq!(config.get_dbname(), Some("nexus"));

        let (config, tls) = parse("postgres://db/nexus").expect("parse");
        assert_eq!((tls.mode, tls.root_cert), (Mode::Prefer, RootCert::Unset));
        assert_eq!(config.get_ssl_mode(), SslMode::Prefer);

        let (config, tls) =
            parse("host=db dbname=nexus sslmode=verify-ca sslrootcert=system").expect("parse");
        assert_eq!(
            (tls.mode, tls.root_cert),
            (Mode::VerifyCa, RootCert::System)
        );
        assert_eq!(config.get_ssl_mode(), SslMode::Require);

        let (config, _) = parse("postgres://db/nexus?sslmode=disable").expect("parse");
        assert_eq!(config.get_ssl_mode(), SslMode::Disable);

        let err = parse("postgres://u:hunter2@db/nexus?sslmode=sometimes").expect_err("bad mode");
        assert!(
            matches!(err, StoreError::Invalid { field: "url", .. }),
            "{err:?}"
        );
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn an_unreadable_root_certificate_is_named() {
        let tls = TlsSettings {
            mode: Mode::VerifyFull,
            root_cert: RootCert::File(PathBuf::from("/nonexistent/root.pem")),
        };
        let err = tls.connector("db:5432/nexus").err().expect("no such file");
        let shown = err.to_string();
        assert!(
            shown.contains("db:5432/nexus") && shown.contains("/nonexistent/root.pem"),
            "{shown}"
        );
    }

    /// The refusal of `settings` for database `db:5432/nexus`, as shown.
    fn refusal(url: &str) -> String {
        let (_, tls) = parse(url).expect("parse");
        let err = tls.connector("db:5432/nexus").err().expect(url);
        assert!(matches!(err, StoreError::Tls { .. }), "{url}: {err:?}");
        err.to_string()
    }

    #[test]
    fn verify_ca_without_a_root_file_is_refused() {
        for url in [
            "postgres://db/nexus?sslmode=verify-ca",
            "host=db dbname=nexus sslmode=verify-ca",
        ] {
            let shown = refusal(url);
            assert!(
                shown.contains("db:5432/nexus")
                    && shown.contains("sslmode=verify-ca")
                    && shown.contains("sslrootcert"),
                "{url}: {shown}"
            );
        }
        // With a root file it is built (the file is read), and verify-full without one checks
        // the name against the public roots.
        let (_, tls) =
            parse("postgres://db/nexus?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem")
                .expect("parse");
        let shown = tls
            .connector("db:5432/nexus")
            .err()
            .expect("no such file")
            .to_string();
        assert!(shown.contains("/nonexistent/ca.pem"), "{shown}");
        let (_, tls) = parse("postgres://db/nexus?sslmode=verify-full").expect("parse");
        assert!(tls.connector("db:5432/nexus").is_ok());
    }

    #[test]
    fn sslrootcert_system_is_only_for_verify_full() {
        for mode in ["disable", "allow", "prefer", "require", "verify-ca"] {
            let url = format!("postgres://db/nexus?sslmode={mode}&sslrootcert=system");
            let shown = refusal(&url);
            let named = if mode == "allow" { "prefer" } else { mode };
            assert!(
                shown.contains("db:5432/nexus")
                    && shown.contains("sslrootcert=system")
                    && shown.contains(&format!("sslmode={named}")),
                "{url}: {shown}"
            );
        }
        // Alone, it means verify-full (libpq's default with it).
        let (config, tls) = parse("host=db dbname=nexus sslrootcert=system").expect("parse");
        assert_eq!(
            (tls.mode, &tls.root_cert),
            (Mode::VerifyFull, &RootCert::System)
        );
        assert_eq!(config.get_ssl_mode(), SslMode::Require);
        assert!(tls.connector("db:5432/nexus").is_ok());
        let (_, tls) =
            parse("postgres://db/nexus?sslmode=verify-full&sslrootcert=system").expect("parse");
        assert!(tls.connector("db:5432/nexus").is_ok());
    }

    #[test]
    fn a_hostaddr_without_host_is_its_own_host_name_except_for_verify_full() {
        use tokio_postgres::config::Host;
        let (config, _) = parse("hostaddr=10.0.0.7 dbname=nexus").expect("parse");
        assert_eq!(config.get_hosts(), &[Host::Tcp("10.0.0.7".to_owned())]);
        let (config, _) = parse("host=db hostaddr=10.0.0.7 dbname=nexus").expect("parse");
        assert_eq!(config.get_hosts(), &[Host::Tcp("db".to_owned())]);
        let (config, _) =
            parse("hostaddr=10.0.0.7 dbname=nexus sslmode=verify-full").expect("parse");
        assert!(config.get_hosts().is_empty());
    }

    /// A Unix socket's empty name (or a name TLS cannot use) makes a connector all the same,
    /// which refuses only a handshake, naming why.
    #[tokio::test]
    async fn a_connector_without_a_usable_name_fails_only_at_the_handshake() {
        let (_, tls) = parse("postgres://db/nexus?sslmode=require").expect("parse");
        let mut make = tls.connector("db:5432/nexus").expect("connector");
        for (name, says) in [("", "no host name"), ("-bad_.name-", "-bad_.name-")] {
            let connector =
                MakeTlsConnect::<tokio::io::DuplexStream>::make_tls_connect(&mut make, name)
                    .expect("never fails");
            let (ours, _theirs) = tokio::io::duplex(64);
            let err = match connector.connect(ours).await {
                Ok(_) => panic!("{name:?}: a handshake without a name"),
                Err(e) => e,
            };
            assert!(err.to_string().contains(says), "{name:?}: {err}");
        }
    }
}
