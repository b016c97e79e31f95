//! TLS on chatd's one port: the certificate chain and key named by
//! `[net] tls_cert` and `tls_key`, the handshake (bounded in time), and
//! [`ServerStream`], the byte stream a connection runs over, plain or TLS.
//!
//! The certificate lives behind a lock that a reload swaps ([`ServerTls::reload`],
//! on SIGHUP): each handshake takes the current one, so open connections keep
//! going on the certificate they started with and new ones get the new one.
//! A reload that fails leaves the current certificate in place.

use super::transport::AcceptError;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Largest certificate or key file read.
const MAX_PEM_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("[net] tls_cert and tls_key go together: set both or neither")]
    Incomplete,
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: {reason}")]
    Bad { path: PathBuf, reason: String },
    #[error("the key in {key} does not belong to the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("TLS setup: {0}")]
    Setup(rustls::Error),
}

/// chatd's TLS: the files it loads from and the acceptor whose certificate
/// a reload swaps. Cheap to clone.
#[derive(Clone)]
pub struct ServerTls {
    inner: Arc<Inner>,
}

struct Inner {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<CurrentCert>,
    acceptor: TlsAcceptor,
}

impl ServerTls {
    /// TLS from the configured paths: none when neither is set, an error
    /// when only one is or when they do not load.
    pub fn configured(
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Option<ServerTls>, TlsError> {
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => ServerTls::load(cert, key).map(Some),
            _ => Err(TlsError::Incomplete),
        }
    }

    /// Load the PEM certificate chain at `cert` and the private key at `key`.
    pub fn load(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = Arc::new(CurrentCert(RwLock::new(load_pair(cert, key, &provider)?)));
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        Ok(ServerTls {
            inner: Arc::new(Inner {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                current,
                acceptor: TlsAcceptor::from(Arc::new(config)),
            }),
        })
    }

    /// The certificate file this serves.
    pub fn cert_path(&self) -> &Path {
        &self.inner.cert
    }

    /// Read the files again and serve what they hold to new connections.
    /// On an error the certificate served so far stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let provider = rustls::crypto::ring::default_provider();
        let fresh = load_pair(&self.inner.cert, &self.inner.key, &provider)?;
        *self
            .inner
            .current
            .0
            .write()
            .unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// The TLS handshake on `stream`, within `timeout`. A plain HTTP request
    /// gets a plain-text answer saying that this port speaks TLS.
    pub async fn accept(
        &self,
        mut stream: TcpStream,
        timeout: Duration,
    ) -> Result<TlsStream<TcpStream>, AcceptError> {
        let acceptor = self.inner.acceptor.clone();
        let handshake = async move {
            let mut first = [0u8; 1];
            // A TLS record starts with a byte below 0x20; HTTP with a method.
            if stream.peek(&mut first).await? == 1 && first[0].is_ascii_uppercase() {
                refuse_plain(&mut stream).await;
                return Err(AcceptError::Bad("plain HTTP on a TLS port"));
            }
            Ok(acceptor.accept(stream).await?)
        };
        tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| AcceptError::Timeout)?
    }
}

/// A connection's stream: TLS when chatd serves it (see [`wrap`]).
pub async fn wrap(
    tls: Option<&ServerTls>,
    stream: TcpStream,
    timeout: Duration,
) -> Result<ServerStream, AcceptError> {
    match tls {
        None => Ok(ServerStream::Plain(stream)),
        Some(tls) => Ok(ServerStream::Tls(Box::new(
            tls.accept(stream, timeout).await?,
        ))),
    }
}

/// Answer a cleartext HTTP request on the TLS port, once, then close.
async fn refuse_plain(stream: &mut TcpStream) {
    // Take the request head off the socket first, so that closing does not
    // reset the connection before the answer is read.
    let mut head = [0u8; 2048];
    let _ = stream.read(&mut head).await;
    let body = "this port speaks TLS: use https:// or wss://\n";
    let text = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(text.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The certificate handshakes get; a reload replaces it.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// Read and check a certificate chain and its key.
fn load_pair(
    cert: &Path,
    key: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let bad = |path: &Path, reason: String| TlsError::Bad {
        path: path.to_path_buf(),
        reason,
    };
    let cert_pem = read_limited(cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(bad(
            cert,
            "no certificate in it (expected -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    let key_pem = read_limited(key)?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => bad(
            key,
            "no private key in it (expected -----BEGIN PRIVATE KEY-----, or an RSA or EC key)"
                .into(),
        ),
        e => bad(key, format!("not a PEM private key: {e}")),
    })?;
    match CertifiedKey::from_der(chain, private, provider) {
        Ok(k) => Ok(Arc::new(k)),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::Mismatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        }),
        Err(e @ rustls::Error::InvalidCertificate(_)) => Err(bad(cert, e.to_string())),
        Err(e) => Err(bad(key, format!("unusable private key: {e}"))),
    }
}

fn read_limited(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let read_err = |source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut buf = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(read_err)?;
    if buf.len() as u64 > MAX_PEM_BYTES {
        return Err(TlsError::Bad {
            path: path.to_path_buf(),
            reason: format!("larger than {MAX_PEM_BYTES} bytes"),
        });
    }
    Ok(buf)
}

/// The stream under a server connection. The TLS state is boxed, so that a
/// plain connection does not carry its size.
pub enum ServerStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ServerStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
