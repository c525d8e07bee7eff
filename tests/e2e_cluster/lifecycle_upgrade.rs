//! Scenario r: `helm upgrade`, alone on the cluster (the CRDs change).
//!
//! - To a second image tag and a chart version whose ActivationCode CRD has
//!   a new field, during a token rotation of 20 ActivationCodes x 10 codes:
//!   the Deployment rolls one pod at a time, never fewer Ready pods than
//!   the PodDisruptionBudget keeps (one of two), every code is reset
//!   exactly once, and the new field reaches the cluster through the CRD
//!   templates (a resource that sets it keeps it).
//! - From a release installed without the connection CRDs (a chart whose
//!   crds/ held only ActivationCode, as 0.1.0 did; here the CRDs left to the
//!   user with crds.enabled=false): the operator's pods say in /readyz and
//!   in their log which CRDs are missing, and the same pods reconcile once
//!   `helm upgrade --set crds.enabled=true --take-ownership` brings them.

use super::chart_handover::{apply_fleet, code_manifest, fleet_ready};
use crate::e2e::image::{self, Image};
use crate::e2e::in_cluster::{
    ClusterSimulator, assert_no_restarts, crd_names, delete_crds, fleet_seed_yaml, is_ready,
    pod_get, pod_logs, pods,
};
use crate::e2e::release::{Release, shipped_chart};
use crate::e2e::tools::{kubectl, succeed};
use crate::e2e::{Cluster, eventually};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const FLEET: usize = 20;
const CODES: u32 = 10;
const WAIT: Duration = Duration::from_secs(240);
/// The field the next chart version adds to the ActivationCode CRD.
const ADDED_FIELD: &str = "e2eAddedField";
const NEXT_VERSION: &str = "0.99.0-e2e";

