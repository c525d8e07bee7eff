//! Starting the broker in `run`: its own caches of connection resources
//! (so that every replica serves, leader or not), the reviews, the limits,
//! the listener.

use super::issuer::Issuer;
use super::limits::{Limits, ReviewBudget};
use super::metrics::BrokerMetrics;
use super::pipeline::Broker;
use super::review::KubeReviewer;
use super::review_cache::{CachedReviewer, ReviewTtl};
use super::server::{LIMITS, Service};
use super::tls::{ReloadingCert, TlsError, server_config};
use crate::controller::cluster_host::ApiSecrets;
use crate::controller::connections::ConnectionWatches;
use crate::metastudio::Transport;
use crate::metastudio::rate_limit::RateLimit;
use crate::telemetry::connections;
use kube::Client;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::info;

/// How the broker is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerTransport {
    Tls {
        cert: PathBuf,
        key: PathBuf,
    },
    /// Loopback only (checked by the flags).
    InsecureHttp,
}

/// What the flags chose.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub addr: SocketAddr,
    pub transport: BrokerTransport,
    pub audience: String,
    /// Per calling ServiceAccount.
    pub caller: RateLimit,
    /// Per set of credentials (endpoint, project, the credentials).
    pub quota: RateLimit,
    /// TokenReviews of tokens the broker does not know, for all callers.
    pub review: RateLimit,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot serve the broker on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// What `run` needs besides the config.
pub struct BrokerParts {
    pub client: Client,
    /// The watched namespaces; empty: all.
    pub namespaces: Vec<String>,
    pub transport: Arc<Transport>,
    pub metrics: BrokerMetrics,
}

/// Binds the broker and serves it until `shutdown`; returns the bound
/// address. It answers 503 until its caches are synced.
pub async fn launch(
    config: BrokerConfig,
    parts: BrokerParts,
    shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
) -> Result<(SocketAddr, JoinHandle<()>), BrokerError> {
    let tls = match &config.transport {
        BrokerTransport::Tls { cert, key } => {
            let cert = Arc::new(ReloadingCert::load(cert, key)?);
            Some(tokio_rustls::TlsAcceptor::from(server_config(cert)))
        }
        BrokerTransport::InsecureHttp => None,
    };
    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|source| BrokerError::Bind {
            addr: config.addr,
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| BrokerError::Bind {
        addr: config.addr,
        source,
    })?;
    let watches = ConnectionWatches::new(&parts.client, &parts.namespaces);
    let directory = watches.directory();
    let ready = Arc::new(AtomicBool::new(false));
    for task in watches.into_reflectors(shutdown.clone()) {
        tokio::spawn(task);
    }
    tokio::spawn({
        let (directory, ready) = (directory.clone(), ready.clone());
        async move {
            if directory.wait_until_ready().await.is_ok() {
                ready.store(true, Ordering::Release);
                info!("broker caches synced: serving once-codes");
            }
        }
    });
    let service = Service {
        broker: Broker {
            reviewer: CachedReviewer::new(
                KubeReviewer::new(parts.client.clone(), config.audience),
                ReviewTtl::default(),
                ReviewBudget::new(config.review),
            ),
            issuer: Issuer {
                directory,
                secrets: ApiSecrets(parts.client),
                transport: parts.transport,
            },
            limits: Limits::new(config.caller, config.quota),
            ready,
            namespaces: parts.namespaces,
        },
        metrics: parts.metrics,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!(addr = %bound, scheme, "serving the once-code broker");
    Ok((
        bound,
        connections::serve(listener, LIMITS, tls, Arc::new(service), shutdown),
    ))
}
