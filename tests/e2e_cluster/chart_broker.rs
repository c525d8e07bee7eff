//! Scenario t: the once-code broker as a workload reaches it. The chart
//! with `broker.enabled` and a TLS Secret (made here by a CA of the test,
//! for the broker Service's ClusterIP and names); the example client of
//! `deploy/broker-client/` (its ServiceAccount, Role and pod: projected
//! token of the broker's audience, the CA from a ConfigMap, `once-code
//! --broker ... --redact`) in a tenant's namespace, the image and the
//! broker's address (a ClusterIP: no cluster DNS) swapped in:
//!
//! - the pod gets a once-code (its log says so, without the code);
//! - the same pod with `--json` gets one that the simulator (in the
//!   cluster) accepts when a chat client uses it;
//! - the same pod in a namespace without the Role gets 403 Forbidden.

use crate::e2e::image::{self, Image};
use crate::e2e::in_cluster::{ClusterSimulator, credentials_secret, fleet_seed_yaml};
use crate::e2e::release::{Release, namespace_state, shipped_chart};
use crate::e2e::tools::{kubectl, succeed};
use crate::e2e::{Cluster, eventually};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Client;
use kube::api::Api;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(180);
/// The connection the example client's Role names.
const CONNECTION: &str = "retail";

/// A CA and a server certificate it signed for `ip` and the Service's
/// names: (CA PEM, certificate PEM, key PEM).
fn broker_certificate(ip: &str, service: &str, namespace: &str) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "metastudio-operator e2e broker CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let names = vec![
        ip.to_owned(),
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
    ];
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &Issuer::from_params(&ca_params, &ca_key))
        .unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// The example client's manifests (deploy/broker-client/), in `namespace`.
fn example(namespace: &str) -> (Vec<Value>, Value) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/broker-client");
    let read = |file: &str| -> Vec<Value> {
        serde_saphyr::from_multiple(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap()
    };
    let mut rbac = read("role.yaml");
    for object in &mut rbac {
        object["metadata"]["namespace"] = json!(namespace);
        if let Some(subjects) = object.get_mut("subjects").and_then(Value::as_array_mut) {
            subjects
                .iter_mut()
                .for_each(|s| s["namespace"] = json!(namespace));
        }
    }
    let deployment = read("deployment.yaml").remove(0);
    (rbac, deployment["spec"]["template"]["spec"].clone())
}

/// The example's pod, once: in `namespace`, with `image`, asking `broker`,
/// printing as `output` says (`--redact` or `--json`).
fn client_pod(
    example_pod: &Value,
    namespace: &str,
    name: &str,
    image: &Image,
    broker: &str,
    output: &str,
) -> Value {
    let mut pod = example_pod.clone();
    pod["restartPolicy"] = json!("Never");
    let container = &mut pod["containers"][0];
    container["image"] = json!(image.reference());
    container["imagePullPolicy"] = json!("IfNotPresent");
    let args: Vec<Value> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|arg| match arg.as_str().unwrap() {
            url if url.starts_with("https://") => json!(broker),
            "--redact" => json!(output),
            other => json!(other),
        })
        .collect();
    assert!(
        args.contains(&json!(broker)) && args.contains(&json!(output)),
        "{args:?}"
    );
    container["args"] = json!(args);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": pod})
}

