//! What the Helm chart renders for one test's install: its ServiceAccount
//! and RBAC are applied to the cluster as they are, and the operator
//! process gets the environment of the chart's Deployment.

use kube::Client;
use kube::api::{Api, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::Value;
use std::path::Path;

/// The kinds of the chart that grant access, applied as rendered.
const RBAC_KINDS: [&str; 5] = [
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
];

/// One `helm template` of the chart.
pub struct Rendered {
    pub objects: Vec<Value>,
}

impl Rendered {
    /// `helm template RELEASE charts/metastudio-operator -n NAMESPACE` with
    /// the operator confined to the `watched` namespaces (a Role in each;
    /// cluster-wide only what cluster-scoped kinds need) and `values`
    /// (`--set` arguments).
    pub fn new(release: &str, namespace: &str, watched: &[String], values: &[&str]) -> Self {
        let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/metastudio-operator");
        let mut command = super::tools::helm();
        command
            .args(["template", release])
            .arg(&chart)
            .args(["--namespace", namespace])
            .args([
                "--set",
                &format!("watchNamespaces={{{}}}", watched.join(",")),
            ]);
        for value in values {
            command.args(["--set", value]);
        }
        let text = super::tools::succeed(&mut command);
        let objects: Vec<Value> = serde_saphyr::from_multiple(&text).expect("helm renders YAML");
        Self {
            objects: objects.into_iter().filter(|o| o.is_object()).collect(),
        }
    }

    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.objects.iter().filter(move |o| o["kind"] == kind)
    }

    /// The name of the ServiceAccount the Deployment runs as.
    pub fn service_account(&self) -> String {
        self.deployment_pod()["serviceAccountName"]
            .as_str()
            .expect("the Deployment names its ServiceAccount")
            .to_owned()
    }

    /// The operator container's environment variables that have a value
    /// (POD_NAME and POD_NAMESPACE come from the pod: the caller sets them).
    pub fn operator_env(&self) -> Vec<(String, String)> {
        self.deployment_pod()["containers"][0]["env"]
            .as_array()
            .expect("the container has an environment")
            .iter()
            .filter_map(|e| {
                Some((
                    e["name"].as_str()?.to_owned(),
                    e["value"].as_str()?.to_owned(),
                ))
            })
            .collect()
    }

    fn deployment_pod(&self) -> &Value {
        let deployment = self
            .of_kind("Deployment")
            .next()
            .expect("the chart renders a Deployment");
        &deployment["spec"]["template"]["spec"]
    }

    /// Applies the ServiceAccount and every RBAC object, as rendered; the
    /// cluster-scoped ones are deleted when the guard drops (a namespace's
    /// deletion takes only what is in it).
    pub async fn apply_rbac(&self, client: &Client) -> ClusterScoped {
        let mut applied = Vec::new();
        for object in self
            .objects
            .iter()
            .filter(|o| RBAC_KINDS.iter().any(|k| o["kind"] == *k))
        {
            apply(client, object).await;
            if object["metadata"]["namespace"].is_null() {
                applied.push(object.clone());
            }
        }
        ClusterScoped {
            client: client.clone(),
            objects: applied,
        }
    }
}

/// Cluster-scoped objects a test applied; deleted on drop.
pub struct ClusterScoped {
    client: Client,
    objects: Vec<Value>,
}

impl ClusterScoped {
    /// Applies `objects` (server-side) and deletes them on drop.
    pub async fn apply(client: &Client, objects: Vec<Value>) -> Self {
        for object in &objects {
            apply(client, object).await;
        }
        Self {
            client: client.clone(),
            objects,
        }
    }
}

impl Drop for ClusterScoped {
    fn drop(&mut self) {
        let (client, objects) = (self.client.clone(), std::mem::take(&mut self.objects));
        let runtime = tokio::runtime::Handle::current();
        tokio::task::block_in_place(move || {
            runtime.block_on(async move {
                for object in objects {
                    let (api, name) = api_for(&client, &object);
                    if let Err(err) = api.delete(&name, &Default::default()).await {
                        eprintln!("could not delete {} {name}: {err}", object["kind"]);
                    }
                }
            })
        });
    }
}

/// The API of `object`'s kind (in its namespace, if it has one) and its name.
fn api_for(client: &Client, object: &Value) -> (Api<DynamicObject>, String) {
    let (group, version) = match object["apiVersion"].as_str().unwrap().split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", object["apiVersion"].as_str().unwrap()),
    };
    let gvk = GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap());
    let resource = ApiResource::from_gvk(&gvk);
    let name = object["metadata"]["name"].as_str().unwrap().to_owned();
    let api = match object["metadata"]["namespace"].as_str() {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    (api, name)
}

/// Server-side apply of one object (any kind, from its JSON).
pub async fn apply_object(client: &Client, object: &Value) {
    apply(client, object).await;
}

/// Server-side apply of one rendered object.
async fn apply(client: &Client, object: &Value) {
    let (api, name) = api_for(client, object);
    api.patch(
        &name,
        &PatchParams::apply(super::cluster::SUITE_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {} {name}: {e}", object["kind"]));
}
