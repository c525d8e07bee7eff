//! The connection resources in the cluster: their caches (which the
//! tenancy decision reads), the ActivationCodes a change to one of them or
//! to a namespace's labels concerns (reconciled at once, "nudged"), and
//! each connection's status: Ready when its credentials Secret exists and
//! is well formed and MetaStudio has not rejected the credentials, how many
//! ActivationCodes use it, where its calls go.

use super::Context;
use super::cluster_host::FIELD_MANAGER;
use super::directory::ClusterDirectory;
use super::nudges::{LastSeen, Nudges};
use crate::crd::connection::{
    ClusterMetaStudioConnection, ConnectionKind, ConnectionStatus, ConnectionTarget,
    MetaStudioConnection,
};
use crate::crd::{API_VERSION, ActivationCode};
use crate::credentials;
use crate::engine::conditions::{self, READY, reason};
use crate::panics;
use crate::tenancy;
use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret as KubeSecret};
use kube::api::{Api, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tracing::{Instrument, error, info_span, warn};

/// How often a connection's status is looked at again without a change to
/// it: the count of its users, a rejection seen meanwhile, its Secret.
pub const STATUS_REFRESH: Duration = Duration::from_secs(30);

/// The condition, beside Ready, of a connection whose tokens travel
/// unencrypted.
pub const INSECURE_TRANSPORT: &str = "InsecureTransport";

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The watches of the connection resources and namespaces, before they run.
pub struct ConnectionWatches {
    directory: ClusterDirectory,
    /// Each namespaced cache with its writer and watch.
    connections: Vec<(
        Store<MetaStudioConnection>,
        Api<MetaStudioConnection>,
        Writer<MetaStudioConnection>,
    )>,
    cluster: (
        Api<ClusterMetaStudioConnection>,
        Writer<ClusterMetaStudioConnection>,
    ),
    namespaces: (
        Api<PartialObjectMeta<Namespace>>,
        Writer<PartialObjectMeta<Namespace>>,
    ),
}

type Writer<K> = reflector::store::Writer<K>;

impl ConnectionWatches {
    /// MetaStudioConnections in `namespaces` (empty: all),
    /// ClusterMetaStudioConnections, and namespaces' metadata.
    pub fn new(client: &Client, namespaces: &[String]) -> Self {
        let apis: Vec<Api<MetaStudioConnection>> = if namespaces.is_empty() {
            vec![Api::all(client.clone())]
        } else {
            namespaces
                .iter()
                .map(|ns| Api::namespaced(client.clone(), ns))
                .collect()
        };
        let connections: Vec<_> = apis
            .into_iter()
            .map(|api| {
                let (store, writer) = reflector::store();
                (store, api, writer)
            })
            .collect();
        let (cluster_store, cluster_writer) = reflector::store();
        let (namespace_store, namespace_writer) = reflector::store();
        Self {
            directory: ClusterDirectory {
                connections: connections.iter().map(|(s, _, _)| s.clone()).collect(),
                cluster_connections: cluster_store,
                namespaces: namespace_store,
            },
            connections,
            cluster: (Api::all(client.clone()), cluster_writer),
            namespaces: (Api::all(client.clone()), namespace_writer),
        }
    }

    /// The caches, for the Context.
    pub fn directory(&self) -> ClusterDirectory {
        self.directory.clone()
    }

    /// The tasks that only keep the caches, until `shutdown`: for readers
    /// that write nothing (the once-code broker, on every replica).
    pub fn into_reflectors(
        self,
        shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
    ) -> Vec<Task> {
        let mut watches: Vec<Task> = Vec::new();
        for (_, api, writer) in self.connections {
            watches.push(reflect(api, writer));
        }
        watches.push(reflect(self.cluster.0, self.cluster.1));
        watches.push(reflect(self.namespaces.0, self.namespaces.1));
        watches
            .into_iter()
            .map(|watch| {
                let shutdown = shutdown.clone();
                async move {
                    tokio::select! {
                        () = watch => {},
                        () = shutdown => {},
                    }
                }
                .boxed()
            })
            .collect()
    }

    /// The tasks that keep the caches, nudge ActivationCodes and write the
    /// connections' status, until `shutdown`.
    pub fn into_tasks(
        self,
        ctx: Arc<Context>,
        nudges: Nudges,
        shutdown: impl Future<Output = ()> + Send + Sync + Clone + 'static,
    ) -> Vec<Task> {
        let mut tasks: Vec<Task> = Vec::new();
        for (store, api, writer) in self.connections {
            let nudger = ConnectionNudger::new(ConnectionKind::MetaStudioConnection, &ctx, &nudges);
            let stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .reflect(writer)
                .inspect_ok(move |event| nudger.on(event))
                .applied_objects();
            let controller = Controller::for_stream(stream, store);
            tasks.push(status_controller(
                controller,
                ctx.clone(),
                shutdown.clone(),
                reconcile_connection,
            ));
        }
        let (api, writer) = self.cluster;
        let store = self.directory.cluster_connections.clone();
        let nudger =
            ConnectionNudger::new(ConnectionKind::ClusterMetaStudioConnection, &ctx, &nudges);
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .inspect_ok(move |event| nudger.on(event))
            .applied_objects();
        let controller = Controller::for_stream(stream, store);
        tasks.push(status_controller(
            controller,
            ctx.clone(),
            shutdown.clone(),
            reconcile_cluster_connection,
        ));
        let (api, writer) = self.namespaces;
        let nudger = NamespaceNudger {
            ctx,
            nudges,
            labels: LastSeen::default(),
        };
        let namespaces = watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(writer)
            .inspect_ok(move |event| nudger.on(event))
            .for_each(|_| async {})
            .boxed();
        tasks.push(
            async move {
                tokio::select! {
                    () = namespaces => {},
                    () = shutdown => {},
                }
            }
            .boxed(),
        );
        tasks
    }
}

/// Keeps `writer`'s cache of what `api` lists and watches. A failed watch
/// is retried with backoff and said in the log (RBAC, a missing CRD), so
/// that a cache that stays empty is not a mystery.
fn reflect<K>(api: Api<K>, writer: Writer<K>) -> Task
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let kind = K::kind(&()).into_owned();
    watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .for_each(move |event| {
            if let Err(err) = event {
                warn!(kind = %kind, error = %err, "watch failed; retrying with backoff");
            }
            async {}
        })
        .boxed()
}

