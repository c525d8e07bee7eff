//! The cluster side: a kube-runtime Controller over ActivationCode that
//! drives the engine, keeps status through the status subresource, owns the
//! export Secrets, re-reconciles when a credentials Secret changes, and
//! backs off per object on errors.
//!
//! With `--watch-namespaces` there is one kube-runtime controller per
//! namespace (a reflector store cannot be fed by several watches); they
//! share one set of [`Slots`], so `--concurrency` bounds the reconciles at
//! work across the whole operator, not per namespace. A reconcile that
//! waits for its tenant's budget gives its slot back meanwhile (see
//! [`crate::slots`]), so one tenant's slow budget delays no other tenant.
//!
//! A panic in a reconcile ends that reconcile only ([`isolated`]): the
//! resource gets `Ready=False`, `Stalled`, reason `InternalError` with an
//! Event, the panic is counted (`metastudio_reconcile_panics_total`), and
//! every other resource goes on.

pub mod backoff;
pub mod cluster_host;
pub mod connections;
pub mod crd_check;
pub mod directory;
pub mod events;
pub mod finalizer;
pub mod leader;
pub mod nudges;
pub mod restarts;
pub mod triggers;

use crate::crd::{ActivationCode, ActivationCodeStatus};
use crate::engine::conditions::reason;
use crate::engine::{Engine, Mode, Next, ReconcileReport};
use crate::panics;
use crate::slots::Slots;
use crate::telemetry::metrics::{Census, OperatorMetrics};
use cluster_host::ClusterHost;
use connections::ConnectionWatches;
use directory::ClusterDirectory;
use events::EventPublisher;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use nudges::Nudges;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{Instrument, error, info, info_span, warn};

/// First retry after an error; doubles per consecutive failure.
pub use backoff::{BACKOFF_BASE, BACKOFF_MAX, ReconcileError, backoff};
use backoff::{Failures, jittered};

