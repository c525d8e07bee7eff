//! The operator's check, by API discovery, that the CRDs it watches are
//! installed and served at the version it reads (`controller::crd_check`):
//! against kube's mocked API, each missing CRD is named with the command
//! that installs it, in `/readyz` and once per interval in the log, and the
//! check ends once they are served; through `run` against the in-memory
//! API, no controller starts (no list or watch of ActivationCodes, which
//! would fail with 404 in a loop) until the connection CRDs appear, and the
//! operator then reconciles.

mod common;

use common::capture::{Captured, trace_subscriber};
use common::fake_api::{FakeCluster, Operator, RUN_TOKEN, activation_code, eventually, get};
use common::kube_mock::{ApiServer, mock_client};
use common::{ROBOT, robot_seed};
use metastudio_operator::controller::crd_check::{self, POLL, REPEAT};
use metastudio_operator::simulator::FaultConfig;
use metastudio_operator::telemetry::http::Health;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const GROUP: &str = "metastudio.huaweicloud.com";

/// `/apis` with the operator's group at `versions`.
fn groups(versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{GROUP}/{v}"), "version": v}))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}]},
        {"name": GROUP, "versions": versions, "preferredVersion": versions[0]},
    ]})
}

/// `/apis/GROUP/VERSION` serving `plurals` (each with its status).
fn resources(version: &str, plurals: &[&str]) -> Value {
    let resources: Vec<Value> = plurals
        .iter()
        .flat_map(|p| [p.to_string(), format!("{p}/status")])
        .map(|name| json!({"name": name, "singularName": "", "namespaced": true, "kind": "", "verbs": ["list"]}))
        .collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{GROUP}/{version}"),
           "resources": resources})
}

/// Answers one look of the check: `/apis`, then each version's resources.
async fn discovery(api: &mut ApiServer, served: &[(&str, &[&str])]) {
    let versions: Vec<&str> = served.iter().map(|(v, _)| *v).collect();
    api.expect("GET", "/apis", 200, groups(&versions)).await;
    for (version, plurals) in served {
        api.expect(
            "GET",
            &format!("/apis/{GROUP}/{version}"),
            200,
            resources(version, plurals),
        )
        .await;
    }
}

const MISSING_CONNECTIONS: &str = "CRD metastudioconnections.metastudio.huaweicloud.com is not installed: kubectl apply --server-side -f crds/ (or helm upgrade with --set crds.enabled=true)";
const MISSING_CLUSTER_CONNECTIONS: &str =
    "CRD clustermetastudioconnections.metastudio.huaweicloud.com is not installed";

#[tokio::test(start_paused = true)]
async fn each_missing_crd_is_named_once_per_interval_until_it_is_served() {
    let logs = Captured::default();
    let _logging = tracing::subscriber::set_default(trace_subscriber(&logs));
    let (client, mut api) = mock_client();
    let health = Arc::new(Health::default());
    let (_stop, shutdown) = watch::channel(false);
    let check = tokio::spawn({
        let health = health.clone();
        async move { crd_check::wait_until_served(&client, &health, shutdown).await }
    });
    // A cluster with only the ActivationCode CRD (a chart that had no
    // other): every look in a whole interval, and one more.
    let looks = REPEAT.as_secs() / POLL.as_secs() + 1;
    for _ in 0..looks {
        discovery(&mut api, &[("v1alpha1", &["activationcodes"])]).await;
    }
    // The check takes in the last answer before it sleeps again.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let waiting = health.not_ready_reason();
    assert!(waiting.contains(MISSING_CONNECTIONS), "{waiting}");
    assert!(waiting.contains(MISSING_CLUSTER_CONNECTIONS), "{waiting}");
    assert!(!waiting.contains("activationcodes."), "{waiting}");
    let said = logs.text();
    assert_eq!(
        said.matches(MISSING_CONNECTIONS).count(),
        2,
        "said at once and again after {REPEAT:?}, not at every look:\n{said}"
    );
    // They are applied: the check ends, and /readyz waits for the caches.
    discovery(
        &mut api,
        &[(
            "v1alpha1",
            &[
                "activationcodes",
                "metastudioconnections",
                "clustermetastudioconnections",
            ],
        )],
    )
    .await;
    assert!(
        api.finish(check).await,
        "the check ends once all are served"
    );
    assert_eq!(health.not_ready_reason(), "caches not synced");
    assert!(
        logs.text()
            .contains("every CRD the operator watches is installed")
    );
}

#[tokio::test(start_paused = true)]
async fn a_crd_served_at_another_version_is_named_with_the_versions_it_serves() {
    let (client, mut api) = mock_client();
    let health = Arc::new(Health::default());
    let (stop, shutdown) = watch::channel(false);
    let check = tokio::spawn({
        let health = health.clone();
        async move { crd_check::wait_until_served(&client, &health, shutdown).await }
    });
    discovery(
        &mut api,
        &[
            (
                "v1alpha1",
                &["metastudioconnections", "clustermetastudioconnections"],
            ),
            ("v1beta1", &["activationcodes"]),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    let waiting = health.not_ready_reason();
    assert_eq!(
        waiting,
        "CRD activationcodes.metastudio.huaweicloud.com does not serve v1alpha1, the version this operator reads (it serves v1beta1): install the CRDs of this operator's release: kubectl apply --server-side -f crds/ (or helm upgrade with --set crds.enabled=true)"
    );
    // A shutdown while waiting ends the check without starting anything.
    stop.send(true).unwrap();
    assert!(!api.finish(check).await);
}

#[tokio::test(start_paused = true)]
async fn without_the_group_every_crd_is_missing() {
    let (client, mut api) = mock_client();
    let found = tokio::spawn(async move { crd_check::problems(&client).await });
    api.expect(
        "GET",
        "/apis",
        200,
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
    )
    .await;
    let found = api.finish(found).await.unwrap();
    let names: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.ends_with("is not installed: kubectl apply --server-side -f crds/ (or helm upgrade with --set crds.enabled=true)")),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_starts_no_controller_until_the_connection_crds_are_installed() {
    let sim =
        common::simulator_accepting(robot_seed(2, 3), FaultConfig::default(), &[RUN_TOKEN]).await;
    let cluster = FakeCluster::new(
        vec![activation_code(
            "retail",
            "lobby",
            json!({"robotId": ROBOT, "validPeriod": 9}),
        )],
        vec![],
    )
    .without_crds(&["metastudioconnections", "clustermetastudioconnections"]);
    let operator = Operator::start(&sim, cluster.client("operator"), &[]).await;
    eventually("/readyz to name the missing CRDs", async || {
        let (status, body) = get(&operator.url("/readyz")).await;
        status == 503
            && body.contains(MISSING_CONNECTIONS)
            && body.contains(MISSING_CLUSTER_CONNECTIONS)
    })
    .await;
    assert_eq!(
        get(&operator.url("/healthz")).await.0,
        200,
        "alive meanwhile"
    );
    let watched = |cluster: &FakeCluster| {
        cluster
            .calls_of("operator")
            .iter()
            .filter(|c| c.target().is_some())
            .count()
    };
    assert_eq!(
        watched(&cluster),
        0,
        "no list or watch before the CRDs are installed"
    );
    cluster.install_crds();
    eventually("/readyz once the CRDs are installed", async || {
        get(&operator.url("/readyz")).await.0 == 200
    })
    .await;
    eventually("lobby reconciled", async || {
        cluster
            .resource("retail", "lobby")
            .is_some_and(|r| r["status"]["observedGeneration"] == 1)
    })
    .await;
    operator.stop().await.expect("run ends cleanly");
}
