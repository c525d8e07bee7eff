//! Leader election on a `coordination.k8s.io` Lease (kube-lease-manager):
//! only the holder reconciles; a standby takes over once the lease expires;
//! losing the lease stops the work at once; shutdown releases it.

use kube::Client;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// This replica's identity, usually the pod name.
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("leader election on Lease {namespace}/{name} failed: {source}")]
    Lease {
        namespace: String,
        name: String,
        #[source]
        source: LeaseManagerError,
    },
}

/// Runs `work` while this replica holds the lease, until `shutdown` turns
/// true. `on_change(true|false)` reports leadership (for metrics, readiness).
/// `work` is dropped, ending it at once, when the lease is lost.
pub async fn run_while_leading<W, F>(
    client: Client,
    settings: LeaseSettings,
    mut shutdown: watch::Receiver<bool>,
    mut on_change: impl FnMut(bool),
    mut work: W,
) -> Result<(), LeaderError>
where
    W: FnMut() -> F,
    F: Future<Output = ()>,
{
    let fail = |source| LeaderError::Lease {
        namespace: settings.namespace.clone(),
        name: settings.name.clone(),
        source,
    };
    let seconds = settings.duration.as_secs().max(3);
    let manager = LeaseManagerBuilder::new(client, &settings.name)
        .with_namespace(&settings.namespace)
        .with_identity(&settings.identity)
        .with_duration(seconds)
        .with_grace((seconds / 3).max(1))
        .with_field_manager(format!("metastudio-operator-{}", settings.identity))
        .build()
        .await
        .map_err(fail)?;
    let (mut leading, task) = manager.watch().await;
    on_change(false);
    info!(lease = %settings.name, identity = %settings.identity, "waiting for the leader lease");
    'outer: loop {
        while !*leading.borrow_and_update() {
            tokio::select! {
                changed = leading.changed() => if changed.is_err() { break 'outer },
                _ = shutdown.wait_for(|stop| *stop) => break 'outer,
            }
        }
        info!(identity = %settings.identity, "acquired the leader lease: reconciling");
        on_change(true);
        let lost = async {
            loop {
                if leading.changed().await.is_err() || !*leading.borrow_and_update() {
                    return;
                }
            }
        };
        tokio::select! {
            _ = work() => break 'outer,
            _ = lost => {
                warn!(identity = %settings.identity, "lost the leader lease: stopped reconciling");
                on_change(false);
            }
        }
    }
    on_change(false);
    drop(leading);
    // Dropping the receiver makes the lease task release the lease and end.
    match task.await {
        Ok(Ok(_)) => info!("released the leader lease"),
        Ok(Err(err)) => {
            warn!(error = %err, "could not release the leader lease; it expires by itself")
        }
        Err(err) => warn!(error = %err, "lease task failed"),
    }
    Ok(())
}
