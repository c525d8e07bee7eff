//! `run --watch-namespaces` and `--label-selector` against an in-memory API
//! server: only the watched namespaces are listed and watched (namespaced
//! paths, nothing cluster-wide), only matching resources are asked for, and
//! only those are reconciled.

mod common;

use common::fake_api::{FakeCluster, Operator, RUN_TOKEN, activation_code, eventually};
use common::{ROBOT, seed_yaml};
use metastudio_operator::simulator::{FaultConfig, Simulator};
use serde_json::{Value, json};

const MUSEUM_ROBOT: &str = "6f76e2d1c0ffee6249aa00bb11cc2265";

fn labelled(namespace: &str, name: &str, shard: &str, robot: &str) -> Value {
    let mut resource =
        activation_code(namespace, name, json!({"robotId": robot, "validPeriod": 5}));
    resource["metadata"]["labels"] = json!({"shard": shard});
    resource
}

/// A simulator with one code on each of two robots, accepting [`RUN_TOKEN`].
async fn two_robots() -> Simulator {
    let seed = seed_yaml(&format!(
        "spec: {{robots: [{{robotId: {ROBOT}, generate: {{count: 1, validPeriod: 5}}}}, {{robotId: {MUSEUM_ROBOT}, generate: {{count: 1, validPeriod: 5}}}}]}}"
    ));
    common::simulator_accepting(seed, FaultConfig::default(), &[RUN_TOKEN]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_watched_namespaces_and_matching_labels_are_reconciled() {
    let sim = two_robots().await;
    let cluster = FakeCluster::new(
        vec![
            labelled("team-a", "lobby", "a", ROBOT),
            labelled("team-a", "other-shard", "b", ROBOT),
            labelled("team-b", "museum", "a", MUSEUM_ROBOT),
            labelled("retail", "unwatched", "a", ROBOT),
        ],
        vec![],
    );
    let operator = Operator::start(
        &sim,
        cluster.client("operator"),
        &[
            "--watch-namespaces",
            "team-a,team-b",
            "--label-selector",
            "shard=a",
        ],
    )
    .await;
    let has_status = |ns: &str, name: &str| {
        cluster
            .resource(ns, name)
            .is_some_and(|r| r.get("status").is_some())
    };
    eventually("both matching resources reconciled", async || {
        has_status("team-a", "lobby") && has_status("team-b", "museum")
    })
    .await;
    operator.stop().await.expect("run ends cleanly");
    assert!(
        !has_status("team-a", "other-shard"),
        "another shard's resource"
    );
    assert!(!has_status("retail", "unwatched"), "an unwatched namespace");

    let calls = cluster.calls_of("operator");
    let lists = |resource: &str| -> Vec<(String, String)> {
        calls
            .iter()
            .filter(|c| c.method == "GET")
            .filter(|c| {
                c.target()
                    .is_some_and(|t| t.resource == resource && t.name.is_none())
            })
            .map(|c| {
                (
                    c.target()
                        .unwrap()
                        .namespace
                        .unwrap_or_else(|| "<all>".into()),
                    c.query.clone(),
                )
            })
            .collect()
    };
    for (namespace, query) in lists("activationcodes") {
        assert!(
            namespace == "team-a" || namespace == "team-b",
            "ActivationCodes listed or watched outside the watched namespaces: {namespace}"
        );
        assert!(
            query.contains("labelSelector=shard%3Da"),
            "without the label selector: {query}"
        );
    }
    for (namespace, _) in lists("secrets") {
        assert!(
            namespace == "team-a" || namespace == "team-b",
            "Secrets listed or watched outside the watched namespaces: {namespace}"
        );
    }
    for ns in ["team-a", "team-b"] {
        assert!(
            lists("activationcodes")
                .iter()
                .any(|(n, q)| n == ns && !q.contains("watch=true")),
            "no list of {ns}"
        );
        assert!(
            lists("secrets").iter().any(|(n, _)| n == ns),
            "no Secret watch in {ns}"
        );
    }
    let written: Vec<String> = calls
        .iter()
        .filter(|c| c.method == "PATCH" && c.path.ends_with("/status"))
        .map(|c| c.path.clone())
        .collect();
    assert!(
        written
            .iter()
            .all(|p| p.contains("/namespaces/team-a/activationcodes/lobby/")
                || p.contains("/namespaces/team-b/activationcodes/museum/")),
        "{written:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_one_limit_for_every_watched_namespace() {
    let sim = two_robots().await;
    let cluster = FakeCluster::new(
        vec![
            labelled("team-a", "lobby", "a", ROBOT),
            labelled("team-b", "museum", "a", MUSEUM_ROBOT),
        ],
        vec![],
    );
    // Status writes hang, so a reconcile that started stays in flight.
    cluster.hold_status(true);
    let operator = Operator::start(
        &sim,
        cluster.client("operator"),
        &["--watch-namespaces", "team-a,team-b", "--concurrency", "1"],
    )
    .await;
    let status_writes = || {
        cluster
            .calls_of("operator")
            .iter()
            .filter(|c| c.method == "PATCH" && c.path.ends_with("/status"))
            .count()
    };
    eventually("one reconcile in flight", async || status_writes() == 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        sim.counters()
            .calls_of(metastudio_operator::metastudio::Operation::ListActiveCode),
        1,
        "with --concurrency 1 the other namespace's resource waits"
    );
    cluster.hold_status(false);
    eventually("both reconciled", async || status_writes() == 2).await;
    operator.stop().await.expect("run ends cleanly");
}
