//! What the engine needs from the side that keeps resources and statuses:
//! the cluster (`controller`) or files on disk (`offline`).

use crate::crd::{ActivationCode, ActivationCodeStatus};
use crate::metastudio::ActiveCode;
use crate::secret::Secret;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

/// A failure of the host's own storage (API server, file system).
#[derive(Debug, thiserror::Error)]
#[error("{action}: {source}")]
pub struct HostError {
    /// What the host was doing, e.g. "patch status of retail/lobby".
    pub action: String,
    /// Whether the stored resource changed since it was read.
    pub stale: bool,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl HostError {
    pub fn new(
        action: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            action: action.into(),
            stale: false,
            source: source.into(),
        }
    }

    /// The write was refused because the stored resource changed since the
    /// version the plan was made from (HTTP 409 on a resourceVersion
    /// precondition): someone else reconciled or edited it. Nothing was
    /// written; read the resource again and plan anew.
    pub fn stale(
        action: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            stale: true,
            ..Self::new(action, source)
        }
    }
}

/// A Kubernetes-style event about one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineEvent {
    pub warning: bool,
    /// CamelCase cause, e.g. `CodeReset`.
    pub reason: &'static str,
    /// What the operator did, e.g. `Reset`.
    pub action: &'static str,
    /// Human text; never a secret.
    pub note: String,
}

/// Where credentials Secrets are read: the cluster's API, or the Secret
/// manifests on disk.
pub trait SecretSource: Sync {
    /// The decoded data of a Secret in `namespace`; `Ok(None)` when it does
    /// not exist.
    fn secret_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<BTreeMap<String, Secret>>, HostError>> + Send;
}

/// The connection resources and namespaces the tenancy decision reads
/// come from the host too ([`crate::tenancy::Directory`]), and so do the
/// credentials Secrets ([`SecretSource`]).
pub trait Host: SecretSource + crate::tenancy::Directory {
    /// `resource` with the status this host last stored for it (its newest
    /// reset ledger and intents), which the reconcile plans from. In a
    /// cluster the cache may not have seen the last write yet; on disk the
    /// status file holds it.
    fn current(&self, resource: &ActivationCode) -> ActivationCode;

    /// The other resources this host holds that manage the same robot: the
    /// engine decides which of them select the same codes (the oldest
    /// manages them; see [`crate::engine::Engine::reconcile`]).
    fn same_robot(&self, resource: &ActivationCode) -> Vec<ActivationCode>;

    /// Stores the resource's status. Called before resets (recording their
    /// intents) and at the end of every reconcile. A status with pending
    /// resets must be durable when this returns, as resets start right
    /// after; a host may keep others back and store them later. The host
    /// may keep the `Arc`: the report shares it, so a large fleet holds
    /// each status once.
    ///
    /// A host where several writers may reconcile one resource (the
    /// cluster: overlapping installs, a paused leader) writes only if the
    /// resource is still at the version the reconcile read, and answers
    /// [`HostError::stale`] otherwise, so two reconcilers never both record
    /// intents for (and reset) the same codes.
    fn save_status(
        &self,
        resource: &ActivationCode,
        status: &Arc<ActivationCodeStatus>,
    ) -> impl Future<Output = Result<(), HostError>> + Send;

    /// Writes the managed codes' values to the export Secret.
    fn export(
        &self,
        resource: &ActivationCode,
        secret_name: &str,
        codes: &[ActiveCode],
    ) -> impl Future<Output = Result<(), HostError>> + Send;

    /// Whether a resource being deleted here with spec.deletionPolicy
    /// Delete, held by its finalizer, has the codes it created deleted (see
    /// [`crate::engine::teardown`]): in a cluster. Files have no deletion,
    /// so `reconcile -f` never does, whatever a manifest's metadata says.
    fn tears_down(&self) -> bool {
        false
    }

    /// Publishes an event, best effort.
    fn event(
        &self,
        resource: &ActivationCode,
        event: &EngineEvent,
    ) -> impl Future<Output = ()> + Send;
}