/// Runs the status controller of one connection kind until `shutdown`.
fn status_controller<K, F>(
    controller: Controller<K>,
    ctx: Arc<Context>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    reconcile: fn(Arc<K>, Arc<Context>) -> F,
) -> Task
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    F: Future<Output = Result<Action, std::convert::Infallible>> + Send + 'static,
{
    controller
        .graceful_shutdown_on(shutdown)
        .run(
            move |object, ctx| isolated_status(object, ctx, reconcile),
            |_, _, _| Action::requeue(STATUS_REFRESH),
            ctx,
        )
        .for_each(|result| async move {
            if let Err(err) = result {
                warn!(error = %err, "connection controller event");
            }
        })
        .boxed()
}

/// Runs a connection's status `reconcile` (the real one, or a test's) so
/// that a panic in it, on whatever a tenant wrote in the connection, ends
/// this reconcile only: it is counted (`metastudio_reconcile_panics_total`),
/// logged with its place (see [`crate::panics`]), and the connection is
/// looked at again after [`STATUS_REFRESH`]; the process and every other
/// resource go on.
pub async fn isolated_status<K, F>(
    object: Arc<K>,
    ctx: Arc<Context>,
    reconcile: fn(Arc<K>, Arc<Context>) -> F,
) -> Result<Action, std::convert::Infallible>
where
    K: Resource<DynamicType = ()>,
    F: Future<Output = Result<Action, std::convert::Infallible>>,
{
    let name = object.meta().name.clone().unwrap_or_default();
    match panics::catch(async { reconcile(object, ctx.clone()).await }).await {
        Ok(result) => result,
        Err(panicked) => {
            ctx.metrics.reconcile_panics.inc();
            error!(kind = %K::kind(&()), %name, %panicked, "the status reconcile of a connection panicked; it is looked at again later");
            Ok(Action::requeue(STATUS_REFRESH))
        }
    }
}

/// A connection, either kind, as its status needs it.
struct Subject<'a> {
    kind: ConnectionKind,
    /// Set for a MetaStudioConnection.
    namespace: Option<String>,
    name: String,
    generation: Option<i64>,
    target: &'a ConnectionTarget,
    /// Where its credentials are.
    secret: (String, String),
    status: Option<&'a ConnectionStatus>,
}

