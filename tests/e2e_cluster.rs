//! End to end against a real cluster: runs when KUBECONFIG names one, and
//! is skipped with a message otherwise (no API server can be had here).
//!
//!     KUBECONFIG=~/.kube/kind-config cargo test --test e2e_cluster -- --nocapture
//!
//! It installs the CRD, runs the controller in this process against the
//! cluster and the simulator, applies the lobby-kiosk example in a fresh
//! namespace, waits for Ready, checks the export Secret and that the
//! example's token reset each of its three codes exactly once, and deletes
//! the namespace (also when an assertion fails).

mod common;

use clap::Parser;
use common::simulator;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, CustomResourceExt, ResourceExt};
use metastudio_operator::cli::run::{RunArgs, run};
use metastudio_operator::crd::ActivationCode;
use metastudio_operator::simulator::{DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig, Seed};
use serde_json::json;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct RunFlags {
    #[command(flatten)]
    args: RunArgs,
}

async fn cluster() -> Option<Client> {
    if std::env::var_os("KUBECONFIG").is_none() {
        eprintln!(
            "SKIPPED e2e_cluster: KUBECONFIG is not set; point it at a disposable test cluster (kind, k3d, minikube) to run the end-to-end suite"
        );
        return None;
    }
    metastudio_operator::tls::install_crypto_provider();
    match Client::try_default().await {
        Ok(client) => Some(client),
        Err(err) => panic!("KUBECONFIG is set but no cluster is reachable: {err}"),
    }
}

/// Deletes the test namespace when dropped, so a failed assertion does not
/// leave it behind.
struct NamespaceGuard {
    api: Api<Namespace>,
    name: String,
}

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        let (api, name) = (self.api.clone(), self.name.clone());
        let runtime = tokio::runtime::Handle::current();
        // The test runs on a multi-thread runtime, whose block_on thread may
        // block in place to finish the deletion.
        tokio::task::block_in_place(move || {
            runtime.block_on(async move {
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => eprintln!("deleted test namespace {name}"),
                    Err(err) => eprintln!("could not delete test namespace {name}: {err}"),
                }
            })
        });
    }
}

/// Polls `check` until it returns Some, or fails after `timeout`.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_becomes_ready_and_exports_its_codes() {
    let Some(client) = cluster().await else {
        return;
    };
    let ssa = PatchParams::apply("metastudio-operator-e2e").force();

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "activationcodes.metastudio.huaweicloud.com",
        &ssa,
        &Patch::Apply(ActivationCode::crd()),
    )
    .await
    .expect("install the CRD");
    eventually(
        "the CRD to be established",
        Duration::from_secs(60),
        || async {
            let crd = crds
                .get("activationcodes.metastudio.huaweicloud.com")
                .await
                .ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        },
    )
    .await;

    let namespace = format!("metastudio-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap(),
        )
        .await
        .expect("create the test namespace");
    let _cleanup = NamespaceGuard {
        api: namespaces.clone(),
        name: namespace.clone(),
    };

    let seed = Seed::from_yaml(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/simulator-seed.yaml"
        ))
        .unwrap(),
    )
    .unwrap();
    let sim = simulator(seed, FaultConfig::default()).await;

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "metastudio-credentials"},
                "stringData": {"accessKey": DEFAULT_ACCESS_KEY, "secretKey": DEFAULT_SECRET_KEY}
            }))
            .unwrap(),
        )
        .await
        .unwrap();

    let mut example: ActivationCode = serde_saphyr::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/lobby-kiosk.yaml"
        ))
        .unwrap(),
    )
    .unwrap();
    example.metadata.namespace = Some(namespace.clone());
    let connection = example.spec.connection.as_mut().unwrap();
    connection.endpoint = Some(sim.endpoint());
    connection.region = None;
    connection.project_id = Some(sim.project_id().to_owned());
    let resources: Api<ActivationCode> = Api::namespaced(client.clone(), &namespace);
    resources
        .create(&PostParams::default(), &example)
        .await
        .expect("apply the example");

    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let args = RunFlags::try_parse_from([
        "run",
        "--metrics-addr",
        "127.0.0.1:0",
        "--watch-namespaces",
        &namespace,
        "--rate-limit",
        "0",
    ])
    .unwrap()
    .args;
    let operator = tokio::spawn(run(args, client.clone(), shutdown, |_| {}));

    let name = example.name_any();
    let ready = eventually("Ready=True", Duration::from_secs(90), || async {
        let current = resources.get(&name).await.ok()?;
        let status = current.status?;
        status
            .condition("Ready")
            .filter(|c| c.status == "True")
            .map(|_| status.clone())
    })
    .await;
    assert_eq!(ready.managed_codes, 3);

    let export = secrets
        .get("lobby-kiosk-codes")
        .await
        .expect("the export Secret exists");
    assert_eq!(export.owner_references()[0].kind, "ActivationCode");
    assert_eq!(export.data.unwrap_or_default().len(), 3);
    let counters = sim.counters();
    assert_eq!(
        counters.total_resets(),
        3,
        "the example's token reset each of its 3 codes exactly once: {:?}",
        counters.resets
    );

    let _ = stop.send(true);
    operator.await.unwrap().expect("the operator stops cleanly");
}
