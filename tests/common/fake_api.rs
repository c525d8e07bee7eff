//! A tiny in-memory Kubernetes API for tests that need state across many
//! requests (leases for leader election; the controller's lists and
//! watches), served to kube clients through `tower::service_fn`.
//!
//! [`FakeCluster`] holds ActivationCodes, Secrets, workloads (apps), Events
//! and Leases for any number of clients (replicas), records every request
//! with the client's name, and behaves as an API server does where the operator can notice:
//! a status write bumps the resourceVersion and is sent to watchers, and
//! one that names an older resourceVersion is refused with 409 Conflict; a
//! server-side apply creates a missing object; metadata-only requests get
//! `PartialObjectMetadata`.

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

pub type Answer = (u16, Value);

/// One request the code under test made.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub accept: String,
    pub body: Value,
}

impl Call {
    pub fn is_watch(&self) -> bool {
        self.query.split('&').any(|p| p == "watch=true")
    }

    /// The decoded `labelSelector` query parameter, if any.
    pub fn label_selector(&self) -> Option<String> {
        self.query.split('&').find_map(|p| {
            p.strip_prefix("labelSelector=")
                .map(|v| v.replace("%3D", "=").replace("%2C", ","))
        })
    }

    pub fn target(&self) -> Option<Target> {
        Target::parse(&self.path)
    }
}

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// "" for the core group.
    pub group: String,
    pub namespace: Option<String>,
    /// Plural, e.g. "secrets".
    pub resource: String,
    pub name: Option<String>,
    /// A subresource, e.g. "status".
    pub subresource: Option<String>,
}

impl Target {
    /// `/api/v1/[namespaces/NS/]RESOURCE[/NAME[/SUB]]` or
    /// `/apis/GROUP/VERSION/[namespaces/NS/]RESOURCE[/NAME[/SUB]]`.
    pub fn parse(path: &str) -> Option<Self> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let (group, rest) = match *parts.first()? {
            "api" => ("", parts.get(2..)?),
            "apis" => (*parts.get(1)?, parts.get(3..)?),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, resource, tail @ ..] => (Some((*ns).to_owned()), (resource, tail)),
            [resource, tail @ ..] => (None, (resource, tail)),
            [] => return None,
        };
        Some(Self {
            group: group.to_owned(),
            namespace,
            resource: (*rest.0).to_owned(),
            name: rest.1.first().map(|s| (*s).to_owned()),
            subresource: rest.1.get(1).map(|s| (*s).to_owned()),
        })
    }
}

/// What the fake does with one request.
pub enum Reply {
    Now(Answer),
    /// Never answer (an idle watch).
    Hold,
    /// Ask the handler again shortly (to gate answers on the test's progress).
    Later,
    /// A watch answer: these events, one JSON document a line, then the end
    /// of the stream (the watcher then watches again).
    Events(Vec<Value>),
}

/// Routes requests to a handler; `None` from the handler means "hold the
/// request open" (a watch that never sends anything).
pub fn client<F>(handler: F) -> kube::Client
where
    F: Fn(&Call) -> Option<Answer> + Send + Sync + 'static,
{
    client_with(move |call| match handler(call) {
        Some(answer) => Reply::Now(answer),
        None => Reply::Hold,
    })
}

pub fn client_with<F>(handler: F) -> kube::Client
where
    F: Fn(&Call) -> Reply + Send + Sync + 'static,
{
    recording_client(|_| {}, handler)
}

/// As [`client_with`], with `record` called once for every request.
pub fn recording_client<R, F>(record: R, handler: F) -> kube::Client
where
    R: Fn(&Call) + Send + Sync + 'static,
    F: Fn(&Call) -> Reply + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let record = Arc::new(record);
    let service = tower::service_fn(move |request: Request<Body>| {
        let (handler, record) = (handler.clone(), record.clone());
        async move {
            let (content_type, accept) = {
                let header = |name: &str| {
                    request
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                (header("content-type"), header("accept"))
            };
            let method = request.method().to_string();
            let path = request.uri().path().to_owned();
            let query = request.uri().query().unwrap_or_default().to_owned();
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_default();
            let call = Call {
                method,
                path,
                query,
                content_type,
                accept,
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            record(&call);
            let (status, body) = loop {
                match handler(&call) {
                    Reply::Now((status, answer)) => {
                        break (status, serde_json::to_vec(&answer).unwrap());
                    }
                    Reply::Events(events) => {
                        let mut body = Vec::new();
                        for event in events {
                            body.extend(serde_json::to_vec(&event).unwrap());
                            body.push(b'\n');
                        }
                        break (200, body);
                    }
                    Reply::Hold => std::future::pending().await,
                    Reply::Later => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                }
            };
            Ok::<_, std::convert::Infallible>(
                Response::builder()
                    .status(status)
                    .header("Content-Type", "application/json")
                    .body(Body::from(body))
                    .unwrap(),
            )
        }
    });
    kube::Client::new(service, "default")
}

pub fn status(code: u16, reason: &str, message: &str) -> Answer {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message, "code": code}),
    )
}

