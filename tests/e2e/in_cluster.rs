//! What the chart scenarios (p to u) see of pods: the MetaStudio simulator
//! running in the cluster (the operator's image, `simulator` subcommand,
//! behind a Service, read and driven through the API server's Service
//! proxy, so any cluster works), the operator's pods, its Lease, a
//! container killed with SIGKILL (through the node's containerd), and a
//! container's peak memory (its cgroup, on this machine's node).

use super::image::Image;
use super::release::{namespace_state, rolled_out};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service, ServiceAccount};
use kube::Client;
use kube::api::{Api, ListParams};
use metastudio_operator::simulator::counters::Counters;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The simulator's Deployment and Service name.
pub const SIMULATOR: &str = "simulator";

/// The securityContext of every test pod: what the chart's pods have.
pub fn hardened() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": 65532,
        "readOnlyRootFilesystem": true,
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
    })
}

/// The namespace's default ServiceAccount: until it exists, the admission
/// plugin refuses pods.
pub async fn default_service_account(client: &Client, namespace: &str) {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    super::eventually(
        "the namespace's default ServiceAccount",
        Duration::from_secs(60),
        || async { accounts.get_opt("default").await.ok().flatten() },
    )
    .await;
}

/// A seed of `robots` robots (`robot-0`, ...) with `codes` codes each, valid
/// `days` days, as the simulator's `--seed` file.
pub fn fleet_seed_yaml(robots: usize, codes: u32, days: u16) -> String {
    let list: Vec<String> = (0..robots)
        .map(|i| {
            format!("{{robotId: robot-{i}, generate: {{count: {codes}, validPeriod: {days}}}}}")
        })
        .collect();
    format!(
        "kind: SimulatorSeed\nspec: {{robots: [{}]}}\n",
        list.join(", ")
    )
}

/// The simulator as a Deployment and Service in a namespace.
pub struct ClusterSimulator {
    client: Client,
    namespace: String,
    cluster_ip: String,
}

impl ClusterSimulator {
    /// Runs `image` as `simulator --seed` (the seed from a ConfigMap) with
    /// `flags` (faults), behind a Service on port 80; waits until it is
    /// Ready.
    pub async fn start(
        client: &Client,
        namespace: &str,
        image: &Image,
        seed: &str,
        flags: &[&str],
    ) -> Self {
        default_service_account(client, namespace).await;
        let mut args = vec![
            "simulator",
            "--listen",
            "0.0.0.0:8080",
            "--seed",
            "/seed/seed.yaml",
        ];
        args.extend_from_slice(flags);
        let labels = json!({"app": SIMULATOR});
        let objects = [
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "simulator-seed", "namespace": namespace},
                   "data": {"seed.yaml": seed}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": SIMULATOR, "namespace": namespace},
                   "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                            "template": {"metadata": {"labels": labels}, "spec": {
                                "terminationGracePeriodSeconds": 1,
                                "automountServiceAccountToken": false,
                                "containers": [{
                                    "name": SIMULATOR, "image": image.reference(),
                                    "imagePullPolicy": "IfNotPresent", "args": args,
                                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                    "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                                    "securityContext": hardened(),
                                    "volumeMounts": [{"name": "seed", "mountPath": "/seed", "readOnly": true}]}],
                                "volumes": [{"name": "seed", "configMap": {"name": "simulator-seed"}}]}}}}),
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": SIMULATOR, "namespace": namespace},
                   // The protocol, which 1.20's server-side apply needs
                   // spelt out (the key of the ports list).
                   "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}}),
        ];
        for object in &objects {
            super::chart::apply_object(client, object).await;
        }
        rolled_out(client, namespace, SIMULATOR).await;
        let services: Api<Service> = Api::namespaced(client.clone(), namespace);
        let cluster_ip = services
            .get(SIMULATOR)
            .await
            .unwrap()
            .spec
            .and_then(|s| s.cluster_ip)
            .expect("the Service has a ClusterIP");
        Self {
            client: client.clone(),
            namespace: namespace.to_owned(),
            cluster_ip,
        }
    }

    /// The endpoint pods use: the Service's ClusterIP (there may be no
    /// cluster DNS).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.cluster_ip)
    }

    /// `path` of the simulator, through the API server's Service proxy.
    fn proxy_path(&self, path: &str) -> String {
        format!(
            "/api/v1/namespaces/{}/services/{SIMULATOR}:80/proxy{path}",
            self.namespace
        )
    }

    /// The simulator's counters (`GET /_simulator/counters`).
    pub async fn counters(&self) -> Counters {
        let request = http::Request::get(self.proxy_path("/_simulator/counters"))
            .body(Vec::new())
            .unwrap();
        let text = self
            .client
            .request_text(request)
            .await
            .unwrap_or_else(|e| panic!("the simulator's counters: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("counters {text}: {e}"))
    }

    /// Uses a once-code as a chat client would: `accepted`, `already_used`,
    /// `expired` or `unknown`.
    pub async fn use_once_code(&self, code: &str) -> String {
        let request = http::Request::post(self.proxy_path("/_simulator/once-code/use"))
            .header("Content-Type", "application/json")
            .body(json!({"once_code": code}).to_string().into_bytes())
            .unwrap();
        let text = self.client.request_text(request).await.unwrap();
        let answer: Value = serde_json::from_str(&text).unwrap();
        answer["result"].as_str().unwrap_or_default().to_owned()
    }
}

impl ClusterSimulator {
    /// The name of the MetaStudioConnection [`Self::connect`] makes.
    pub const CONNECTION: &'static str = "simulator";

    /// A credentials Secret with the simulator's keys and a
    /// MetaStudioConnection [`Self::CONNECTION`] to the simulator in
    /// `namespace`, for its ActivationCodes' `spec.connectionRef` (in a
    /// cluster only a connection resource may name an endpoint that is not
    /// MetaStudio's own).
    pub async fn connect(&self, namespace: &str) {
        let objects = [
            credentials_secret(namespace, "metastudio-credentials"),
            json!({"apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "MetaStudioConnection",
                   "metadata": {"name": Self::CONNECTION, "namespace": namespace},
                   "spec": {"endpoint": self.endpoint(),
                            "projectId": metastudio_operator::simulator::DEFAULT_PROJECT_ID,
                            "credentialsSecretRef": {"name": "metastudio-credentials"}}}),
        ];
        for object in &objects {
            super::chart::apply_object(&self.client, object).await;
        }
    }
}

/// A Secret with the simulator's default keys, for connections.
pub fn credentials_secret(namespace: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
           "stringData": {"accessKey": metastudio_operator::simulator::DEFAULT_ACCESS_KEY,
                          "secretKey": metastudio_operator::simulator::DEFAULT_SECRET_KEY}})
}

