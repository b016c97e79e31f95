//! The client's TLS: which certificates it trusts for `wss://` (the
//! platform's roots, and a CA or self-signed certificate the user names with
//! `--ca-file` or `ca_file`), and a refused handshake told in one line.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{CertificateError, ClientConfig, RootCertStore};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use tokio_tungstenite::tungstenite;

/// Largest CA file read.
const MAX_CA_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The platform's root certificates, read once per process.
fn platform_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        if !found.errors.is_empty() {
            tracing::debug!(
                "some platform root certificates did not load: {:?}",
                found.errors
            );
        }
        found.certs
    })
}

/// The TLS settings for `wss://`: the platform's roots, plus every
/// certificate in `ca_file`. The error is a sentence about the file.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(platform_roots().iter().cloned());
    if let Some(path) = ca_file {
        let pem = read_limited(path)?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "{}: no certificate in it (expected -----BEGIN CERTIFICATE-----)",
                path.display()
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("{}: unusable certificate: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CA_FILE_BYTES + 1).read_to_end(&mut buf))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if buf.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(format!(
            "{}: larger than {MAX_CA_FILE_BYTES} bytes",
            path.display()
        ));
    }
    Ok(buf)
}

/// Why the TLS handshake failed, when it did (rather than the network).
pub fn handshake_failure(err: &tungstenite::Error) -> Option<String> {
    let tungstenite::Error::Io(io) = err else {
        return None;
    };
    io_failure(io)
}

/// [`handshake_failure`] for an I/O error of a TLS stream (the file
/// transfers' connections).
pub fn io_failure(io: &std::io::Error) -> Option<String> {
    let tls = io.get_ref()?.downcast_ref::<rustls::Error>()?;
    Some(match tls {
        rustls::Error::InvalidCertificate(c) => {
            format!("its certificate was refused: {}", certificate_reason(c))
        }
        rustls::Error::InvalidMessage(_) => {
            "it does not speak TLS (a plain ws:// server?)".to_string()
        }
        other => other.to_string(),
    })
}

fn certificate_reason(e: &CertificateError) -> String {
    use CertificateError as C;
    match e {
        // No trusted certificate vouches for it: no known issuer, or one
        // with the same name whose key did not sign it.
        C::UnknownIssuer
        | C::BadSignature
        | C::UnsupportedSignatureAlgorithmContext { .. }
        | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "it is not signed by an authority this machine trusts (a self-signed \
             certificate? pass --ca-file with it, or set ca_file)"
                .into()
        }
        C::NotValidForName => "it is not valid for this host name".into(),
        C::Expired | C::ExpiredContext { .. } => "it has expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => {
            "it is not valid yet (is this machine's clock right?)".into()
        }
        C::Revoked => "it has been revoked".into(),
        // webpki's error, which rustls passes on only as `Other`.
        C::Other(e) if e.to_string().contains("CaUsedAsEndEntity") => {
            "it is a CA certificate (basicConstraints CA:TRUE), which a server may not \
             present; make the server's certificate with CA:FALSE"
                .into()
        }
        // The names in it come from the server: shown cleaned, cut short.
        other => {
            let text = crate::client::text::clean(&other.to_string());
            match text.char_indices().nth(200) {
                Some((i, _)) => format!("{}…", &text[..i]),
                None => text,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let e = client_config(Some(&missing)).unwrap_err();
        assert!(
            e.starts_with("cannot read") && e.contains("nope.pem"),
            "{e}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "hello\n").unwrap();
        let e = client_config(Some(&empty)).unwrap_err();
        assert!(e.contains("no certificate"), "{e}");
    }

    #[test]
    fn certificate_errors_read_as_sentences() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let why = handshake_failure(&tungstenite::Error::Io(io)).unwrap();
        assert!(why.contains("--ca-file"), "{why}");
        let plain = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(handshake_failure(&tungstenite::Error::Io(plain)).is_none());
    }
}