/// Leases by name, with the server-side-apply conflict rule that matters
/// for leader election: applying a different holderIdentity over a held
/// lease is a 409 Conflict.
#[derive(Clone, Default)]
pub struct Leases {
    pub store: Arc<Mutex<BTreeMap<String, Value>>>,
    version: Arc<Mutex<u64>>,
}

impl Leases {
    pub fn spec(&self, name: &str) -> Option<Value> {
        self.store
            .lock()
            .unwrap()
            .get(name)
            .map(|l| l["spec"].clone())
    }

    /// Overwrites the spec, as another party would.
    pub fn set_spec(&self, name: &str, spec: Value) {
        let mut store = self.store.lock().unwrap();
        let lease = store
            .entry(name.to_owned())
            .or_insert_with(|| lease(name, json!({})));
        lease["spec"] = spec;
    }

    /// Answers a request on Leases; `None` for any other request.
    pub fn handle(&self, call: &Call) -> Option<Answer> {
        let target = call.target()?;
        if target.resource != "leases" {
            return None;
        }
        let mut store = self.store.lock().unwrap();
        let mut version = self.version.lock().unwrap();
        *version += 1;
        let answer = match (call.method.as_str(), target.name.as_deref()) {
            ("GET", Some(name)) => match store.get(name) {
                Some(lease) => (200, lease.clone()),
                None => status(404, "NotFound", "lease not found"),
            },
            ("POST", None) => {
                let name = call.body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                match store.entry(name.clone()) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        status(409, "AlreadyExists", "lease exists")
                    }
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        let created = lease(&name, call.body["spec"].clone());
                        slot.insert(created.clone());
                        (201, created)
                    }
                }
            }
            ("PATCH", Some(name)) => {
                let current = store
                    .entry(name.to_owned())
                    .or_insert_with(|| lease(name, json!({})));
                let held_by = current["spec"]["holderIdentity"]
                    .as_str()
                    .map(str::to_owned);
                let wants = call.body["spec"]["holderIdentity"].as_str();
                let apply = call.content_type.contains("apply-patch");
                if apply && held_by.is_some() && wants.is_some() && held_by.as_deref() != wants {
                    return Some(status(
                        409,
                        "Conflict",
                        "Apply failed with 1 conflict: conflict with holderIdentity",
                    ));
                }
                let spec = current["spec"].as_object_mut().expect("spec is an object");
                for (key, value) in call.body["spec"].as_object().cloned().unwrap_or_default() {
                    if value.is_null() {
                        spec.remove(&key);
                    } else {
                        spec.insert(key, value);
                    }
                }
                current["metadata"]["resourceVersion"] = json!(version.to_string());
                (200, current.clone())
            }
            _ => status(405, "MethodNotAllowed", "not supported by the fake"),
        };
        Some(answer)
    }
}

fn lease(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": name, "namespace": "metastudio-system", "resourceVersion": "1"},
        "spec": if spec.is_object() { spec } else { json!({}) },
    })
}

const AC_API_VERSION: &str = "metastudio.huaweicloud.com/v1alpha1";

/// An ActivationCode as the API server returns it, created
/// 2026-11-01, uid `uid-NAME`, generation 1.
pub fn activation_code(namespace: &str, name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": AC_API_VERSION, "kind": "ActivationCode",
        "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}"), "generation": 1,
                     "resourceVersion": "7", "creationTimestamp": "2026-11-01T00:00:00Z"},
        "spec": spec,
    })
}

/// A Secret as the API server returns it (data base64-encoded), with the
/// uid and resourceVersion a watch needs.
pub fn secret(namespace: &str, name: &str, data: &[(&str, &str)]) -> Value {
    let mut secret = super::kube_mock::secret(namespace, name, data);
    secret["metadata"]["uid"] = json!(format!("uid-secret-{name}"));
    secret["metadata"]["resourceVersion"] = json!("3");
    secret
}

