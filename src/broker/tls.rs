//! The broker's certificate: read from PEM files at start (a bad file stops
//! the operator with the path and the problem), and read again when either
//! file changes, as a renewed Kubernetes TLS Secret does in its volume. A
//! renewal that cannot be read keeps the old certificate and logs why.

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;
use tracing::{info, warn};

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the broker's TLS certificate {path} (--broker-tls-cert): {detail}")]
    Certificate { path: PathBuf, detail: String },
    #[error("cannot read the broker's TLS key {path} (--broker-tls-key): {detail}")]
    Key { path: PathBuf, detail: String },
}

/// What the files looked like when they were read: a change to either
/// means "read them again".
type Stamp = [(Option<SystemTime>, u64); 2];

/// A certificate resolver that follows its files.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(Stamp, Arc<CertifiedKey>)>,
}

impl ReloadingCert {
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let stamp = stamp_of(cert, key);
        let loaded = certified_key(cert, key)?;
        Ok(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new((stamp, Arc::new(loaded))),
        })
    }

    /// The certificate, read again first if its files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let stamp = stamp_of(&self.cert, &self.key);
        let (seen, key) = self.current.read().expect("certificate lock").clone();
        if seen == stamp {
            return key;
        }
        let mut current = self.current.write().expect("certificate lock");
        match certified_key(&self.cert, &self.key) {
            Ok(fresh) => {
                info!(cert = %self.cert.display(), "broker certificate reloaded");
                *current = (stamp, Arc::new(fresh));
            }
            Err(err) => {
                // Keep serving the old one; say so once per change.
                warn!(error = %err, "broker certificate changed but cannot be read; keeping the previous one");
                current.0 = stamp;
            }
        }
        current.1.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A TLS server configuration that serves `cert` (HTTP/1.1).
pub fn server_config(cert: Arc<ReloadingCert>) -> Arc<rustls::ServerConfig> {
    crate::tls::install_crypto_provider();
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

fn stamp_of(cert: &Path, key: &Path) -> Stamp {
    let of =
        |path: &Path| std::fs::metadata(path).map_or((None, 0), |m| (m.modified().ok(), m.len()));
    [of(cert), of(key)]
}

fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_error = |detail: String| TlsError::Certificate {
        path: cert.to_owned(),
        detail,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("no CERTIFICATE block in the file".into()));
    }
    let key_error = |detail: String| TlsError::Key {
        path: key.to_owned(),
        detail,
    };
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| key_error(e.to_string()))?;
    let signing = any_supported_type(&der).map_err(|e| key_error(e.to_string()))?;
    Ok(CertifiedKey::new(chain, signing))
}
