//! The cluster side: a kube-runtime Controller over ActivationCode that
//! drives the engine, keeps status through the status subresource, owns the
//! export Secrets, re-reconciles when a credentials Secret changes, and
//! backs off per object on errors.

pub mod cluster_host;
pub mod leader;
pub mod triggers;

use crate::crd::{ActivationCode, ActivationCodeStatus};
use crate::engine::{Engine, Mode, Next, ReconcileReport};
use crate::telemetry::metrics::OperatorMetrics;
use cluster_host::ClusterHost;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{Instrument, info, info_span, warn};

/// First retry after an error; doubles per consecutive failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Everything a reconcile needs, shared by all of them.
pub struct Context {
    pub client: Client,
    pub engine: Engine,
    pub recorder: Recorder,
    /// The resource caches of every controller (one per watched namespace).
    pub stores: Vec<Store<ActivationCode>>,
    pub metrics: Arc<OperatorMetrics>,
    /// The last status this process wrote, by uid: fresher than a cache
    /// that has not yet seen our own write, so a reset is never planned
    /// from a stale status.
    statuses: Mutex<HashMap<String, ActivationCodeStatus>>,
    /// Consecutive failures per `namespace/name`, for backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        engine: Engine,
        reporter: Reporter,
        stores: Vec<Store<ActivationCode>>,
        metrics: Arc<OperatorMetrics>,
    ) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            engine,
            stores,
            metrics,
            statuses: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    pub(crate) fn remember_status(&self, uid: String, status: ActivationCodeStatus) {
        self.statuses
            .lock()
            .expect("status cache lock")
            .insert(uid, status);
    }

    fn remembered_status(&self, uid: &str) -> Option<ActivationCodeStatus> {
        self.statuses
            .lock()
            .expect("status cache lock")
            .get(uid)
            .cloned()
    }

    fn all_resources(&self) -> Vec<Arc<ActivationCode>> {
        self.stores.iter().flat_map(Store::state).collect()
    }

    /// The requeue for a report; counts failures for backoff.
    fn next_action(&self, key: &str, next: Next) -> Action {
        let mut failures = self.failures.lock().expect("failure map lock");
        match next {
            Next::SyncAfter(interval) => {
                failures.remove(key);
                Action::requeue(jittered(interval, 0.1))
            }
            Next::AwaitChange => {
                failures.remove(key);
                Action::await_change()
            }
            Next::Retry { at_least } => {
                let count = failures.entry(key.to_owned()).or_insert(0);
                *count += 1;
                let delay = backoff(*count);
                Action::requeue(at_least.map_or(delay, |floor| delay.max(floor)))
            }
        }
    }
}

/// Exponential backoff with jitter: 5s, 10s, 20s, ... up to 5 minutes.
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let delay = BACKOFF_BASE
        .saturating_mul(1u32 << exponent)
        .min(BACKOFF_MAX);
    jittered(delay, 0.1)
}

/// `base` stretched by up to `share` at random, so resources spread out.
fn jittered(base: Duration, share: f64) -> Duration {
    base.mul_f64(1.0 + share * rand::random::<f64>())
}

fn same_robot_others(ctx: &Context, resource: &ActivationCode) -> Vec<ActivationCode> {
    ctx.all_resources()
        .into_iter()
        .filter(|o| o.spec.robot_id == resource.spec.robot_id && o.uid() != resource.uid())
        .map(|o| (*o).clone())
        .collect()
}