/// A merge patch of an ActivationCode's `metadata.finalizers` (what the
/// operator patches), fenced by the resourceVersion it names; a resource
/// being deleted goes with its last finalizer.
fn patch_finalizers(state: &mut Cluster, namespace: &str, name: &str, body: &Value) -> Answer {
    let Some(object) = state
        .resources
        .iter_mut()
        .find(|r| r["metadata"]["namespace"] == namespace && r["metadata"]["name"] == name)
    else {
        return status(404, "NotFound", "no such ActivationCode");
    };
    let precondition = &body["metadata"]["resourceVersion"];
    if !precondition.is_null() && *precondition != object["metadata"]["resourceVersion"] {
        return status(409, "Conflict", "the object has been modified");
    }
    object["metadata"]["finalizers"] = body["metadata"]["finalizers"].clone();
    let deleting = !object["metadata"]["deletionTimestamp"].is_null();
    let held = object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    (200, changed(state, namespace, name, held || !deleting))
}

/// Bumps an ActivationCode's resourceVersion and tells its watchers: a
/// change (`kept`), or its removal. Returns the object.
fn changed(state: &mut Cluster, namespace: &str, name: &str, kept: bool) -> Value {
    state.version += 1;
    let version = format!("{}", 100 + state.version);
    let index = state
        .resources
        .iter()
        .position(|r| r["metadata"]["namespace"] == namespace && r["metadata"]["name"] == name)
        .expect("the resource exists");
    state.resources[index]["metadata"]["resourceVersion"] = json!(version);
    let (kind, object) = if kept {
        ("MODIFIED", state.resources[index].clone())
    } else {
        ("DELETED", state.resources.remove(index))
    };
    state.queued.push((
        "activationcodes",
        namespace.to_owned(),
        json!({"type": kind, "object": object.clone()}),
    ));
    object
}

/// The state behind a [`FakeCluster`].
#[derive(Default)]
struct Cluster {
    resources: Vec<Value>,
    /// MetaStudioConnections and ClusterMetaStudioConnections.
    connections: Vec<Value>,
    /// Namespaces (their metadata).
    namespaces: Vec<Value>,
    secrets: BTreeMap<(String, String), Value>,
    /// Deployments, StatefulSets and DaemonSets, by (plural, namespace,
    /// name).
    workloads: BTreeMap<(String, String, String), Value>,
    /// Every request, with the name of the client that made it.
    calls: Vec<(String, Call)>,
    /// Watch events not yet sent: (resource plural, namespace, event).
    queued: Vec<(&'static str, String, Value)>,
    /// While true, lists of ActivationCodes wait.
    hold_lists: bool,
    /// While true, status writes wait (a reconcile stuck in flight).
    hold_status: bool,
    /// While true, patches of an ActivationCode's finalizers are refused
    /// (403), as without RBAC for them.
    refuse_finalizers: bool,
    /// Clients whose every request fails with 500.
    broken: BTreeSet<String>,
    /// The operator's CRDs (plurals) that discovery does not list.
    missing_crds: BTreeSet<String>,
    version: u64,
}

/// A shared in-memory API server; see the module docs.
#[derive(Clone, Default)]
pub struct FakeCluster {
    state: Arc<Mutex<Cluster>>,
    pub leases: Leases,
}

fn matches_selector(object: &Value, selector: Option<&str>) -> bool {
    selector.is_none_or(|selector| {
        selector.split(',').filter(|s| !s.is_empty()).all(|term| {
            let (key, value) = term.split_once('=').unwrap_or((term, ""));
            object["metadata"]["labels"][key].as_str() == Some(value)
        })
    })
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Answer {
    (
        200,
        json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items}),
    )
}

/// The metadata-only form of an object.
fn partial(object: &Value) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": object["metadata"]})
}

impl FakeCluster {
    pub fn new(resources: Vec<Value>, secrets: Vec<Value>) -> Self {
        let cluster = Self::default();
        {
            let mut state = cluster.state.lock().unwrap();
            state.resources = resources;
            for s in secrets {
                let key = (
                    s["metadata"]["namespace"].as_str().unwrap().to_owned(),
                    s["metadata"]["name"].as_str().unwrap().to_owned(),
                );
                state.secrets.insert(key, s);
            }
        }
        cluster
    }

