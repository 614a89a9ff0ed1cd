//! [`Tls`]: HTTPS for `serve` (feature `tls`), over rustls with ALPN.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, ring};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::server::TlsStream;

use super::linger;
use super::rewind::Transport;

/// HTTPS for [`serve`](super::serve()) (feature `tls`): a certificate and its key for
/// [`Serve::tls`](super::Serve::tls), replaceable while the server runs. Over rustls
/// with ALPN, so an app without a proxy serves HTTP/2 to browsers: all of
/// a browser's streams and API calls on one connection, past the six
/// connections per origin browsers allow over HTTP/1.1.
///
/// ```no_run
/// use sse_core::{CookieSessionAuthenticator, InMemorySessions};
/// use sse_tower::SseService;
/// use sse_tower::serve::Tls;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let sse = SseService::builder(CookieSessionAuthenticator::new("sid", InMemorySessions::new())).build();
/// let tls = Tls::from_pem_files("cert.pem", "key.pem")?;
/// // A renewed certificate is picked up without a restart:
/// let reloading = tls.clone();
/// tokio::spawn(async move {
///     let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
///     while hangup.recv().await.is_some() {
///         if let Err(error) = reloading.reload() {
///             eprintln!("{error}"); // the old certificate stays in use
///         }
///     }
///     Ok::<_, std::io::Error>(())
/// });
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:443").await?;
/// sse_tower::serve(listener, sse).tls(tls).await?;
/// # Ok(())
/// # }
/// ```
///
/// What it does:
///
/// - Negotiates `h2` and `http/1.1` by ALPN (only `http/1.1` with
///   [`http1_only`](super::Serve::http1_only)). A client that names
///   neither gets HTTP/1.1. Over TLS, HTTP/2 is never sniffed.
/// - Bounds the handshake by the
///   [`header_read_timeout`](super::Serve::header_read_timeout): a client
///   that opens a connection and sends nothing holds it no longer than
///   one that sends nothing over plain TCP.
/// - Serves every request through hyper: the direct stream writer reads
///   the socket's readiness, which a TLS stream does not expose without
///   buffers of its own, so its memory savings are for plain TCP (behind
///   a proxy that terminates TLS). BENCHMARKS.md compares the two.
/// - Answers connections past the cap (`503`, `Retry-After: 1`) over TLS
///   too, offering them `http/1.1` only.
/// - Closes with a `close_notify`, then lingers as over TCP.
/// - TLS 1.2 and 1.3, rustls's safe defaults, the `ring` provider (no
///   OpenSSL, no C toolchain beyond what `ring` needs).
///
/// Clones share the certificate: [`reload`](Tls::reload) on one is seen by
/// every connection accepted after it (open connections keep the one they
/// were accepted with).
#[derive(Clone)]
pub struct Tls {
    files: Option<Arc<(PathBuf, PathBuf)>>,
    current: Arc<Current>,
    provider: Arc<CryptoProvider>,
}

/// The certificate handed to each new handshake.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// Why a certificate or key could not be used. The server keeps the one it
/// had (on [`Tls::reload`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("could not read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The certificate PEM holds no `CERTIFICATE` block, or one that does
    /// not parse.
    #[error(
        "{what} holds no PEM certificate: give the server's certificate first, then its chain, each as -----BEGIN CERTIFICATE-----"
    )]
    NoCertificate {
        /// The file, or `"the certificate PEM"`.
        what: String,
    },
    /// The key PEM holds no private key, or one that does not parse.
    #[error(
        "{what} holds no PEM private key: give a PKCS#8, PKCS#1 (RSA) or SEC1 (EC) key, unencrypted"
    )]
    NoKey {
        /// The file, or `"the key PEM"`.
        what: String,
    },
    /// rustls refused the pair (an unsupported key type, a key that does
    /// not match the certificate).
    #[error("the certificate and key cannot be used together: {0}")]
    Refused(#[from] rustls::Error),
    /// [`Tls::reload`] on one made by [`Tls::from_pem`]: there are no
    /// files to read again.
    #[error("this certificate was given as PEM bytes, not files: use Tls::reload_pem")]
    NoFiles,
}

