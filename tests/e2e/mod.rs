//! The end-to-end harness: a real API server (whatever `KUBECONFIG` names:
//! the throwaway control plane of `scripts/control-plane`, kind, k3d, a
//! current release), the operator as a separate process that runs as a
//! ServiceAccount with the RBAC and environment the Helm chart renders, and
//! the MetaStudio simulator in the test process; for the alerts, a real
//! Prometheus scraping that process.
#![allow(dead_code)]

pub mod broker;
pub mod chart;
pub mod cluster;
pub mod image;
pub mod in_cluster;
pub mod operator;
pub mod prometheus;
pub mod release;
pub mod scenario;
pub mod tools;
pub mod turn;

pub use cluster::{Cluster, TestNamespace};
pub use operator::OperatorProcess;
pub use prometheus::PrometheusProcess;
pub use scenario::Scenario;

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `check` every 200 ms until it returns `Some`, failing after
/// `timeout` with `what` and the last state `describe` gives.
pub async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