    /// Adds connection resources (either kind) and Namespaces.
    pub fn with_connections(self, connections: Vec<Value>, namespaces: Vec<Value>) -> Self {
        {
            let mut state = self.state.lock().unwrap();
            state.connections = connections;
            state.namespaces = namespaces;
        }
        self
    }

    /// Leaves these CRDs (plurals, e.g. "metastudioconnections") out of
    /// API discovery, as a cluster without them.
    pub fn without_crds(self, plurals: &[&str]) -> Self {
        self.state
            .lock()
            .unwrap()
            .missing_crds
            .extend(plurals.iter().map(|p| (*p).to_owned()));
        self
    }

    /// Installs every CRD: discovery lists them all from now on.
    pub fn install_crds(&self) {
        self.state.lock().unwrap().missing_crds.clear();
    }

    /// API discovery of the operator's group: `/apis` and
    /// `/apis/GROUP/VERSION`, listing the CRDs not left out.
    fn discovery(&self, path: &str) -> Option<Answer> {
        const GROUP: &str = "metastudio.huaweicloud.com";
        let served: Vec<&str> = [
            "activationcodes",
            "metastudioconnections",
            "clustermetastudioconnections",
        ]
        .into_iter()
        .filter(|p| !self.state.lock().unwrap().missing_crds.contains(*p))
        .collect();
        let group_version = format!("{GROUP}/v1alpha1");
        if path == "/apis" {
            let version = json!({"groupVersion": group_version, "version": "v1alpha1"});
            let groups = if served.is_empty() {
                json!([])
            } else {
                json!([{"name": GROUP, "versions": [version], "preferredVersion": version}])
            };
            return Some((
                200,
                json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            ));
        }
        if path != format!("/apis/{group_version}") {
            return None;
        }
        let resources: Vec<Value> = served
            .iter()
            .flat_map(|plural| {
                let resource = |name: String| {
                    json!({"name": name, "singularName": "", "namespaced": !plural.starts_with("cluster"),
                           "kind": "", "verbs": ["get", "list", "watch"]})
                };
                [resource((*plural).to_owned()), resource(format!("{plural}/status"))]
            })
            .collect();
        Some((
            200,
            json!({"kind": "APIResourceList", "apiVersion": "v1",
                          "groupVersion": group_version, "resources": resources}),
        ))
    }

    /// A connection resource as the fake holds it now.
    pub fn connection(&self, kind: &str, name: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .connections
            .iter()
            .find(|c| c["kind"] == kind && c["metadata"]["name"] == name)
            .cloned()
    }

    /// Makes lists of ActivationCodes wait (true) or answer (false).
    pub fn hold_lists(&self, hold: bool) {
        self.state.lock().unwrap().hold_lists = hold;
    }

    /// Makes status writes wait (true) or answer (false).
    pub fn hold_status(&self, hold: bool) {
        self.state.lock().unwrap().hold_status = hold;
    }

    /// Refuses (403) patches of ActivationCodes' finalizers while true.
    pub fn refuse_finalizers(&self, refuse: bool) {
        self.state.lock().unwrap().refuse_finalizers = refuse;
    }

    /// Makes every request of client `who` fail with 500 (true), or not.
    pub fn break_client(&self, who: &str, broken: bool) {
        let mut state = self.state.lock().unwrap();
        if broken {
            state.broken.insert(who.to_owned());
        } else {
            state.broken.remove(who);
        }
    }

    /// Watch events not yet delivered.
    pub fn queued_events(&self) -> usize {
        self.state.lock().unwrap().queued.len()
    }

    /// Every request so far, with the client's name.
    pub fn calls(&self) -> Vec<(String, Call)> {
        self.state.lock().unwrap().calls.clone()
    }

