//! `run --leader-election`, two replicas against one in-memory API server:
//! only the leader touches anything but the Lease, `metastudio_leader` and
//! readiness tell which is which, a shutdown hands over at once, and a
//! shutdown with a reconcile stuck in flight is bounded by
//! `--shutdown-timeout`.

mod common;

use common::fake_api::{FakeCluster, Operator, RUN_TOKEN, activation_code, eventually, get};
use common::{ROBOT, robot_seed};
use metastudio_operator::simulator::{FaultConfig, Simulator};
use serde_json::json;

async fn simulator() -> Simulator {
    common::simulator_accepting(robot_seed(3, 3), FaultConfig::default(), &[RUN_TOKEN]).await
}

fn cluster() -> FakeCluster {
    FakeCluster::new(
        vec![activation_code(
            "retail",
            "lobby",
            json!({"robotId": ROBOT, "validPeriod": 9}),
        )],
        vec![],
    )
}

fn replica_flags(identity: &'static str) -> [&'static str; 9] {
    [
        "--leader-election",
        "--identity",
        identity,
        "--lease-namespace",
        "metastudio-system",
        "--lease-duration",
        "3s",
        "--shutdown-timeout",
        "1s",
    ]
}

fn holder(cluster: &FakeCluster) -> Option<String> {
    cluster
        .leases
        .spec("metastudio-operator")
        .and_then(|s| s["holderIdentity"].as_str().map(str::to_owned))
}

/// The requests of `who` on anything but Leases.
fn non_lease_calls(cluster: &FakeCluster, who: &str) -> Vec<String> {
    cluster
        .calls_of(who)
        .into_iter()
        // API discovery at start (are the CRDs installed?) reads no resource.
        .filter(|c| c.target().is_some_and(|t| t.resource != "leases"))
        .map(|c| format!("{} {}", c.method, c.path))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_standby_takes_over_on_shutdown() {
    let sim = simulator().await;
    let cluster = cluster();
    let a = Operator::start(&sim, cluster.client("a"), &replica_flags("a")).await;
    eventually("a leads and is ready", async || {
        a.metrics().await.contains("metastudio_leader 1\n") && get(&a.url("/readyz")).await.0 == 200
    })
    .await;
    let b = Operator::start(&sim, cluster.client("b"), &replica_flags("b")).await;
    eventually("a reconciled lobby", async || {
        a.metrics()
            .await
            .contains(r#"metastudio_reconciles_total{reason="Synced"} 1"#)
    })
    .await;
    eventually("b stands by, ready", async || {
        get(&b.url("/readyz")).await.0 == 200 && b.metrics().await.contains("metastudio_leader 0\n")
    })
    .await;
    assert_eq!(holder(&cluster).as_deref(), Some("a"));
    let standby = b.metrics().await;
    for series in [
        "metastudio_codes_managed 0\n",
        "metastudio_resources{ready=\"True\"} 0\n",
    ] {
        assert!(
            standby.contains(series),
            "a standby reports nothing it does not manage: missing {series} in\n{standby}"
        );
    }
    assert!(
        non_lease_calls(&cluster, "b").is_empty(),
        "the standby touched more than its Lease: {:?}",
        non_lease_calls(&cluster, "b")
    );
    let leader_calls = non_lease_calls(&cluster, "a");
    assert!(
        leader_calls
            .iter()
            .any(|c| c == "GET /apis/metastudio.huaweicloud.com/v1alpha1/activationcodes")
            && leader_calls.iter().any(|c| c.ends_with("/lobby/status")),
        "{leader_calls:?}"
    );
    assert_eq!(sim.counters().total_updates(), 3);

    // SIGTERM to the leader: it drains and releases the lease; b takes over
    // at its next look at the Lease.
    a.stop().await.expect("a stops cleanly");
    assert_ne!(
        holder(&cluster).as_deref(),
        Some("a"),
        "a released the lease"
    );
    eventually("b leads and reconciles", async || {
        let body = b.metrics().await;
        body.contains("metastudio_leader 1\n")
            && body.contains(r#"metastudio_reconciles_total{reason="Synced"} 1"#)
    })
    .await;
    assert_eq!(holder(&cluster).as_deref(), Some("b"));
    assert_eq!(
        sim.counters().total_updates(),
        3,
        "the new leader found everything in sync"
    );
    b.stop().await.expect("b stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_abandons_a_stuck_reconcile_after_the_timeout_and_releases_the_lease() {
    let sim = simulator().await;
    let cluster = cluster();
    cluster.hold_status(true); // every status write hangs: a reconcile stays in flight
    let a = Operator::start(&sim, cluster.client("a"), &replica_flags("a")).await;
    eventually("a reconcile is stuck writing status", async || {
        cluster
            .calls_of("a")
            .iter()
            .any(|c| c.method == "PATCH" && c.path.ends_with("/lobby/status"))
    })
    .await;
    // Without the bound, stop() would wait forever (it fails after 30 s).
    a.stop()
        .await
        .expect("run ends cleanly after abandoning the reconcile");
    assert_eq!(holder(&cluster), None, "the lease was released");
}