/// One reconcile of one ActivationCode.
pub async fn reconcile(
    resource: Arc<ActivationCode>,
    ctx: Arc<Context>,
) -> Result<Action, std::convert::Infallible> {
    let key = format!(
        "{}/{}",
        resource.namespace().unwrap_or_default(),
        resource.name_any()
    );
    let span = info_span!("reconcile", resource = %key, generation = resource.metadata.generation);
    async move {
        let started = std::time::Instant::now();
        let mut current = (*resource).clone();
        if let Some(status) = resource.uid().and_then(|uid| ctx.remembered_status(&uid)) {
            current.status = Some(status);
        }
        let others = same_robot_others(&ctx, &current);
        let host = ClusterHost { ctx: &ctx };
        let report = ctx
            .engine
            .reconcile(
                &current,
                &others,
                &host,
                Mode::Normal,
                jiff::Timestamp::now(),
            )
            .await;
        log_report(&report);
        ctx.metrics
            .record_reconcile(&key, &report, started.elapsed());
        Ok(ctx.next_action(&key, report.next))
    }
    .instrument(span)
    .await
}

fn log_report(report: &ReconcileReport) {
    let applied = report.applied.len();
    if report.converged {
        info!(
            reason = report.reason,
            planned = report.planned.len(),
            applied,
            "reconciled"
        );
    } else {
        warn!(
            reason = report.reason,
            planned = report.planned.len(),
            applied,
            "not converged"
        );
    }
}

/// The reconcile never fails (the engine reports into status), so this only
/// exists to satisfy the runtime.
fn error_policy(_: Arc<ActivationCode>, _: &std::convert::Infallible, _: Arc<Context>) -> Action {
    Action::requeue(BACKOFF_BASE)
}

/// What to watch.
#[derive(Debug, Clone, Default)]
pub struct WatchScope {
    /// Empty: every namespace.
    pub namespaces: Vec<String>,
    pub label_selector: Option<String>,
}

/// Builds one controller per watched namespace (or one for all).
pub fn controllers(
    client: &Client,
    scope: &WatchScope,
) -> Vec<(Controller<ActivationCode>, Api<Secret>)> {
    let mut config = watcher::Config::default();
    if let Some(selector) = scope.label_selector.as_deref().filter(|s| !s.is_empty()) {
        config = config.labels(selector);
    }
    let apis: Vec<(Api<ActivationCode>, Api<Secret>)> = if scope.namespaces.is_empty() {
        vec![(Api::all(client.clone()), Api::all(client.clone()))]
    } else {
        scope
            .namespaces
            .iter()
            .map(|ns| {
                (
                    Api::namespaced(client.clone(), ns),
                    Api::namespaced(client.clone(), ns),
                )
            })
            .collect()
    };
    apis.into_iter()
        .map(|(resources, secrets)| (Controller::new(resources, config.clone()), secrets))
        .collect()
}

/// Runs the controllers until `shutdown` resolves, then lets in-flight
/// reconciles finish. `on_synced` runs once every cache has its first list.
pub async fn run(
    built: Vec<(Controller<ActivationCode>, Api<Secret>)>,
    ctx: Arc<Context>,
    concurrency: u16,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    on_synced: impl FnOnce() + Send + 'static,
) {
    let stores = ctx.stores.clone();
    tokio::spawn(async move {
        for store in &stores {
            // kube-runtime's readiness signal wakes only its most recent
            // waiter (the controller's own runner), so poll it.
            loop {
                match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready())
                    .await
                {
                    Ok(Ok(())) => break,
                    Ok(Err(_)) => return,
                    Err(_) => continue,
                }
            }
        }
        on_synced();
    });
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    let runs = built.into_iter().map(|(controller, secrets)| {
        let store = controller.store();
        let ctx = ctx.clone();
        controller
            .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
            .watches(
                secrets,
                watcher::Config::default(),
                move |secret: Secret| triggers::resources_for_secret(&store, &secret),
            )
            .graceful_shutdown_on(shutdown.clone())
            .run(reconcile, error_policy, ctx)
            .for_each(|result| async move {
                if let Err(err) = result {
                    warn!(error = %err, "controller event");
                }
            })
    });
    futures::future::join_all(runs).await;
    info!("controllers stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        for (failures, base) in [(1, 5), (2, 10), (3, 20), (7, 300), (40, 300)] {
            let d = backoff(failures);
            let base = Duration::from_secs(base);
            assert!(d >= base && d <= base.mul_f64(1.1), "{failures}: {d:?}");
        }
    }
}