    pub fn calls_of(&self, who: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|(w, _)| w == who)
            .map(|(_, c)| c)
            .collect()
    }

    pub fn resource(&self, namespace: &str, name: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .resources
            .iter()
            .find(|r| r["metadata"]["namespace"] == namespace && r["metadata"]["name"] == name)
            .cloned()
    }

    pub fn secret(&self, namespace: &str, name: &str) -> Option<Value> {
        self.state
            .lock()
            .unwrap()
            .secrets
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Adds a workload (group apps) with an empty pod template, generation 1.
    pub fn put_workload(&self, kind: &str, namespace: &str, name: &str) {
        let plural = format!("{}s", kind.to_lowercase());
        let object = json!({"apiVersion": "apps/v1", "kind": kind,
            "metadata": {"name": name, "namespace": namespace, "generation": 1},
            "spec": {"template": {"metadata": {}, "spec": {"containers": []}}}});
        self.state
            .lock()
            .unwrap()
            .workloads
            .insert((plural, namespace.to_owned(), name.to_owned()), object);
    }

    /// A workload as the fake holds it now, by its plural (`deployments`).
    pub fn workload(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = (plural.to_owned(), namespace.to_owned(), name.to_owned());
        self.state.lock().unwrap().workloads.get(&key).cloned()
    }

    /// Deletes an ActivationCode, telling its watchers.
    pub fn delete_resource(&self, namespace: &str, name: &str) {
        let mut state = self.state.lock().unwrap();
        let index = state
            .resources
            .iter()
            .position(|r| r["metadata"]["namespace"] == namespace && r["metadata"]["name"] == name)
            .expect("the resource exists");
        let mut gone = state.resources.remove(index);
        state.version += 1;
        gone["metadata"]["resourceVersion"] = json!(format!("{}", 100 + state.version));
        state.queued.push((
            "activationcodes",
            namespace.to_owned(),
            json!({"type": "DELETED", "object": gone}),
        ));
    }

    /// Deletes an ActivationCode as the API server does: one without
    /// finalizers goes at once; one with finalizers gets its
    /// deletionTimestamp and a new generation, and goes when the last
    /// finalizer is removed. Watchers are told.
    pub fn mark_deleted(&self, namespace: &str, name: &str) {
        let mut state = self.state.lock().unwrap();
        let object = state
            .resources
            .iter_mut()
            .find(|r| r["metadata"]["namespace"] == namespace && r["metadata"]["name"] == name)
            .expect("the resource exists");
        object["metadata"]["deletionTimestamp"] = json!("2026-12-01T00:00:00Z");
        let generation = object["metadata"]["generation"].as_i64().unwrap_or(1);
        object["metadata"]["generation"] = json!(generation + 1);
        let held = object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        changed(&mut state, namespace, name, held);
    }

    /// Sets an annotation of an ActivationCode, telling its watchers.
    pub fn annotate(&self, namespace: &str, name: &str, key: &str, value: &str) {
        let mut state = self.state.lock().unwrap();
        let object = state
            .resources
            .iter_mut()
            .find(|r| r["metadata"]["namespace"] == namespace && r["metadata"]["name"] == name)
            .expect("the resource exists");
        object["metadata"]["annotations"][key] = json!(value);
        changed(&mut state, namespace, name, true);
    }

    /// Changes an ActivationCode's label behind the watchers' backs (its
    /// watch event is not sent), as another writer whose change the
    /// operator's cache has not seen yet: its next status write carries an
    /// old resourceVersion.
    pub fn edit_unseen(&self, namespace: &str, name: &str) {
        let mut state = self.state.lock().unwrap();
        state.version += 1;
        let version = format!("{}", 100 + state.version);
        let object = state
            .resources
            .iter_mut()
            .find(|r| r["metadata"]["namespace"] == namespace && r["metadata"]["name"] == name)
            .expect("the resource exists");
        object["metadata"]["labels"]["edited"] = json!(version);
        object["metadata"]["resourceVersion"] = json!(version);
    }

    /// Creates or changes a Secret, telling its (metadata) watchers.
    pub fn put_secret(&self, mut secret: Value) {
        let mut state = self.state.lock().unwrap();
        state.version += 1;
        secret["metadata"]["resourceVersion"] = json!(format!("{}", 100 + state.version));
        let namespace = secret["metadata"]["namespace"].as_str().unwrap().to_owned();
        let name = secret["metadata"]["name"].as_str().unwrap().to_owned();
        let kind = if state
            .secrets
            .insert((namespace.clone(), name), secret.clone())
            .is_some()
        {
            "MODIFIED"
        } else {
            "ADDED"
        };
        state.queued.push((
            "secrets",
            namespace,
            json!({"type": kind, "object": partial(&secret)}),
        ));
    }

    /// Deletes a Secret, telling its (metadata) watchers.
    pub fn delete_secret(&self, namespace: &str, name: &str) {
        let mut state = self.state.lock().unwrap();
        let Some(secret) = state
            .secrets
            .remove(&(namespace.to_owned(), name.to_owned()))
        else {
            return;
        };
        state.version += 1;
        state.queued.push((
            "secrets",
            namespace.to_owned(),
            json!({"type": "DELETED", "object": partial(&secret)}),
        ));
    }

    /// A client that acts as `who`.
    pub fn client(&self, who: &str) -> kube::Client {
        let (recorder, handler) = (self.clone(), self.clone());
        let (who, name) = (who.to_owned(), who.to_owned());
        recording_client(
            move |call| {
                recorder
                    .state
                    .lock()
                    .unwrap()
                    .calls
                    .push((who.clone(), call.clone()));
            },
            move |call| handler.answer(&name, call),
        )
    }

    fn answer(&self, who: &str, call: &Call) -> Reply {
        if self.state.lock().unwrap().broken.contains(who) {
            return Reply::Now(status(
                500,
                "InternalError",
                "the fake is broken for this client",
            ));
        }
        if let Some(answer) = self.leases.handle(call) {
            return Reply::Now(answer);
        }
        if let Some(answer) = self.discovery(&call.path) {
            return Reply::Now(answer);
        }
        let Some(target) = call.target() else {
            return Reply::Now(status(404, "NotFound", "not served by the fake"));
        };
        let mut state = self.state.lock().unwrap();
        let in_scope = |namespace: &str| target.namespace.as_deref().is_none_or(|n| n == namespace);
        match (
            call.method.as_str(),
            target.resource.as_str(),
            target.name.as_deref(),
            target.subresource.as_deref(),
        ) {
            (
                "GET",
                plural @ ("activationcodes"
                | "secrets"
                | "metastudioconnections"
                | "clustermetastudioconnections"
                | "namespaces"),
                None,
                None,
            ) if call.is_watch() => {
                let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut state.queued)
                    .into_iter()
                    .partition(|(p, ns, _)| *p == plural && in_scope(ns));
                state.queued = rest;
                if mine.is_empty() {
                    Reply::Later
                } else {
                    Reply::Events(mine.into_iter().map(|(_, _, event)| event).collect())
                }
            }
            ("GET", "activationcodes", None, None) => {
                if state.hold_lists {
                    return Reply::Later;
                }
                let selector = call.label_selector();
                let items = state
                    .resources
                    .iter()
                    .filter(|r| in_scope(r["metadata"]["namespace"].as_str().unwrap_or_default()))
                    .filter(|r| matches_selector(r, selector.as_deref()))
                    .cloned()
                    .collect();
                Reply::Now(list("ActivationCodeList", AC_API_VERSION, items))
            }
            (
                "GET",
                plural @ ("metastudioconnections" | "clustermetastudioconnections"),
                None,
                None,
            ) => {
                let kind = connection_kind(plural);
                let items = state
                    .connections
                    .iter()
                    .filter(|c| c["kind"] == kind)
                    .filter(|c| in_scope(c["metadata"]["namespace"].as_str().unwrap_or_default()))
                    .cloned()
                    .collect();
                Reply::Now(list(&format!("{kind}List"), AC_API_VERSION, items))
            }
            ("GET", "namespaces", None, None) => {
                let items = state.namespaces.iter().map(partial).collect();
                Reply::Now(list("PartialObjectMetadataList", "meta.k8s.io/v1", items))
            }
            (
                "PATCH",
                plural @ ("metastudioconnections" | "clustermetastudioconnections"),
                Some(name),
                Some("status"),
            ) => {
                let kind = connection_kind(plural);
                state.version += 1;
                let version = format!("{}", 100 + state.version);
                let Some(object) = state
                    .connections
                    .iter_mut()
                    .find(|c| c["kind"] == kind && c["metadata"]["name"] == name)
                else {
                    return Reply::Now(status(404, "NotFound", "no such connection"));
                };
                object["status"] = call.body["status"].clone();
                object["metadata"]["resourceVersion"] = json!(version);
                let (object, namespace) = (
                    object.clone(),
                    object["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
                state.queued.push((
                    plural_of(kind),
                    namespace,
                    json!({"type": "MODIFIED", "object": object.clone()}),
                ));
                Reply::Now((200, object))
            }
            ("GET", "secrets", None, None) => {
                let metadata_only = call.accept.contains("as=PartialObjectMetadataList");
                let items = state
                    .secrets
                    .iter()
                    .filter(|((ns, _), _)| in_scope(ns))
                    .map(|(_, s)| if metadata_only { partial(s) } else { s.clone() })
                    .collect();
                Reply::Now(if metadata_only {
                    list("PartialObjectMetadataList", "meta.k8s.io/v1", items)
                } else {
                    list("SecretList", "v1", items)
                })
            }
            ("GET", "activationcodes", Some(name), None) => {
                let namespace = target.namespace.clone().unwrap_or_default();
                Reply::Now(
                    match state.resources.iter().find(|r| {
                        r["metadata"]["namespace"] == namespace.as_str()
                            && r["metadata"]["name"] == name
                    }) {
                        Some(object) => (200, object.clone()),
                        None => status(
                            404,
                            "NotFound",
                            &format!("activationcodes \"{name}\" not found"),
                        ),
                    },
                )
            }
            ("GET", "secrets", Some(name), None) => {
                let key = (
                    target.namespace.clone().unwrap_or_default(),
                    name.to_owned(),
                );
                Reply::Now(match state.secrets.get(&key) {
                    Some(secret) => (200, secret.clone()),
                    None => status(404, "NotFound", &format!("secrets \"{name}\" not found")),
                })
            }
            ("PATCH", "secrets", Some(name), None) => {
                let key = (
                    target.namespace.clone().unwrap_or_default(),
                    name.to_owned(),
                );
                let created = !state.secrets.contains_key(&key);
                state.version += 1;
                let mut secret = call.body.clone();
                secret["metadata"]["resourceVersion"] = json!(format!("{}", 100 + state.version));
                // As the API server does: a uid from the creation on.
                secret["metadata"]["uid"] = json!(format!("uid-secret-{name}"));
                state.secrets.insert(key.clone(), secret.clone());
                state.queued.push((
                    "secrets",
                    key.0,
                    json!({"type": if created { "ADDED" } else { "MODIFIED" }, "object": partial(&secret)}),
                ));
                Reply::Now((if created { 201 } else { 200 }, secret))
            }
            ("PATCH", "activationcodes", Some(_), None) if state.refuse_finalizers => {
                Reply::Now(status(403, "Forbidden", "cannot patch activationcodes"))
            }
            ("PATCH", "activationcodes", Some(name), None) => {
                let namespace = target.namespace.clone().unwrap_or_default();
                Reply::Now(patch_finalizers(&mut state, &namespace, name, &call.body))
            }
            ("PATCH", "activationcodes", Some(name), Some("status")) => {
                if state.hold_status {
                    return Reply::Later;
                }
                let namespace = target.namespace.clone().unwrap_or_default();
                state.version += 1;
                let version = format!("{}", 100 + state.version);
                let Some(object) = state.resources.iter_mut().find(|r| {
                    r["metadata"]["namespace"] == namespace.as_str()
                        && r["metadata"]["name"] == name
                }) else {
                    return Reply::Now(status(404, "NotFound", "no such ActivationCode"));
                };
                let precondition = &call.body["metadata"]["resourceVersion"];
                if !precondition.is_null() && *precondition != object["metadata"]["resourceVersion"]
                {
                    return Reply::Now(status(
                        409,
                        "Conflict",
                        "the object has been modified; please apply your changes to the latest version and try again",
                    ));
                }
                if object["status"] == call.body["status"] {
                    // An apply that changes nothing changes no resourceVersion.
                    return Reply::Now((200, object.clone()));
                }
                object["status"] = call.body["status"].clone();
                object["metadata"]["resourceVersion"] = json!(version);
                let object = object.clone();
                // As an API server does: watchers see the change.
                state.queued.push((
                    "activationcodes",
                    namespace,
                    json!({"type": "MODIFIED", "object": object.clone()}),
                ));
                Reply::Now((200, object))
            }
            (
                "GET" | "PATCH",
                plural @ ("deployments" | "statefulsets" | "daemonsets"),
                Some(name),
                None,
            ) => {
                let key = (
                    plural.to_owned(),
                    target.namespace.clone().unwrap_or_default(),
                    name.to_owned(),
                );
                let Some(object) = state.workloads.get_mut(&key) else {
                    return Reply::Now(status(
                        404,
                        "NotFound",
                        &format!("{plural}.apps \"{name}\" not found"),
                    ));
                };
                if call.method == "PATCH" {
                    // A merge patch of the pod template's annotations, which
                    // is all the operator sends: a changed template is a
                    // new generation, as the API server counts them.
                    let before = object["spec"].clone();
                    let annotations = &call.body["spec"]["template"]["metadata"]["annotations"];
                    for (key, value) in annotations.as_object().into_iter().flatten() {
                        object["spec"]["template"]["metadata"]["annotations"][key] = value.clone();
                    }
                    if object["spec"] != before {
                        let generation = object["metadata"]["generation"].as_i64().unwrap_or(1);
                        object["metadata"]["generation"] = json!(generation + 1);
                    }
                }
                Reply::Now((200, object.clone()))
            }
            ("POST", "events", None, None) => Reply::Now((201, call.body.clone())),
            ("PATCH", "events", Some(_), None) => Reply::Now((200, call.body.clone())),
            _ => Reply::Now(status(404, "NotFound", "not served by the fake")),
        }
    }
}

fn connection_kind(plural: &str) -> &'static str {
    if plural == "clustermetastudioconnections" {
        "ClusterMetaStudioConnection"
    } else {
        "MetaStudioConnection"
    }
}