/// A copy of the shipped chart in `dir`, as its next version: Chart.yaml's
/// version bumped, a string field [`ADDED_FIELD`] in the ActivationCode's
/// spec.
fn next_chart_version(dir: &Path) -> std::path::PathBuf {
    let chart = dir.join("metastudio-operator");
    succeed(
        std::process::Command::new("cp")
            .arg("-r")
            .arg(shipped_chart())
            .arg(&chart),
    );
    let edit = |file: &str, from: &str, to: &str| {
        let path = chart.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} holds no {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    };
    let version = std::fs::read_to_string(chart.join("Chart.yaml"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("version: ").map(str::to_owned))
        .unwrap();
    edit(
        "Chart.yaml",
        &format!("version: {version}\n"),
        &format!("version: {NEXT_VERSION}\n"),
    );
    // The spec's properties, as the generated template indents them.
    let robot = "              robotId:\n";
    edit(
        "templates/crds/activationcode.yaml",
        robot,
        &format!(
            "              {ADDED_FIELD}:\n                description: A field the next chart version adds (end-to-end scenario r).\n                type: string\n{robot}"
        ),
    );
    chart
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_helm_upgrade_during_a_rotation_rolls_under_the_pdb_and_adds_a_crd_field() {
    let Some(image) = image::or_skip("scenario r") else {
        return;
    };
    let next = match Image::from_env("E2E_IMAGE_NEXT") {
        Ok(next) => next,
        Err(reason) => {
            eprintln!("SKIPPED scenario r's upgrade to a second image tag: {reason}");
            return;
        }
    };
    let cluster = Cluster::connect_alone().await;
    let client = cluster.client.clone();
    delete_crds(&client, &crd_names()).await;
    let namespace = cluster.namespace("r").await;
    let ns = namespace.name.as_str();
    let sim =
        ClusterSimulator::start(&client, ns, &image, &fleet_seed_yaml(FLEET, CODES, 7), &[]).await;
    let mut release = Release::new(&format!("r-{}", &ns[ns.len() - 4..]), ns);
    // 10 writes a second: the 200 resets take 20 s, longer than the rollout.
    let values = |image: &Image| {
        let mut values = image.values().to_vec();
        values.extend([
            format!("watchNamespaces={{{ns}}}"),
            "resetGrace=1s".into(),
            "defaults.writeRate=10".into(),
        ]);
        values
    };
    release.install(&shipped_chart(), &values(&image), &[]);
    release.rolled_out(&client).await;
    // The connection's CRD came with the release.
    sim.connect(ns).await;
    apply_fleet(&client, ns, FLEET, |_| json!({})).await;
    fleet_ready(&client, ns, FLEET, WAIT).await;

    apply_fleet(&client, ns, FLEET, |_| json!({"reset": {"token": "t1"}})).await;
    eventually("the rotation to be under way", WAIT, || async {
        (sim.counters().await.total_resets() >= 20).then_some(())
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let chart = next_chart_version(dir.path());
    let watching = Arc::new(AtomicBool::new(true));
    let fewest_ready = tokio::spawn(fewest_ready_while(
        client.clone(),
        ns.to_owned(),
        release.pod_selector(),
        watching.clone(),
    ));
    release.upgrade(&chart, &values(&next), &[]);
    let rolled = release.rolled_out(&client).await;
    watching.store(false, Ordering::SeqCst);
    let fewest = fewest_ready.await.unwrap();
    let resets_then = sim.counters().await.total_resets();
    println!(
        "upgrade rolled out with {resets_then} of {} resets done; fewest Ready operator pods during it: {fewest}",
        FLEET * CODES as usize
    );
    assert!(
        fewest >= 1,
        "the rollout left no Ready operator pod (the PodDisruptionBudget keeps one of two)"
    );
    let template = rolled.spec.template.spec.unwrap();
    assert_eq!(
        template.containers[0].image.as_deref(),
        Some(next.reference().as_str())
    );
    let pdb = succeed(kubectl().args([
        "get",
        "poddisruptionbudget",
        "-n",
        ns,
        &release.fullname(),
        "-o",
        "jsonpath={.apiVersion} {.spec.maxUnavailable}",
    ]));
    println!("PodDisruptionBudget: {pdb}");
    assert!(pdb.ends_with(" 1"), "{pdb}");

    fleet_ready(&client, ns, FLEET, WAIT).await;
    let counters = sim.counters().await;
    assert_eq!(
        counters.resets.len(),
        FLEET * CODES as usize,
        "every code reset"
    );
    let twice: Vec<_> = counters.resets.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "codes reset other than once across the upgrade: {twice:?}"
    );

    the_new_field_is_served(&client, ns).await;
    let logs = pod_logs(ns, &release.pod_selector());
    crate::e2e::operator::assert_no_forbidden(&logs, "the operator's pods");
}

/// The fewest Ready pods of `selector` seen while `watching`, polled.
async fn fewest_ready_while(
    client: Client,
    ns: String,
    selector: String,
    watching: Arc<AtomicBool>,
) -> usize {
    let mut fewest = usize::MAX;
    while watching.load(Ordering::SeqCst) {
        let ready = pods(&client, &ns, &selector)
            .await
            .iter()
            .filter(|p| is_ready(p))
            .count();
        fewest = fewest.min(ready);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    fewest
}

/// The upgraded CRD has [`ADDED_FIELD`], and a resource that sets it keeps
/// it (the API server no longer prunes it).
async fn the_new_field_is_served(client: &Client, ns: &str) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = serde_json::to_value(
        crds.get("activationcodes.metastudio.huaweicloud.com")
            .await
            .unwrap(),
    )
    .unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert_eq!(
        spec[ADDED_FIELD]["type"], "string",
        "the CRD lacks the new chart version's field"
    );
    assert_eq!(
        crd["metadata"]["labels"]["helm.sh/chart"],
        format!("metastudio-operator-{NEXT_VERSION}")
    );
    let mut manifest = code_manifest(ns, 0, json!({ADDED_FIELD: "kept"}));
    manifest["metadata"]["name"] = json!("with-new-field");
    crate::e2e::chart::apply_object(client, &manifest).await;
    let stored = succeed(kubectl().args([
        "get",
        "ac",
        "-n",
        ns,
        "with-new-field",
        "-o",
        &format!("jsonpath={{.spec.{ADDED_FIELD}}}"),
    ]));
    assert_eq!(stored, "kept", "the API server pruned the new field");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_an_upgrade_from_a_release_without_the_connection_crds_names_them_then_reconciles() {
    let Some(image) = image::or_skip("scenario r (connection CRDs)") else {
        return;
    };
    let cluster = Cluster::connect_alone().await;
    let client = cluster.client.clone();
    delete_crds(&client, &crd_names()).await;
    // What a 0.1.0 release left: the ActivationCode CRD, created by Helm from
    // its crds/ (no release owns it), and no connection CRDs.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let only = crate::e2e::cluster::product_crd("ActivationCode", cluster.supports_cel());
    crds.create(
        &PostParams::default(),
        &serde_json::from_value(only).unwrap(),
    )
    .await
    .unwrap();
    let namespace = cluster.namespace("r-crds").await;
    let ns = namespace.name.as_str();
    let mut release = Release::new(&format!("r-{}", &ns[ns.len() - 4..]), ns);
    let mut values = image.values().to_vec();
    values.push(format!("watchNamespaces={{{ns}}}"));
    release.install(
        &shipped_chart(),
        &[values.clone(), vec!["crds.enabled=false".into()]].concat(),
        &[],
    );

    let missing = [
        "CRD metastudioconnections.metastudio.huaweicloud.com is not installed: kubectl apply --server-side -f crds/ (or helm upgrade with --set crds.enabled=true)",
        "CRD clustermetastudioconnections.metastudio.huaweicloud.com is not installed",
    ];
    let waiting = eventually(
        "both pods to say in /readyz which CRDs are missing",
        WAIT,
        || async {
            let running = pods(&client, ns, &release.pod_selector()).await;
            let mut said = Vec::new();
            for pod in &running {
                let name = pod.metadata.name.clone()?;
                let (status, body) = pod_get(ns, &name, 8080, "/readyz").await;
                (status == 503 && missing.iter().all(|m| body.contains(m))).then_some(())?;
                said.push((name, body));
            }
            (said.len() == 2).then_some(said)
        },
    )
    .await;
    println!("/readyz of {}: {}", waiting[0].0, waiting[0].1.trim());
    let logs = pod_logs(ns, &release.pod_selector());
    assert!(
        logs.contains(missing[0]),
        "the log does not name the missing CRD:\n{logs}"
    );
    assert!(
        !logs.contains("404 page not found"),
        "the operator looped on 404s:\n{logs}"
    );
    let before: Vec<_> = pods(&client, ns, &release.pod_selector())
        .await
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();

    // The upgrade path: the chart's CRD templates, taking over the CRD the
    // old chart's crds/ had created.
    let sim = ClusterSimulator::start(&client, ns, &image, &fleet_seed_yaml(1, 3, 7), &[]).await;
    release.upgrade(
        &shipped_chart(),
        &[values, vec!["crds.enabled=true".into()]].concat(),
        &["--take-ownership"],
    );
    release.rolled_out(&client).await;
    sim.connect(ns).await;
    let after: Vec<_> = pods(&client, ns, &release.pod_selector())
        .await
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(before, after, "the same pods started once the CRDs came");
    assert_no_restarts(&client, ns, &release.pod_selector()).await;
    apply_fleet(&client, ns, 1, |_| json!({"validPeriod": 9})).await;
    fleet_ready(&client, ns, 1, WAIT).await;
    let logs = pod_logs(ns, &release.pod_selector());
    assert!(
        logs.contains("every CRD the operator watches is installed: starting"),
        "{logs}"
    );
}
