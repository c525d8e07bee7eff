//! spec.deletionPolicy against an in-memory API server and the simulator:
//! Delete holds a finalizer while the resource lives, deletes exactly the
//! codes the resource created when it is deleted (a code someone else made
//! in the room stays), then lets go; a resource whose codes cannot be
//! deleted says so (DeletionBlocked, no call) and lets go, codes kept, once
//! its owner annotates it; Orphan (the default) never holds the finalizer.
//! `reconcile -f` has no deletion: a manifest that says otherwise deletes
//! nothing.

mod common;

use common::fake_api::{FakeCluster, Operator, RUN_TOKEN, activation_code, eventually, secret};
use common::{ROBOT, seed_yaml};
use metastudio_operator::crd::ActivationCode;
use metastudio_operator::crd::deletion::{FINALIZER, ORPHAN_ANNOTATION};
use metastudio_operator::engine::Mode;
use metastudio_operator::engine::conditions::reason;
use metastudio_operator::metastudio::Operation;
use metastudio_operator::offline::host::OfflineHost;
use metastudio_operator::simulator::{
    DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig, Simulator,
};
use serde_json::{Value, json};

const ROOM: &str = "lobby";
const NS: &str = "retail";

/// A robot with one code in the room that someone else created.
async fn simulator() -> Simulator {
    let seed = seed_yaml(&format!(
        "spec: {{robots: [{{robotId: {ROBOT}, codes: [{{activeCodeId: theirs, roomId: {ROOM}, validPeriod: 7}}]}}]}}"
    ));
    common::simulator_accepting(seed, FaultConfig::default(), &[RUN_TOKEN]).await
}

fn room(sim: &Simulator) -> Vec<String> {
    sim.with_store(|s| s.all_codes())
        .into_iter()
        .filter(|c| c.room_id.as_deref() == Some(ROOM))
        .map(|c| c.active_code_id)
        .collect()
}