/// Everything a reconcile needs, shared by all of them.
pub struct Context {
    pub client: Client,
    pub engine: Engine,
    /// Writes the engine's events as Kubernetes Events.
    pub events: EventPublisher,
    /// The resource caches of every controller (one per watched namespace).
    pub stores: Vec<Store<ActivationCode>>,
    /// The connection resources and namespaces the tenancy decision reads.
    pub directory: ClusterDirectory,
    /// Whether `directory` has its first lists: before, a connection that
    /// exists may look missing, so no ActivationCode is decided.
    directory_ready: AtomicBool,
    pub metrics: Arc<OperatorMetrics>,
    /// The last status this process wrote, by uid: fresher than a cache
    /// that has not yet seen our own write, so a reset is never planned
    /// from a stale status.
    statuses: Mutex<HashMap<String, RememberedStatus>>,
    /// Consecutive failures per `namespace/name`, for `error_policy`.
    failures: Failures,
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
            events: EventPublisher::new(client.clone(), reporter),
            client,
            engine,
            stores,
            directory: ClusterDirectory::of(&[], &[], &[]),
            directory_ready: AtomicBool::new(true),
            metrics,
            statuses: Mutex::default(),
            failures: Failures::default(),
        }
    }

    /// The connection resources and namespaces of the cluster; until their
    /// caches have synced ([`run`] tells), reconciles wait.
    pub fn with_directory(mut self, directory: ClusterDirectory) -> Self {
        self.directory = directory;
        self.directory_ready = AtomicBool::new(false);
        self
    }

    /// A directory that holds everything there is already (no watch feeds
    /// it): see [`ClusterDirectory::of`].
    pub fn with_synced_directory(mut self, directory: ClusterDirectory) -> Self {
        self.directory = directory;
        self.directory_ready = AtomicBool::new(true);
        self
    }

    pub(crate) fn remember_status(&self, uid: String, status: RememberedStatus) {
        self.statuses
            .lock()
            .expect("status cache lock")
            .insert(uid, status);
    }

    fn forget_status(&self, uid: &str) {
        self.statuses.lock().expect("status cache lock").remove(uid);
    }

    /// The resource as this process last knew it: the cached object, or,
    /// while the cache has not yet seen this process's last status write,
    /// that status at the resourceVersion the write produced. Either way a
    /// status write carries the version the plan was made from, so a stale
    /// choice costs a 409 and a fresh read, never a double reset.
    pub(crate) fn freshest(&self, cached: &ActivationCode) -> ActivationCode {
        let mut current = cached.clone();
        let statuses = self.statuses.lock().expect("status cache lock");
        if let Some(remembered) = cached.uid().and_then(|uid| statuses.get(&uid))
            && cached.status.as_ref() != Some(&*remembered.status)
        {
            current.status = Some((*remembered.status).clone());
            current
                .metadata
                .resource_version
                .clone_from(&remembered.resource_version);
        }
        current
    }

    pub(crate) fn all_resources(&self) -> Vec<Arc<ActivationCode>> {
        self.stores.iter().flat_map(Store::state).collect()
    }

    /// Forgets the remembered statuses, callers and failure counts of
    /// resources that are no longer in the caches (deleted, or no longer selected):
    /// kube-runtime does not reconcile deleted objects, so nothing else
    /// would.
    fn prune(&self) {
        let resources = self.all_resources();
        let uids: HashSet<String> = resources.iter().filter_map(|r| r.uid()).collect();
        let keys: HashSet<String> = resources.iter().map(|r| key_of(r)).collect();
        self.statuses
            .lock()
            .expect("status cache lock")
            .retain(|uid, _| uids.contains(uid));
        self.engine.forget_callers_except(&uids);
        self.failures.retain(&keys);
    }

    /// What the watched resources currently report (the status this process
    /// last wrote, else the cached one), for the gauges on `/metrics`.
    /// Computed at scrape time from the caches, so deleted resources drop
    /// out at once.
    pub fn census(&self) -> Census {
        let resources = self.all_resources();
        let remembered = self.statuses.lock().expect("status cache lock");
        let mut census = Census::default();
        for resource in &resources {
            let status = resource
                .uid()
                .and_then(|uid| remembered.get(&uid).map(|s| &*s.status))
                .or(resource.status.as_ref());
            census.add(resource, status);
        }
        census
    }

    /// The requeue for a report that succeeded, or the fault for
    /// `error_policy` to back off from.
    fn outcome(
        &self,
        key: &str,
        report: &ReconcileReport,
        replans: u32,
    ) -> Result<Action, ReconcileError> {
        let action = match report.next {
            Next::SyncAfter(interval) => Action::requeue(jittered(interval, 0.1)),
            Next::AwaitChange => Action::await_change(),
            Next::Replan => return Err(ReconcileError::KeptChanging { replans }),
            Next::Retry { at_least } => {
                return Err(ReconcileError::Retry {
                    reason: report.reason,
                    at_least,
                });
            }
        };
        self.failures.succeeded(key);
        Ok(action)
    }
}

/// `namespace/name`.
fn key_of(resource: &ActivationCode) -> String {
    format!(
        "{}/{}",
        resource.namespace().unwrap_or_default(),
        resource.name_any()
    )
}

/// The status of a resource as this process last wrote it.
#[derive(Debug, Clone)]
pub struct RememberedStatus {
    pub status: Arc<ActivationCodeStatus>,
    /// The resourceVersion that write produced.
    pub resource_version: Option<String>,
}

/// How often one reconcile reads the resource again and replans after the
/// stored resource changed under it, before it backs off.
const MAX_REPLANS: u32 = 3;

