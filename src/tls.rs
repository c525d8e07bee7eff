//! One rustls crypto provider for the whole process.
//!
//! kube and reqwest both use rustls; with two providers compiled in, rustls
//! cannot pick one and panics at the first TLS client. We build only `ring`
//! and install it once, before any client exists.

/// Installs ring as the process-wide provider; later calls do nothing.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider is already installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