/// Runs a pod to its end: its phase and its log.
async fn run_to_end(client: &Client, pod: &Value) -> (String, String) {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap();
    let name = pod["metadata"]["name"].as_str().unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    crate::e2e::in_cluster::create_pod(&pods, &serde_json::from_value(pod.clone()).unwrap()).await;
    let deadline = std::time::Instant::now() + WAIT;
    let phase = loop {
        let phase = pods.get(name).await.ok().and_then(|p| p.status?.phase);
        if let Some(phase) = phase.filter(|p| p == "Succeeded" || p == "Failed") {
            break phase;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "pod {namespace}/{name} did not end\n{}",
            namespace_state(namespace)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    (
        phase,
        succeed(kubectl().args(["logs", "-n", namespace, name])),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t_a_workload_gets_a_once_code_from_the_broker_service_and_a_stranger_gets_403() {
    let Some(image) = image::or_skip("scenario t") else {
        return;
    };
    let cluster = Cluster::connect().await;
    let client = cluster.client.clone();
    let ops = cluster.namespace("t").await;
    let tenant = cluster.namespace("t-kiosk").await;
    let stranger = cluster.namespace("t-other").await;
    let (ns, tenant_ns, stranger_ns) = (
        ops.name.as_str(),
        tenant.name.as_str(),
        stranger.name.as_str(),
    );
    let sim = ClusterSimulator::start(&client, ns, &image, &fleet_seed_yaml(1, 1, 7), &[]).await;

    let mut release = Release::new(&format!("t-{}", &ns[ns.len() - 4..]), ns);
    let mut values = image.values().to_vec();
    values.extend([
        "crds.enabled=false".into(),
        format!("watchNamespaces={{{tenant_ns},{stranger_ns}}}"),
        "broker.enabled=true".into(),
        "broker.tls.secretName=broker-tls".into(),
    ]);
    release.install(&shipped_chart(), &values, &[]);
    // The pods wait for their TLS Secret: a certificate for the Service.
    let service = format!("{}-broker", release.fullname());
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let ip = services
        .get(&service)
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    let (ca, cert, key) = broker_certificate(&ip, &service, ns);
    let objects = [
        json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
               "metadata": {"name": "broker-tls", "namespace": ns},
               "stringData": {"tls.crt": cert, "tls.key": key, "ca.crt": ca}}),
        credentials_secret(tenant_ns, "metastudio-credentials"),
        json!({"apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "MetaStudioConnection",
               "metadata": {"name": CONNECTION, "namespace": tenant_ns},
               "spec": {"endpoint": sim.endpoint(), "projectId": metastudio_operator::simulator::DEFAULT_PROJECT_ID,
                        "credentialsSecretRef": {"name": "metastudio-credentials"}}}),
    ];
    for object in &objects {
        crate::e2e::chart::apply_object(&client, object).await;
    }
    release.rolled_out(&client).await;

    let broker = format!("https://{ip}");
    let (rbac, example_pod) = example(tenant_ns);
    for object in rbac.iter().chain(
        example(stranger_ns)
            .0
            .iter()
            .filter(|o| o["kind"] == "ServiceAccount"),
    ) {
        crate::e2e::chart::apply_object(&client, object).await;
    }
    for namespace in [tenant_ns, stranger_ns] {
        let configmap = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "metastudio-operator-broker-ca", "namespace": namespace},
            "data": {"ca.crt": ca}});
        crate::e2e::chart::apply_object(&client, &configmap).await;
        crate::e2e::in_cluster::default_service_account(&client, namespace).await;
    }
    // The broker answers 503 until its caches synced: the pods run after it is ready.
    eventually("the broker to be ready", WAIT, || async {
        crate::e2e::in_cluster::pods(&client, ns, &release.pod_selector())
            .await
            .iter()
            .all(crate::e2e::in_cluster::is_ready)
            .then_some(())
    })
    .await;

    let (phase, log) = run_to_end(
        &client,
        &client_pod(
            &example_pod,
            tenant_ns,
            "redacted",
            &image,
            &broker,
            "--redact",
        ),
    )
    .await;
    assert_eq!(phase, "Succeeded", "{log}");
    assert!(
        log.starts_with("once-code <redacted> from connection retail, valid until "),
        "{log}"
    );

    let (phase, log) = run_to_end(
        &client,
        &client_pod(&example_pod, tenant_ns, "json", &image, &broker, "--json"),
    )
    .await;
    assert_eq!(phase, "Succeeded", "{log}");
    let answer: Value = serde_json::from_str(log.trim()).unwrap_or_else(|e| panic!("{log}: {e}"));
    let code = answer["onceCode"].as_str().expect("a once-code");
    assert_eq!(
        sim.use_once_code(code).await,
        "accepted",
        "the simulator issued it"
    );

    let (phase, log) = run_to_end(
        &client,
        &client_pod(
            &example_pod,
            stranger_ns,
            "stranger",
            &image,
            &broker,
            "--redact",
        ),
    )
    .await;
    assert_eq!(phase, "Failed", "{log}");
    assert!(log.contains("HTTP 403 Forbidden"), "{log}");

    let logs = crate::e2e::in_cluster::pod_logs(ns, &release.pod_selector());
    crate::e2e::operator::assert_no_forbidden(&logs, "the operator's pods");
    crate::common::capture::assert_clean(&logs, &[code.to_owned()]);
    release.uninstall();
}
