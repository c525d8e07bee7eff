//! The engine over manifests on disk (`reconcile -f`): no cluster needed.
//! Statuses live in a status file instead of the status subresource, so
//! rotation tokens and crash safety behave exactly as in the cluster.

pub mod host;
pub mod manifests;
pub mod report;
pub mod status_file;

use crate::engine::host::EngineEvent;
use crate::engine::{Engine, Mode, ReconcileReport};
use futures::StreamExt;
use host::OfflineHost;
use manifests::{Loaded, key_of};

/// One resource's outcome.
#[derive(Debug, Clone)]
pub struct ResourceOutcome {
    /// `namespace/name`.
    pub key: String,
    /// Where it was defined.
    pub source: String,
    pub policy: crate::crd::ManagementPolicy,
    pub report: ReconcileReport,
    pub events: Vec<EngineEvent>,
}

/// Reconciles every resource, `concurrency` at a time; outcomes come back
/// in the order the resources were found.
pub async fn reconcile_all(
    engine: &Engine,
    host: &OfflineHost,
    resources: &[Loaded],
    mode: Mode,
    concurrency: usize,
) -> Vec<ResourceOutcome> {
    let all: Vec<crate::crd::ActivationCode> =
        resources.iter().map(|l| l.resource.clone()).collect();
    let mut outcomes: Vec<(usize, ResourceOutcome)> =
        futures::stream::iter(resources.iter().enumerate())
            .map(|(index, loaded)| {
                let all = &all;
                async move {
                    let key = key_of(&loaded.resource);
                    let mut resource = loaded.resource.clone();
                    resource.status = host.status_of(&key).await;
                    let span = tracing::info_span!("reconcile", resource = %key);
                    let report = tracing::Instrument::instrument(
                        engine.reconcile(&resource, all, host, mode, jiff::Timestamp::now()),
                        span,
                    )
                    .await;
                    let events = host.take_events(&key);
                    (
                        index,
                        ResourceOutcome {
                            key,
                            source: loaded.origin.clone(),
                            policy: resource.spec.management_policy,
                            report,
                            events,
                        },
                    )
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
    outcomes.sort_by_key(|(index, _)| *index);
    outcomes.into_iter().map(|(_, o)| o).collect()
}