/// The pods that `selector` selects in `namespace`.
pub async fn pods(client: &Client, namespace: &str, selector: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    api.list(&ListParams::default().labels(selector))
        .await
        .unwrap()
        .items
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Restarts of the pod's containers so far.
pub fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|all| all.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

/// The running container's id (without the `containerd://` prefix).
pub fn container_id(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?.container_statuses.as_ref()?.first()?;
    let id = status.container_id.as_deref()?;
    Some(id.rsplit("://").next()?.to_owned())
}

/// The Lease's holder.
pub async fn lease_holder(client: &Client, namespace: &str, name: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), namespace);
    leases.get(name).await.ok()?.spec?.holder_identity
}

/// Waits until the Lease names one of `among`; returns it.
pub async fn holder_among(
    client: &Client,
    namespace: &str,
    lease: &str,
    among: &[String],
) -> String {
    super::eventually(
        &format!("Lease {lease} to be held by one of {among:?}"),
        Duration::from_secs(120),
        || async {
            lease_holder(client, namespace, lease)
                .await
                .filter(|h| among.contains(h))
        },
    )
    .await
}

/// How the suite reaches the node's containerd (`scripts/control-plane`
/// exports it), or why it cannot.
fn containerd() -> Result<(String, String), String> {
    let address = std::env::var("CONTAINERD_ADDRESS").map_err(|_| {
        "CONTAINERD_ADDRESS is not set: killing a container with SIGKILL needs the node's containerd (scripts/control-plane exports it)".to_owned()
    })?;
    let namespace = std::env::var("CONTAINERD_NAMESPACE").unwrap_or_else(|_| "k8s.io".into());
    Ok((address, namespace))
}

/// Whether the suite can kill containers with SIGKILL; the reason if not.
pub fn can_kill_containers() -> Result<(), String> {
    containerd().map(|_| ())
}

/// SIGKILL to the pod's running container, through the node's containerd
/// (`ctr task kill`): the kubelet then restarts it in the same pod.
pub fn kill_9(pod: &Pod) {
    let (address, namespace) = containerd().unwrap_or_else(|e| panic!("{e}"));
    let id = container_id(pod).expect("the pod's container runs");
    super::tools::succeed(
        Command::new("ctr")
            .args(["--address", &address, "--namespace", &namespace])
            .args(["task", "kill", "--signal", "SIGKILL", &id]),
    );
}

/// The container's cgroup directory in the memory hierarchy of this
/// machine, if the pod runs on this machine's node: `.../pod<UID>/<ID>`.
fn memory_cgroup(pod: &Pod) -> Option<PathBuf> {
    let uid = pod.metadata.uid.as_deref()?;
    let id = container_id(pod)?;
    find_dir(Path::new("/sys/fs/cgroup/memory"), &format!("pod{uid}"), 6).map(|p| p.join(id))
}

fn find_dir(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let subdirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    if let Some(found) = subdirs
        .iter()
        .find(|p| p.file_name().is_some_and(|n| n == name))
    {
        return Some(found.clone());
    }
    if depth == 0 {
        return None;
    }
    subdirs.iter().find_map(|p| find_dir(p, name, depth - 1))
}

