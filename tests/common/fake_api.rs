//! A tiny in-memory Kubernetes API for tests that need state across many
//! requests (leases for leader election; the controller's lists and
//! watches), served to kube clients through `tower::service_fn`.

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub type Answer = (u16, Value);

/// Routes requests to a handler; `None` from the handler means "hold the
/// request open" (a watch that never sends anything).
pub fn client<F>(handler: F) -> kube::Client
where
    F: Fn(&str, &str, &str, &str, Value) -> Option<Answer> + Send + Sync + 'static,
{
    client_with(move |m, p, q, c, b| match handler(m, p, q, c, b) {
        Some(answer) => Reply::Now(answer),
        None => Reply::Hold,
    })
}

/// What the fake does with one request.
pub enum Reply {
    Now(Answer),
    /// Never answer (an idle watch).
    Hold,
    /// Ask the handler again shortly (to gate answers on the test's progress).
    Later,
}

pub fn client_with<F>(handler: F) -> kube::Client
where
    F: Fn(&str, &str, &str, &str, Value) -> Reply + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let service = tower::service_fn(move |request: Request<Body>| {
        let handler = handler.clone();
        async move {
            let method = request.method().to_string();
            let path = request.uri().path().to_owned();
            let query = request.uri().query().unwrap_or_default().to_owned();
            let content_type = request
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_default();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let (status, answer) = loop {
                match handler(&method, &path, &query, &content_type, body.clone()) {
                    Reply::Now(answer) => break answer,
                    Reply::Hold => std::future::pending().await,
                    Reply::Later => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                }
            };
            Ok::<_, std::convert::Infallible>(
                Response::builder()
                    .status(status)
                    .header("Content-Type", "application/json")
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
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

    pub fn handle(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Value,
    ) -> Option<Answer> {
        let rest = path.strip_prefix("/apis/coordination.k8s.io/v1/namespaces/")?;
        let mut parts = rest.split('/');
        let (_namespace, kind, name) = (parts.next()?, parts.next()?, parts.next());
        if kind != "leases" {
            return None;
        }
        let mut store = self.store.lock().unwrap();
        let mut version = self.version.lock().unwrap();
        *version += 1;
        let answer = match (method, name) {
            ("GET", Some(name)) => match store.get(name) {
                Some(lease) => (200, lease.clone()),
                None => status(404, "NotFound", "lease not found"),
            },
            ("POST", None) => {
                let name = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                match store.entry(name.clone()) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        status(409, "AlreadyExists", "lease exists")
                    }
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        let created = lease(&name, body["spec"].clone());
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
                let wants = body["spec"]["holderIdentity"].as_str();
                let apply = content_type.contains("apply-patch");
                if apply && held_by.is_some() && wants.is_some() && held_by.as_deref() != wants {
                    return Some(status(
                        409,
                        "Conflict",
                        "Apply failed with 1 conflict: conflict with holderIdentity",
                    ));
                }
                let spec = current["spec"].as_object_mut().expect("spec is an object");
                for (key, value) in body["spec"].as_object().cloned().unwrap_or_default() {
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
