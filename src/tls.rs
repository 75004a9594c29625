//! TLS for the data plane: rustls with the ring provider chosen explicitly, ALPN `h2` and
//! `http/1.1`, and a certificate that is reloaded when its files change (new connections
//! get the new one; connections already up keep theirs).

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsPaths;

/// The certificate in use, swapped whole on reload.
pub struct Certificates {
    paths: TlsPaths,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

// === impl Certificates ===

impl Certificates {
    pub fn load(paths: TlsPaths) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = certified_key(&paths, &provider)?;
        Ok(Arc::new(Certificates { paths, provider, current: ArcSwap::from_pointee(key) }))
    }

    /// Re-reads the files; on any error the certificate in use stays.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let key = certified_key(&self.paths, &self.provider)?;
        let changed = key.cert != self.current.load().cert;
        if changed {
            self.current.store(Arc::new(key));
        }
        Ok(changed)
    }

    pub fn paths(&self) -> &TlsPaths {
        &self.paths
    }

    /// A server config that asks this store for the certificate on every handshake.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates").field("cert", &self.paths.cert).finish_non_exhaustive()
    }
}

fn certified_key(paths: &TlsPaths, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let file_error =
        |path: &std::path::Path, reason: String| TlsError::File { path: path.display().to_string(), reason };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&paths.cert)
        .map_err(|e| file_error(&paths.cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(&paths.cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_error(&paths.cert, "no certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&paths.key).map_err(|e| file_error(&paths.key, e.to_string()))?;
    let signing = provider.key_provider.load_private_key(key)?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| file_error(&paths.key, format!("does not match the certificate: {e}")))?;
    Ok(certified)
}