/// The container's peak memory (cgroup v1 `memory.max_usage_in_bytes`) and
/// limit, in bytes; why not, when its cgroup is not on this machine.
pub fn peak_memory(pod: &Pod) -> Result<(u64, u64), String> {
    let dir = memory_cgroup(pod).ok_or_else(|| {
        "the pod's memory cgroup is not on this machine (cgroup v1 under /sys/fs/cgroup/memory): the node is elsewhere".to_owned()
    })?;
    let read = |file: &str| -> Result<u64, String> {
        let path = dir.join(file);
        std::fs::read_to_string(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .trim()
            .parse()
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    Ok((
        read("memory.max_usage_in_bytes")?,
        read("memory.limit_in_bytes")?,
    ))
}

/// The three CRDs of the product, by name.
pub fn crd_names() -> Vec<String> {
    metastudio_operator::crd::definitions()
        .iter()
        .map(|(_, crd)| crd.metadata.name.clone().unwrap())
        .collect()
}

/// Deletes `names` (CRDs) and waits until they are gone, with every
/// resource of their kinds: a cluster as a new user finds it.
pub async fn delete_crds(client: &Client, names: &[String]) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in names {
        let _ = crds.delete(name, &Default::default()).await;
    }
    for name in names {
        super::eventually(
            &format!(
                "CRD {name} to be deleted (a resource of its kind with a finalizer holds it?)"
            ),
            Duration::from_secs(120),
            || async {
                crds.get_opt(name)
                    .await
                    .ok()
                    .and_then(|c| c.is_none().then_some(()))
            },
        )
        .await;
    }
}

/// The operator pods' logs (every container, previous runs included).
pub fn pod_logs(namespace: &str, selector: &str) -> String {
    let mut logs = String::new();
    for previous in [false, true] {
        let mut command = super::tools::kubectl();
        command.args([
            "logs",
            "-n",
            namespace,
            "-l",
            selector,
            "--tail=-1",
            "--prefix",
        ]);
        if previous {
            command.arg("--previous");
        }
        let output = command.output().unwrap();
        logs.push_str(&String::from_utf8_lossy(&output.stdout));
    }
    logs
}

/// Fails, with the namespace's state, unless every operator pod of
/// `selector` is Ready and none restarted.
pub async fn assert_no_restarts(client: &Client, namespace: &str, selector: &str) {
    for pod in pods(client, namespace, selector).await {
        assert_eq!(
            restarts(&pod),
            0,
            "pod {} restarted\n{}",
            pod.metadata.name.unwrap_or_default(),
            namespace_state(namespace)
        );
    }
}

/// GET `path` of a pod's `port`, through `kubectl port-forward` (any
/// cluster; the API server's pod proxy would replace a 503's body, which
/// `/readyz` fills with the reason): the status and the body.
pub async fn pod_get(namespace: &str, pod: &str, port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut forward = tokio::process::Command::new(super::tools::kubectl().get_program())
        .args([
            "port-forward",
            "-n",
            namespace,
            &format!("pod/{pod}"),
            &format!(":{port}"),
        ])
        .args(["--address", "127.0.0.1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl port-forward starts");
    let mut lines = BufReader::new(forward.stdout.take().unwrap()).lines();
    let local = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            // "Forwarding from 127.0.0.1:43127 -> 8080"
            if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                return rest.split_whitespace().next().map(str::to_owned);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    let Some(local) = local else {
        return (
            0,
            format!("kubectl port-forward to {namespace}/{pod}:{port} did not start"),
        );
    };
    match reqwest::get(format!("http://127.0.0.1:{local}{path}")).await {
        Ok(response) => (
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        ),
        Err(err) => (0, err.to_string()),
    }
}

/// What the kernel says of the pod's container process on this machine's
/// node: its `/proc/PID/status` and `/proc/PID/mountinfo`; why not, when
/// the node is elsewhere.
pub fn container_process(pod: &Pod) -> Result<(String, String), String> {
    let dir = memory_cgroup(pod).ok_or_else(|| {
        "the pod's cgroup is not on this machine: the node is elsewhere".to_owned()
    })?;
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).map_err(|e| e.to_string())?;
    let pid = procs.lines().next().ok_or("the container has no process")?;
    let read = |file: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/{file}"))
            .map_err(|e| format!("/proc/{pid}/{file}: {e}"))
    };
    Ok((read("status")?, read("mountinfo")?))
}

/// The value of `key` in a `/proc/PID/status` text.
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// The mount options of the root (`/`) in a `/proc/PID/mountinfo` text.
pub fn root_mount_options(mountinfo: &str) -> Option<&str> {
    mountinfo.lines().find_map(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        (fields.get(4) == Some(&"/")).then(|| fields.get(5).copied())?
    })
}

/// Creates `pod`, again while the API server answers that the namespace's
/// ServiceAccount has no token yet (1.20's ServiceAccount admission, until
/// the token controller made its Secret: a 500 that asks to retry).
pub async fn create_pod(pods: &Api<Pod>, pod: &Pod) -> Pod {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match pods.create(&Default::default(), pod).await {
            Ok(created) => return created,
            Err(kube::Error::Api(status))
                if status.message.contains("No API token found")
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => panic!(
                "create pod {}: {err}",
                pod.metadata.name.as_deref().unwrap_or_default()
            ),
        }
    }
}