fn holds_finalizer(cluster: &FakeCluster, name: &str) -> bool {
    cluster.resource(NS, name).is_some_and(|r| {
        r["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
    })
}

fn ready(cluster: &FakeCluster, name: &str) -> Option<Value> {
    cluster.resource(NS, name).and_then(|r| {
        r["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready")
            .cloned()
    })
}

/// The notes of the Events of `reason` the operator created.
fn events(cluster: &FakeCluster, reason: &str) -> Vec<String> {
    cluster
        .calls_of("operator")
        .into_iter()
        .filter(|c| c.method == "POST" && c.path.contains("/events"))
        .filter(|c| c.body["reason"] == reason)
        .map(|c| c.body["note"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_exactly_the_created_codes_then_the_finalizer_goes() {
    let sim = simulator().await;
    let cluster = FakeCluster::new(
        vec![
            activation_code(
                NS,
                "kiosks",
                json!({"robotId": ROBOT, "validPeriod": 7, "roomId": ROOM, "count": 3,
                       "deletionPolicy": "Delete"}),
            ),
            activation_code(
                NS,
                "plain",
                json!({"robotId": "another-robot", "validPeriod": 7}),
            ),
        ],
        vec![],
    );
    let operator = Operator::start(&sim, cluster.client("operator"), &[]).await;
    eventually("3 codes in the room, the finalizer held", async || {
        room(&sim).len() == 3 && holds_finalizer(&cluster, "kiosks")
    })
    .await;
    let created: Vec<String> = room(&sim).into_iter().filter(|c| c != "theirs").collect();
    assert_eq!(created.len(), 2, "two created beside theirs");
    eventually("plain synced", async || ready(&cluster, "plain").is_some()).await;
    assert!(
        !holds_finalizer(&cluster, "plain"),
        "Orphan (the default) holds no finalizer"
    );

    cluster.mark_deleted(NS, "kiosks");
    eventually("the resource gone", async || {
        cluster.resource(NS, "kiosks").is_none()
    })
    .await;
    assert_eq!(room(&sim), ["theirs"], "only the created codes deleted");
    let counters = sim.counters();
    assert_eq!(counters.deletes.len(), 2);
    assert!(
        counters.deletes.values().all(|&n| n == 1),
        "each deleted once"
    );
    let deleted = events(&cluster, "CodeDeleted");
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert!(
        deleted[0]
            .starts_with("deleted 2 code(s) this resource created (spec.deletionPolicy: Delete): "),
        "{deleted:?}"
    );
    assert_eq!(events(&cluster, "CodesDeleted").len(), 1);
    operator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_deletion_says_why_and_lets_go_with_the_codes_kept_once_annotated() {
    let sim = simulator().await;
    let cluster = FakeCluster::new(
        vec![activation_code(
            NS,
            "kiosks",
            json!({"robotId": ROBOT, "validPeriod": 7, "roomId": ROOM, "count": 2,
                   "deletionPolicy": "Delete",
                   "connection": {"credentialsSecretRef": {"name": "gone"}}}),
        )],
        vec![secret(
            NS,
            "gone",
            &[
                ("accessKey", DEFAULT_ACCESS_KEY),
                ("secretKey", DEFAULT_SECRET_KEY),
            ],
        )],
    );
    let operator = Operator::start(&sim, cluster.client("operator"), &[]).await;
    eventually("the finalizer held, two codes created", async || {
        holds_finalizer(&cluster, "kiosks")
            && room(&sim).len() == 2
            && ready(&cluster, "kiosks").is_some_and(|r| r["status"] == "True")
    })
    .await;
    // The credentials go first (a namespace being deleted, say).
    cluster.delete_secret(NS, "gone");
    let calls = sim.counters().total_calls();

    cluster.mark_deleted(NS, "kiosks");
    eventually("DeletionBlocked", async || {
        ready(&cluster, "kiosks").is_some_and(|r| r["reason"] == "DeletionBlocked")
    })
    .await;
    let message = ready(&cluster, "kiosks").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    for part in [
        "spec.deletionPolicy is Delete",
        "CredentialsNotFound",
        "gone",
        &format!("kubectl annotate activationcode kiosks -n {NS} {ORPHAN_ANNOTATION}=true"),
    ] {
        assert!(message.contains(part), "{part:?} not in {message}");
    }
    assert!(holds_finalizer(&cluster, "kiosks"), "kept while blocked");
    assert_eq!(sim.counters().total_calls(), calls, "no remote call");

    cluster.annotate(NS, "kiosks", ORPHAN_ANNOTATION, "true");
    eventually("the resource gone", async || {
        cluster.resource(NS, "kiosks").is_none()
    })
    .await;
    let kept_codes = room(&sim);
    assert_eq!(kept_codes.len(), 2, "nothing deleted: {kept_codes:?}");
    assert!(kept_codes.contains(&"theirs".to_owned()), "{kept_codes:?}");
    assert_eq!(sim.counters().calls_of(Operation::DeleteActiveCode), 0);
    let kept = events(&cluster, "CodesOrphaned");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].contains(ORPHAN_ANNOTATION), "{kept:?}");
    operator.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_f_deletes_nothing_whatever_a_manifest_says() {
    let sim = simulator().await;
    let engine = common::fenced::engine(&sim);
    let host = OfflineHost::new(Default::default(), None, None).unwrap();
    // A cluster's object as `kubectl get -o yaml` shows it mid-deletion.
    let manifest: ActivationCode = serde_json::from_value(json!({
        "apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "ActivationCode",
        "metadata": {"name": "kiosks", "namespace": NS, "generation": 2,
                     "deletionTimestamp": "2026-12-01T00:00:00Z", "finalizers": [FINALIZER]},
        "spec": {"robotId": ROBOT, "validPeriod": 7, "roomId": ROOM, "count": 1,
                 "deletionPolicy": "Delete"},
        "status": {"createdCodes": ["theirs"]},
    }))
    .unwrap();
    let report = engine
        .reconcile(&manifest, &host, Mode::Normal, jiff::Timestamp::now())
        .await;
    assert_eq!(
        report.reason,
        reason::DELETING,
        "left alone, as any deletion"
    );
    assert_eq!(sim.counters().total_calls(), 0, "no call");
    assert_eq!(room(&sim), ["theirs"]);
}

/// The finalizer patches of `name` the operator sent.
fn finalizer_patches(cluster: &FakeCluster, name: &str) -> usize {
    cluster
        .calls_of("operator")
        .iter()
        .filter(|c| c.method == "PATCH")
        .filter(|c| {
            c.target()
                .is_some_and(|t| t.name.as_deref() == Some(name) && t.subresource.is_none())
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_code_is_created_before_the_finalizer_is_held() {
    let sim = simulator().await;
    let cluster = FakeCluster::new(
        vec![activation_code(
            NS,
            "kiosks",
            json!({"robotId": ROBOT, "validPeriod": 7, "roomId": ROOM, "count": 3,
                   "deletionPolicy": "Delete"}),
        )],
        vec![],
    );
    cluster.refuse_finalizers(true);
    let operator = Operator::start(&sim, cluster.client("operator"), &[]).await;
    // The second try comes after the first reconcile's backoff: that
    // reconcile has long ended.
    eventually("the finalizer tried twice", async || {
        finalizer_patches(&cluster, "kiosks") >= 2
    })
    .await;
    assert_eq!(
        sim.counters().calls_of(Operation::CreateActiveCode),
        0,
        "nothing created while the finalizer cannot be held"
    );
    eventually("a Warning Event naming the missing verb", async || {
        events(&cluster, "FinalizerForbidden")
            .iter()
            .any(|note| note.contains("patch on activationcodes"))
    })
    .await;
    cluster.refuse_finalizers(false);
    eventually("3 codes in the room, the finalizer held", async || {
        room(&sim).len() == 3 && holds_finalizer(&cluster, "kiosks")
    })
    .await;
    operator.stop().await.unwrap();
}