fn plural_of(kind: &str) -> &'static str {
    if kind == "ClusterMetaStudioConnection" {
        "clustermetastudioconnections"
    } else {
        "metastudioconnections"
    }
}

/// A connection resource as the API server returns it (either kind; a
/// namespace only for a MetaStudioConnection).
pub fn connection(kind: &str, namespace: Option<&str>, name: &str, spec: Value) -> Value {
    let mut metadata = json!({"name": name, "uid": format!("uid-{name}"), "generation": 1,
                              "resourceVersion": "5", "creationTimestamp": "2026-11-01T00:00:00Z"});
    if let Some(namespace) = namespace {
        metadata["namespace"] = json!(namespace);
    }
    json!({"apiVersion": AC_API_VERSION, "kind": kind, "metadata": metadata, "spec": spec})
}

/// A Namespace with labels.
pub fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "uid": format!("uid-ns-{name}"), "resourceVersion": "2", "labels": labels}})
}

/// The token `Operator` authenticates to MetaStudio with: add it to the
/// simulator's `accepted.tokens`.
pub const RUN_TOKEN: &str = "run-test-token";

/// `metastudio-operator run` in this process, against a fake API server and
/// a simulator, with /metrics on a free port.
pub struct Operator {
    base: String,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), metastudio_operator::cli::run::RunError>>,
}