/// One reconcile of one ActivationCode. A fault is an `Err` for
/// [`error_policy`] to back off from; its details are in the status.
pub async fn reconcile(
    resource: Arc<ActivationCode>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let key = key_of(&resource);
    let span = info_span!("reconcile", resource = %key, generation = resource.metadata.generation);
    async move {
        if !ctx.directory_ready.load(Ordering::Acquire) {
            // Deciding now could refuse a connection that exists.
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        ctx.prune();
        let mut current = (*resource).clone();
        let mut replans = 0;
        let report = loop {
            let started = std::time::Instant::now();
            let report = reconcile_once(&ctx, &current).await;
            ctx.metrics.record_reconcile(&report, started.elapsed());
            if report.next != Next::Replan || replans == MAX_REPLANS {
                break report;
            }
            replans += 1;
            match read_again(&ctx, &current).await {
                Ok(Some(fresh)) => current = fresh,
                Ok(None) => return Ok(Action::await_change()),
                Err(err) => {
                    warn!(error = %err, "cannot read the resource again after it changed");
                    break report;
                }
            }
        };
        log_report(&report);
        ctx.outcome(&key, &report, replans)
    }
    .instrument(span)
    .await
}

/// One sync, with the finalizer of spec.deletionPolicy kept around it:
/// added or removed before, removed after a teardown or for a resource
/// deleted with its codes kept. No code is created without the finalizer:
/// a sync whose finalizer could not be added only plans (a dry run: no
/// remote write, no status) and is tried again.
async fn reconcile_once(ctx: &Context, current: &ActivationCode) -> ReconcileReport {
    let step = crate::crd::deletion::step(current);
    let (current, before) = finalizer::before(ctx, current, step).await;
    let mode = match (step, &before) {
        (crate::crd::deletion::Step::Add, Err(_)) => Mode::DryRun,
        _ => Mode::Normal,
    };
    let host = ClusterHost::new(ctx, &current);
    let mut report = ctx
        .engine
        .reconcile(&current, &host, mode, jiff::Timestamp::now())
        .await;
    let after = match before {
        Ok(()) => finalizer::after(ctx, &host, &current, step, &report).await,
        failed => failed,
    };
    if let Err(err) = after {
        finalizer::failed(&host, &current, &mut report, &err).await;
    }
    report
}

/// What kube-runtime runs for each ActivationCode: [`reconcile`] in one of
/// `slots` (given back while the reconcile waits for its tenant's budget:
/// see [`crate::slots`]), a panic in it isolated ([`isolated`]).
pub async fn reconcile_in_slot(
    resource: Arc<ActivationCode>,
    ctx: Arc<Context>,
    slots: Slots,
) -> Result<Action, ReconcileError> {
    slots.run(isolated(resource, ctx, reconcile)).await
}

/// Runs `reconcile` (the real one, or a test's) so that a panic in it ends
/// this reconcile only: it is counted (`metastudio_reconcile_panics_total`),
/// the resource gets `Ready=False`, `Stalled`, reason `InternalError` with a
/// Warning Event (the panic's place, never a formatted message: see
/// [`panics`]), and it is retried with backoff.
pub async fn isolated<F, Fut>(
    resource: Arc<ActivationCode>,
    ctx: Arc<Context>,
    reconcile: F,
) -> Result<Action, ReconcileError>
where
    F: FnOnce(Arc<ActivationCode>, Arc<Context>) -> Fut,
    Fut: Future<Output = Result<Action, ReconcileError>>,
{
    let panicked = match panics::catch(reconcile(resource.clone(), ctx.clone())).await {
        Ok(result) => return result,
        Err(panicked) => panicked,
    };
    ctx.metrics.reconcile_panics.inc();
    let key = key_of(&resource);
    let span = info_span!("reconcile", resource = %key, generation = resource.metadata.generation);
    let started = std::time::Instant::now();
    let recorded = panics::catch(async {
        let host = ClusterHost::new(&ctx, &resource);
        ctx.engine
            .internal_error(
                &resource,
                &host,
                &panicked,
                Mode::Normal,
                jiff::Timestamp::now(),
            )
            .await
    })
    .instrument(span.clone())
    .await;
    let _entered = span.enter();
    match recorded {
        Ok(report) => {
            ctx.metrics.record_reconcile(&report, started.elapsed());
            log_report(&report);
            ctx.outcome(&key, &report, 0)
        }
        Err(again) => {
            error!(%again, "recording the internal error panicked too; retrying with backoff");
            Err(ReconcileError::Retry {
                reason: reason::INTERNAL_ERROR,
                at_least: None,
            })
        }
    }
}

/// The resource as the API server holds it now (`None`: it is gone), for a
/// reconcile whose status write found it changed. The remembered status is
/// dropped: the fresh read is newer.
async fn read_again(
    ctx: &Context,
    current: &ActivationCode,
) -> Result<Option<ActivationCode>, kube::Error> {
    if let Some(uid) = current.uid() {
        ctx.forget_status(&uid);
    }
    let api: Api<ActivationCode> =
        Api::namespaced(ctx.client.clone(), &current.namespace().unwrap_or_default());
    info!("the resource changed since it was read: reading it again");
    api.get_opt(&current.name_any()).await
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

/// The requeue after a failed reconcile: exponential backoff per resource
/// (see [`backoff`]), never sooner than the fault asks.
pub fn error_policy(
    resource: Arc<ActivationCode>,
    err: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    Action::requeue(ctx.failures.delay_after(&key_of(&resource), err))
}

/// What to watch.
#[derive(Debug, Clone, Default)]
pub struct WatchScope {
    /// Empty: every namespace. Each at most once: two watchers of one
    /// namespace would reconcile its resources twice at once.
    pub namespaces: Vec<String>,
    pub label_selector: Option<String>,
}

impl WatchScope {
    /// The namespaces as given (`--watch-namespaces a,b`), without empty
    /// names and repeats, in their first order.
    pub fn new(namespaces: &[String], label_selector: Option<String>) -> Self {
        let mut unique: Vec<String> = Vec::new();
        for namespace in namespaces.iter().filter(|n| !n.is_empty()) {
            if !unique.contains(namespace) {
                unique.push(namespace.clone());
            }
        }
        Self {
            namespaces: unique,
            label_selector,
        }
    }
}

/// One controller, the Secrets (metadata only) that trigger it, and the
/// namespace it watches (`None`: every namespace).
pub struct Watched {
    pub controller: Controller<ActivationCode>,
    /// Metadata only.
    pub secrets: Api<PartialObjectMeta<Secret>>,
    pub namespace: Option<String>,
}

/// Builds one controller per watched namespace (or one for all).
pub fn controllers(client: &Client, scope: &WatchScope) -> Vec<Watched> {
    let mut config = watcher::Config::default();
    if let Some(selector) = scope.label_selector.as_deref().filter(|s| !s.is_empty()) {
        config = config.labels(selector);
    }
    let namespaces: Vec<Option<&String>> = if scope.namespaces.is_empty() {
        vec![None]
    } else {
        scope.namespaces.iter().map(Some).collect()
    };
    namespaces
        .into_iter()
        .map(|namespace| {
            let (resources, secrets) = match namespace {
                None => (Api::all(client.clone()), Api::all(client.clone())),
                Some(ns) => (
                    Api::namespaced(client.clone(), ns),
                    Api::namespaced(client.clone(), ns),
                ),
            };
            let (reader, writer) = reflector::store();
            // The cache keeps every change, but only new resources, spec
            // changes and the deletion marking (a new generation), and the
            // owner's orphan annotation, trigger a reconcile: the status each
            // reconcile writes (lastSyncTime at least) would otherwise
            // trigger the next one at once, and the operator would list the
            // remote codes in a loop. Drift checks come from the requeue
            // after syncInterval; credentials changes from the Secret watch.
            let changes = watcher(resources, config.clone())
                .default_backoff()
                .reflect(writer)
                .applied_objects()
                .predicate_filter(triggers::reconcile_worthy, Default::default());
            Watched {
                controller: Controller::for_stream(changes, reader),
                secrets,
                namespace: namespace.cloned(),
            }
        })
        .collect()
}

/// How the controllers run.
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    /// Reconciles in flight at once, across every watched namespace.
    pub concurrency: u16,
    /// How long in-flight reconciles may take to finish after shutdown was
    /// requested before they are abandoned.
    pub drain_timeout: Duration,
}

/// Runs the controllers until `shutdown` resolves, then lets in-flight
/// reconciles finish for at most `limits.drain_timeout` and abandons the
/// rest. `on_synced` runs once every cache has its first list.
///
/// Abandoning a reconcile midway is safe: before each reset the engine
/// records the reset's intent (code, token, the code's previous update time
/// and fingerprint) in status, and the next reconcile (by this process or
/// the next leader) decides from the remote code whether the reset
/// happened; updates are idempotent; the status write is a server-side
/// apply of the whole status. So an abandoned reconcile is repeated, never
/// doubled.
pub async fn run(
    built: Vec<Watched>,
    connections: ConnectionWatches,
    ctx: Arc<Context>,
    limits: RunLimits,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    on_synced: impl FnOnce() + Send + 'static,
) {
    tokio::spawn(announce_when_synced(ctx.clone(), on_synced));
    let shutdown = futures::future::FutureExt::shared(Box::pin(shutdown));
    let slots = Slots::new(usize::from(limits.concurrency));
    let nudges = Nudges::default();
    let runs: Vec<_> = built
        .into_iter()
        .map(|watched| {
            let nudged = nudges.channel(watched.namespace.clone());
            run_controller(watched, nudged, &ctx, &slots, shutdown.clone())
        })
        .collect();
    let connection_tasks = connections.into_tasks(ctx.clone(), nudges, shutdown.clone());
    let drained = futures::future::join(
        futures::future::join_all(runs),
        futures::future::join_all(connection_tasks),
    );
    let deadline = async {
        shutdown.clone().await;
        tokio::time::sleep(limits.drain_timeout).await;
    };
    tokio::select! {
        _ = drained => info!("controllers stopped"),
        () = deadline => warn!(
            timeout = ?limits.drain_timeout,
            "in-flight reconciles did not finish in time after shutdown was requested: abandoned them (recorded reset intents make the next reconcile settle them)"
        ),
    }
}

/// Waits until every cache has its first list, then lets reconciles
/// decide connections and runs `on_synced`.
async fn announce_when_synced(ctx: Arc<Context>, on_synced: impl FnOnce()) {
    for store in &ctx.stores {
        // kube-runtime's readiness signal wakes only its most recent waiter
        // (the controller's own runner), so poll it.
        loop {
            match tokio::time::timeout(Duration::from_millis(200), store.wait_until_ready()).await {
                Ok(Ok(())) => break,
                Ok(Err(_)) => return,
                Err(_) => continue,
            }
        }
    }
    let started = std::time::Instant::now();
    let mut warned_at = Duration::ZERO;
    loop {
        match tokio::time::timeout(Duration::from_millis(200), ctx.directory.wait_until_ready())
            .await
        {
            Ok(Ok(())) => break,
            Ok(Err(_)) => return,
            Err(_) if started.elapsed() >= warned_at + DIRECTORY_PATIENCE => {
                warned_at = started.elapsed();
                warn!(
                    "MetaStudioConnections, ClusterMetaStudioConnections and Namespaces are not listed yet, so no ActivationCode is reconciled: check that their CRDs are installed (kubectl apply --server-side -f crds/) and that the operator may list and watch them"
                );
            }
            Err(_) => {}
        }
    }
    ctx.directory_ready.store(true, Ordering::Release);
    on_synced();
}

/// How long the first lists of the connection resources may take before
/// the operator says what may be missing (and again after as long).
const DIRECTORY_PATIENCE: Duration = Duration::from_secs(30);

/// One ActivationCode controller, triggered by its resources, their
/// Secrets and the nudges of its namespace. kube-runtime itself runs any
/// number of reconciles at once (one per resource at most): `slots` bounds
/// those at work, and one that waits for its tenant's budget must not
/// count.
fn run_controller(
    watched: Watched,
    nudged: futures::channel::mpsc::UnboundedReceiver<
        kube::runtime::reflector::ObjectRef<ActivationCode>,
    >,
    ctx: &Arc<Context>,
    slots: &Slots,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> impl Future<Output = ()> {
    let store = watched.controller.store();
    let trigger_ctx = ctx.clone();
    let slots = slots.clone();
    watched
        .controller
        .with_config(kube::runtime::controller::Config::default().concurrency(0))
        // A metadata-only watch: Secret data never streams through the
        // operator, and the metadata it needs not is dropped on arrival.
        .watches_stream(
            watcher(watched.secrets, watcher::Config::default())
                .default_backoff()
                .modify(triggers::strip)
                .touched_objects(),
            move |secret: PartialObjectMeta<Secret>| {
                triggers::resources_for_secret(&store, &trigger_ctx.directory, &secret)
            },
        )
        .reconcile_on(nudged)
        .graceful_shutdown_on(shutdown)
        .run(
            move |resource, ctx| reconcile_in_slot(resource, ctx, slots.clone()),
            error_policy,
            ctx.clone(),
        )
        .for_each(|result| async move {
            match result {
                // The reconcile logged its report and wrote its status.
                Err(kube::runtime::controller::Error::ReconcilerFailed(err, _)) => {
                    tracing::debug!(error = %err, "reconcile failed");
                }
                Err(err) => warn!(error = %err, "controller event"),
                Ok(_) => {}
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_scope_keeps_each_namespace_once_in_order() {
        let given: Vec<String> = ["b", "a", "", "b", "a", "c"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(WatchScope::new(&given, None).namespaces, ["b", "a", "c"]);
        assert!(
            WatchScope::new(&[String::new()], None)
                .namespaces
                .is_empty()
        );
    }
}