async fn reconcile_connection(
    connection: Arc<MetaStudioConnection>,
    ctx: Arc<Context>,
) -> Result<Action, std::convert::Infallible> {
    let namespace = connection.namespace().unwrap_or_default();
    let subject = Subject {
        kind: ConnectionKind::MetaStudioConnection,
        secret: (
            namespace.clone(),
            connection.spec.credentials_secret_ref.name.clone(),
        ),
        namespace: Some(namespace),
        name: connection.name_any(),
        generation: connection.metadata.generation,
        target: &connection.spec.target,
        status: connection.status.as_ref(),
    };
    let api: Api<MetaStudioConnection> = Api::namespaced(
        ctx.client.clone(),
        subject.namespace.as_deref().unwrap_or_default(),
    );
    Ok(refresh(&ctx, &subject, &api).await)
}

async fn reconcile_cluster_connection(
    connection: Arc<ClusterMetaStudioConnection>,
    ctx: Arc<Context>,
) -> Result<Action, std::convert::Infallible> {
    let secret = &connection.spec.credentials_secret_ref;
    let subject = Subject {
        kind: ConnectionKind::ClusterMetaStudioConnection,
        namespace: None,
        name: connection.name_any(),
        generation: connection.metadata.generation,
        target: &connection.spec.target,
        secret: (secret.namespace.clone(), secret.name.clone()),
        status: connection.status.as_ref(),
    };
    let api: Api<ClusterMetaStudioConnection> = Api::all(ctx.client.clone());
    Ok(refresh(&ctx, &subject, &api).await)
}

/// Observes one connection and writes its status when it changed.
async fn refresh<K>(ctx: &Context, subject: &Subject<'_>, api: &Api<K>) -> Action
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let span = info_span!("connection", kind = subject.kind.as_str(), name = %subject.name);
    async {
        let status = observe(ctx, subject).await;
        if subject.status != Some(&status)
            && let Err(err) = write_status::<K>(api, &subject.name, subject.kind, &status).await
        {
            warn!(error = %err, "cannot write the connection's status");
        }
        Action::requeue(STATUS_REFRESH)
    }
    .instrument(span)
    .await
}

/// What the connection's status says now.
async fn observe(ctx: &Context, subject: &Subject<'_>) -> ConnectionStatus {
    let mut status = subject.status.cloned().unwrap_or_default();
    status.observed_generation = subject.generation;
    status.activation_codes = users(ctx, subject).len() as u32;
    let (ready, why, message, insecure) = match check(ctx, subject).await {
        Ok((endpoint, insecure)) => {
            status.endpoint = Some(endpoint);
            (
                true,
                "Available",
                "the credentials Secret is there and well formed".to_owned(),
                insecure,
            )
        }
        Err((why, message)) => (false, why, message, None),
    };
    let now = jiff::Timestamp::now();
    conditions::set(
        &mut status.conditions,
        READY,
        Some(ready),
        why,
        message,
        subject.generation,
        now,
    );
    match insecure {
        Some(message) => conditions::set(
            &mut status.conditions,
            INSECURE_TRANSPORT,
            Some(true),
            "PlainHttpAllowed",
            message,
            subject.generation,
            now,
        ),
        None => status.conditions.retain(|c| c.type_ != INSECURE_TRANSPORT),
    }
    status
}

/// The endpoint of a usable connection, and a warning when its tokens
/// travel unencrypted; or why it is not usable (reason, message).
async fn check(
    ctx: &Context,
    subject: &Subject<'_>,
) -> Result<(String, Option<String>), (&'static str, String)> {
    let problems = crate::validate::connection_target(subject.target);
    if !problems.is_empty() {
        let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err((reason::INVALID_SPEC, all.join("; ")));
    }
    let (namespace, name) = &subject.secret;
    let shown = format!("{namespace}/{name}");
    let secrets: Api<KubeSecret> = Api::namespaced(ctx.client.clone(), namespace);
    let data = match secrets.get_opt(name).await {
        Ok(Some(secret)) => secret.data.unwrap_or_default(),
        Ok(None) => {
            return Err((
                reason::CREDENTIALS_NOT_FOUND,
                format!(
                    "Secret {shown} (spec.credentialsSecretRef) does not exist: create it with keys accessKey and secretKey"
                ),
            ));
        }
        Err(err) => {
            return Err((
                reason::CREDENTIALS_NOT_FOUND,
                format!("cannot read Secret {shown} (spec.credentialsSecretRef): {err}"),
            ));
        }
    };
    let data: BTreeMap<String, crate::secret::Secret> = data
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                crate::secret::Secret::new(String::from_utf8_lossy(&v.0).into_owned()),
            )
        })
        .collect();
    let found = credentials::from_secret_data(&shown, &data)
        .map_err(|err| (reason::CREDENTIALS_NOT_FOUND, err.to_string()))?;
    let connection = tenancy::target_settings(subject.target)
        .resolve(found)
        .map_err(|err| (reason::INVALID_SPEC, err.to_string()))?;
    if let Some((status, code, request_id)) = ctx.engine.transport().rejection(&connection) {
        return Err((
            reason::CREDENTIALS_REJECTED,
            format!(
                "MetaStudio rejected these credentials: HTTP {status} {code} (X-Request-Id: {}); check the access key, secret key and project id",
                request_id.as_deref().unwrap_or("none")
            ),
        ));
    }
    let insecure = connection.sends_token_in_clear().then(|| {
        format!(
            "tokens travel unencrypted to {} (spec.insecureHttp): use https",
            connection.endpoint
        )
    });
    Ok((connection.endpoint.to_string(), insecure))
}