#[derive(clap::Parser)]
struct RunFlags {
    #[command(flatten)]
    args: metastudio_operator::cli::run::RunArgs,
}

impl Operator {
    /// Starts `run` with the simulator's endpoint, [`RUN_TOKEN`] and `extra`
    /// flags.
    pub async fn start(
        sim: &metastudio_operator::simulator::Simulator,
        client: kube::Client,
        extra: &[&str],
    ) -> Self {
        use clap::Parser as _;
        metastudio_operator::tls::install_crypto_provider();
        let endpoint = sim.endpoint();
        let mut argv = vec![
            "run",
            "--metrics-addr",
            "127.0.0.1:0",
            "--endpoint",
            &endpoint,
            "--project-id",
            sim.project_id(),
            "--auth-token",
            RUN_TOKEN,
            "--default-credentials-namespaces",
            "*",
        ];
        argv.extend_from_slice(extra);
        let args = RunFlags::try_parse_from(argv).expect("valid flags").args;
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(metastudio_operator::cli::run::run(
            args,
            client,
            shutdown,
            move |addr| {
                let _ = addr_tx.send(addr);
            },
        ));
        let addr = addr_rx.await.expect("run serves /metrics");
        Self {
            base: format!("http://{addr}"),
            stop,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn metrics(&self) -> String {
        get(&self.url("/metrics")).await.1
    }

    /// SIGTERM, as it were: returns what `run` returned.
    pub async fn stop(self) -> Result<(), metastudio_operator::cli::run::RunError> {
        let _ = self.stop.send(true);
        tokio::time::timeout(std::time::Duration::from_secs(30), self.task)
            .await
            .expect("graceful shutdown within 30 s")
            .expect("run does not panic")
    }
}

/// GET `url`: status and body; status 0 when nothing answered.
pub async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(response) => (
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        ),
        Err(_) => (0, String::new()),
    }
}

/// Polls `check` every 50 ms until it holds; fails after 30 s.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
