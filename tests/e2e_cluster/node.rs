//! The node runs pods: a pod of a tiny static image (`node_echo.c` beside
//! this file, built with `musl-gcc -static` and packed by
//! `scripts/docker_archive.py`, as `scripts/control-plane` builds the pause
//! image) gets Ready through a probe from the kubelet, answers the host
//! through its Service's ClusterIP, and `kubectl logs` and `kubectl exec`
//! reach it through the kubelet (the apiserver's kubelet client
//! certificate, the kubelet's webhook authorization); from inside, the pod
//! reaches its own Service (hairpin) and the API server through the
//! `kubernetes` Service.
//!
//! It needs a Ready node and a way to load the image into it: the
//! `CONTROL_PLANE_LOAD_IMAGE` command that `scripts/control-plane` exports.
//! On a cluster without either (any cluster `E2E_KUBECONFIG` names, unless
//! that variable is set for it too) it says SKIPPED and why.

use crate::e2e::tools::{kubectl, succeed};
use crate::e2e::{Cluster, eventually};
use k8s_openapi::api::core::v1::{Node, Pod, Service, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const IMAGE: &str = "localhost/metastudio-e2e/node-echo:1";
const POD: &str = "echo";
const WAIT: Duration = Duration::from_secs(120);

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Why this cluster cannot run the scenario, if it cannot; else the command
/// that loads an image into its node.
async fn loader_or_skip(cluster: &Cluster) -> Result<String, String> {
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let nodes = nodes.list(&ListParams::default()).await.unwrap();
    if !nodes.items.iter().any(is_ready) {
        return Err("the cluster has no Ready node".into());
    }
    std::env::var("CONTROL_PLANE_LOAD_IMAGE").map_err(|_| {
        "CONTROL_PLANE_LOAD_IMAGE is not set: it names the command that loads the test image into the node (scripts/control-plane exports it)".into()
    })
}

/// Builds the echo image in `dir` and loads it with `loader`.
fn build_and_load_image(dir: &Path, loader: &str) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e_cluster/node_echo.c");
    let binary = dir.join("echo");
    let archive = dir.join("echo.tar");
    succeed(
        Command::new("musl-gcc")
            .args(["-Os", "-Wall", "-Werror", "-static", "-o"])
            .arg(&binary)
            .arg(&source),
    );
    succeed(
        Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/docker_archive.py"))
            .args([
                "--tag",
                IMAGE,
                "--entrypoint",
                "/echo",
                "--user",
                "65532:65532",
                "-o",
            ])
            .arg(&archive)
            .arg(format!("{}:/echo", binary.display())),
    );
    succeed(Command::new(loader).arg(&archive));
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What the service at `address` answers, if it answers.
async fn answer(address: SocketAddr) -> Option<String> {
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        Some(text)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_runs_a_pod_that_answers_through_its_service() {
    let cluster = Cluster::connect().await;
    let loader = match loader_or_skip(&cluster).await {
        Ok(loader) => loader,
        Err(reason) => {
            eprintln!("SKIPPED node_runs_a_pod_that_answers_through_its_service: {reason}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    build_and_load_image(dir.path(), &loader);
    let namespace = cluster.namespace("node").await;
    let ns = namespace.name.as_str();

    // The ServiceAccount admission plugin refuses pods until the
    // namespace's default ServiceAccount exists.
    let accounts: Api<ServiceAccount> = Api::namespaced(cluster.client.clone(), ns);
    eventually("the default ServiceAccount", WAIT, || async {
        accounts.get_opt("default").await.ok().flatten()
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let pod = serde_json::from_value(json!({
        "metadata": {"name": POD, "labels": {"app": POD}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": POD,
                "image": IMAGE,
                "imagePullPolicy": "Never",
                "ports": [{"containerPort": 8080}],
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1},
                "securityContext": {
                    "runAsNonRoot": true,
                    "readOnlyRootFilesystem": true,
                    "allowPrivilegeEscalation": false,
                    "capabilities": {"drop": ["ALL"]}
                }
            }]
        }
    }))
    .unwrap();
    crate::e2e::in_cluster::create_pod(&pods, &pod).await;
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), ns);
    let service = serde_json::from_value(json!({
        "metadata": {"name": POD},
        "spec": {"selector": {"app": POD}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))
    .unwrap();
    let service = services
        .create(&PostParams::default(), &service)
        .await
        .unwrap();
    let cluster_ip = service.spec.unwrap().cluster_ip.unwrap();

    eventually("the pod to be Ready", WAIT, || async {
        pods.get(POD).await.ok().filter(pod_ready)
    })
    .await;
    let address: SocketAddr = format!("{cluster_ip}:80").parse().unwrap();
    let answered = eventually(
        &format!("the Service's ClusterIP {address} to answer from the host"),
        WAIT,
        || answer(address),
    )
    .await;
    assert_eq!(answered, format!("hello from {POD}\n"));

    // The container's log, as the kubelet serves it.
    eventually("kubectl logs to show the connection", WAIT, || async {
        let logs = succeed(kubectl().args(["logs", "-n", ns, POD]));
        (logs.contains(&format!("listening on :8080 as {POD}"))
            && logs.contains("answered a connection"))
        .then_some(())
    })
    .await;
    // From inside the pod (`kubectl exec`): its own Service (hairpin
    // through the bridge) and the API server through the `kubernetes`
    // Service, as in-cluster clients reach it.
    let connect = |target: String| {
        succeed(kubectl().args(["exec", "-n", ns, POD, "--", "/echo", "--connect", &target]))
    };
    assert_eq!(
        connect(format!("{cluster_ip}:80")),
        format!("hello from {POD}\n")
    );
    let kubernetes: Api<Service> = Api::namespaced(cluster.client.clone(), "default");
    let api_ip = kubernetes
        .get("kubernetes")
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    assert_eq!(connect(format!("{api_ip}:443")), "connected\n");
}