impl Tls {
    /// Reads the certificate chain (the server's first) and its private
    /// key from PEM files.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsError> {
        let files = (cert.as_ref().to_owned(), key.as_ref().to_owned());
        let provider = Arc::new(ring::default_provider());
        let pair = read_files(&files, &provider)?;
        Ok(Self {
            files: Some(Arc::new(files)),
            current: Arc::new(Current(RwLock::new(Arc::new(pair)))),
            provider,
        })
    }

    /// A certificate chain and key given as PEM bytes (from a secret
    /// store, or embedded).
    ///
    /// ```
    /// use sse_tower::serve::{Tls, TlsError};
    ///
    /// let refused = Tls::from_pem(b"not a certificate", b"");
    /// assert!(matches!(refused, Err(TlsError::NoCertificate { .. })));
    /// ```
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        let provider = Arc::new(ring::default_provider());
        let pair = parse(cert, key, "the certificate PEM", "the key PEM", &provider)?;
        Ok(Self {
            files: None,
            current: Arc::new(Current(RwLock::new(Arc::new(pair)))),
            provider,
        })
    }

    /// Reads the files again and, if they hold a usable pair, hands it to
    /// every handshake from now on. On an error the certificate in use
    /// stays. Call it when the files were renewed (on `SIGHUP`, or on a
    /// timer).
    pub fn reload(&self) -> Result<(), TlsError> {
        let files = self.files.as_ref().ok_or(TlsError::NoFiles)?;
        let pair = read_files(files, &self.provider)?;
        self.replace(pair);
        Ok(())
    }

    /// Replaces the certificate and key with these PEM bytes; on an error
    /// the pair in use stays.
    pub fn reload_pem(&self, cert: &[u8], key: &[u8]) -> Result<(), TlsError> {
        let pair = parse(
            cert,
            key,
            "the certificate PEM",
            "the key PEM",
            &self.provider,
        )?;
        self.replace(pair);
        Ok(())
    }

    fn replace(&self, pair: CertifiedKey) {
        *self
            .current
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(pair);
    }

    /// What accepts this server's connections: one configuration for the
    /// connections it serves, one (HTTP/1.1 only) for those it turns away.
    pub(super) fn acceptors(&self, http2: bool) -> Result<Acceptors, rustls::Error> {
        let config = |alpn: &[&[u8]]| -> Result<TlsAcceptor, rustls::Error> {
            let mut config = ServerConfig::builder_with_provider(self.provider.clone())
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_cert_resolver(self.current.clone());
            config.alpn_protocols = alpn.iter().map(|name| name.to_vec()).collect();
            Ok(TlsAcceptor::from(Arc::new(config)))
        };
        let serving: &[&[u8]] = if http2 {
            &[b"h2", b"http/1.1"]
        } else {
            &[b"http/1.1"]
        };
        Ok(Acceptors {
            serving: config(serving)?,
            busy: config(&[b"http/1.1"])?,
        })
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("files", &self.files.as_deref())
            .finish_non_exhaustive()
    }
}

fn read_files(
    (cert, key): &(PathBuf, PathBuf),
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.clone(),
            source,
        })
    };
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    parse(
        &cert_pem,
        &key_pem,
        &cert.display().to_string(),
        &key.display().to_string(),
        provider,
    )
}

fn parse(
    cert: &[u8],
    key: &[u8],
    cert_name: &str,
    key_name: &str,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::NoCertificate {
            what: cert_name.to_owned(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            what: cert_name.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|_| TlsError::NoKey {
        what: key_name.to_owned(),
    })?;
    Ok(CertifiedKey::from_der(chain, key, provider)?)
}

/// The server's two TLS configurations (see [`Tls::acceptors`]).
pub(super) struct Acceptors {
    pub(super) serving: TlsAcceptor,
    pub(super) busy: TlsAcceptor,
}

/// Whether a handshake negotiated HTTP/2.
pub(super) fn negotiated_h2(stream: &TlsStream<TcpStream>) -> bool {
    stream.get_ref().1.alpn_protocol() == Some(b"h2")
}

/// How long a connection turned away may take over its handshake.
pub(super) const BUSY_HANDSHAKE: Duration = Duration::from_secs(1);

impl Transport for TlsStream<TcpStream> {
    async fn close(mut self) {
        // `close_notify` and the TCP shutdown, then the lingering drain on
        // the socket itself: what still arrives is not decrypted.
        if tokio::time::timeout(Duration::from_secs(1), self.shutdown())
            .await
            .is_ok_and(|shut| shut.is_ok())
        {
            linger::drain(self.into_inner().0).await;
        }
    }
}