async fn write_status<K>(
    api: &Api<K>,
    name: &str,
    kind: ConnectionKind,
    status: &ConnectionStatus,
) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    #[derive(Serialize, Debug)]
    #[serde(rename_all = "camelCase")]
    struct StatusApply<'a> {
        api_version: &'a str,
        kind: &'a str,
        status: &'a ConnectionStatus,
    }
    let patch = StatusApply {
        api_version: API_VERSION,
        kind: kind.as_str(),
        status,
    };
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
}

/// The ActivationCodes that refer to the connection.
fn users(ctx: &Context, subject: &Subject<'_>) -> Vec<ObjectRef<ActivationCode>> {
    users_of(
        ctx,
        subject.kind,
        subject.namespace.as_deref(),
        &subject.name,
    )
}

fn users_of(
    ctx: &Context,
    kind: ConnectionKind,
    namespace: Option<&str>,
    name: &str,
) -> Vec<ObjectRef<ActivationCode>> {
    ctx.all_resources()
        .iter()
        .filter(|r| {
            r.spec
                .connection_ref
                .as_ref()
                .is_some_and(|c| c.kind == kind && c.name == name)
                && namespace.is_none_or(|ns| r.namespace().as_deref() == Some(ns))
        })
        .map(|r| ObjectRef::from_obj(&**r))
        .collect()
}

/// Nudges the users of connections whose spec changed (a new generation)
/// or that went away; a status write changes no generation.
struct ConnectionNudger {
    kind: ConnectionKind,
    ctx: Arc<Context>,
    nudges: Nudges,
    generations: LastSeen<String, Option<i64>>,
}

impl ConnectionNudger {
    fn new(kind: ConnectionKind, ctx: &Arc<Context>, nudges: &Nudges) -> Self {
        Self {
            kind,
            ctx: ctx.clone(),
            nudges: nudges.clone(),
            generations: LastSeen::default(),
        }
    }

    fn on<K: ResourceExt>(&self, event: &watcher::Event<K>) {
        let changed = match event {
            watcher::Event::Apply(object) => {
                let key = object.uid().unwrap_or_default();
                if !self.generations.changed(key, object.meta().generation) {
                    return;
                }
                object
            }
            watcher::Event::Delete(object) => {
                self.generations.forget(&object.uid().unwrap_or_default());
                object
            }
            _ => return,
        };
        let namespace = changed.namespace();
        for user in users_of(
            &self.ctx,
            self.kind,
            namespace.as_deref(),
            &changed.name_any(),
        ) {
            self.nudges.send(user);
        }
    }
}

/// Nudges, when a namespace's labels change, its ActivationCodes that use
/// a ClusterMetaStudioConnection (whose selectors read the labels).
struct NamespaceNudger {
    ctx: Arc<Context>,
    nudges: Nudges,
    labels: LastSeen<String, BTreeMap<String, String>>,
}

impl NamespaceNudger {
    fn on(&self, event: &watcher::Event<PartialObjectMeta<Namespace>>) {
        let watcher::Event::Apply(namespace) = event else {
            return;
        };
        let name = namespace.name_any();
        if !self
            .labels
            .changed(name.clone(), namespace.labels().clone())
        {
            return;
        }
        nudge_namespace(&name, &self.ctx, &self.nudges);
    }
}

fn nudge_namespace(name: &str, ctx: &Context, nudges: &Nudges) {
    for resource in ctx.all_resources() {
        let cluster_ref = resource
            .spec
            .connection_ref
            .as_ref()
            .is_some_and(|c| c.kind == ConnectionKind::ClusterMetaStudioConnection);
        if cluster_ref && resource.namespace().as_deref() == Some(name) {
            nudges.send(ObjectRef::from_obj(&*resource));
        }
    }
}
