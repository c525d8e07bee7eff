//! Consumers follow rotations (`spec.exportSecretRef.restartTargets`), in
//! the controller against kube's mocked API service, each request scripted:
//! a rotation patches each workload once, with the keyed hash of the new
//! values as its pod template annotation; a sync without change (and one by
//! a restarted operator) reads the workloads and patches none; a missing
//! workload or one RBAC forbids is a Warning Event naming it and the fix
//! while the codes sync; a target of another kind is refused by
//! validation. `reconcile -f` says that restart targets apply only in a
//! cluster.

mod common;

use common::controller::*;
use common::kube_mock::{ApiServer, mock_client, not_found, secret};
use common::offline::{path_str, run_reconcile as run_reconcile_f, runtime, text};
use common::{ROBOT, robot_seed, simulator};
use k8s_openapi::ByteString;
use kube::runtime::controller::Action;
use metastudio_operator::controller::Context;
use metastudio_operator::controller::restarts::{HASH_ANNOTATION, export_hash};
use metastudio_operator::crd::ActivationCode;
use metastudio_operator::simulator::{FaultConfig, Simulator};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

const EXPORT: &str = "lobby-codes";
const SECRET_UID: &str = "5f0c9a3e-7b1d-4c2a-9e8f-1a2b3c4d5e6f";

/// `lobby`, valid 3 days as the seed's codes are, exporting to
/// [`EXPORT`] with a Deployment and a StatefulSet to roll out; `extra` is
/// merged into its spec.
fn lobby(extra: Value) -> ActivationCode {
    let mut spec = with_creds(json!({"robotId": ROBOT, "validPeriod": 3,
        "exportSecretRef": {"name": EXPORT, "restartTargets": [
            {"kind": "Deployment", "name": "web"}, {"kind": "StatefulSet", "name": "db"}]}}));
    for (key, value) in extra.as_object().unwrap() {
        spec[key] = value.clone();
    }
    resource("lobby", spec)
}

/// The simulator's codes as the export Secret's data: id -> value.
fn current_data(sim: &Simulator) -> BTreeMap<String, ByteString> {
    sim.with_store(|s| s.all_codes())
        .into_iter()
        .map(|c| {
            let value = c.active_code.expose().as_bytes().to_vec();
            (c.active_code_id, ByteString(value))
        })
        .collect()
}

/// The export Secret as the API server holds it: `data`, owned by lobby.
fn stored_export(data: &BTreeMap<String, ByteString>) -> Value {
    let pairs: Vec<(&str, &str)> = data
        .iter()
        .map(|(k, v)| (k.as_str(), std::str::from_utf8(&v.0).unwrap()))
        .collect();
    let mut stored = secret(NS, EXPORT, &pairs);
    stored["metadata"]["uid"] = json!(SECRET_UID);
    stored["metadata"]["ownerReferences"] = json!([{"apiVersion": "metastudio.huaweicloud.com/v1alpha1",
        "kind": "ActivationCode", "name": "lobby", "uid": "uid-lobby", "controller": true}]);
    stored
}

fn workload_path(plural: &str, name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{NS}/{plural}/{name}")
}

/// A workload as the API server returns it, its pod template annotated
/// with `hash` if given.
fn workload(kind: &str, name: &str, hash: Option<&str>) -> Value {
    let annotations = hash.map_or(json!({}), |h| json!({HASH_ANNOTATION: h}));
    json!({"apiVersion": "apps/v1", "kind": kind,
        "metadata": {"name": name, "namespace": NS, "generation": 4},
        "spec": {"template": {"metadata": {"annotations": annotations},
                              "spec": {"containers": [{"name": "app", "image": "kiosk:1"}]}}}})
}

/// Answers the read of Deployment web and StatefulSet db, each carrying
/// `hash`.
async fn expect_reads(api: &mut ApiServer, hash: Option<&str>) {
    for (plural, kind, name) in [
        ("deployments", "Deployment", "web"),
        ("statefulsets", "StatefulSet", "db"),
    ] {
        api.expect(
            "GET",
            &workload_path(plural, name),
            200,
            workload(kind, name, hash),
        )
        .await;
    }
}

/// Answers a merge patch of a workload and checks it sets the annotation
/// to `hash` and nothing else.
async fn expect_patch(api: &mut ApiServer, plural: &str, kind: &str, name: &str, hash: &str) {
    let patched = api
        .expect(
            "PATCH",
            &workload_path(plural, name),
            200,
            workload(kind, name, Some(hash)),
        )
        .await;
    assert_eq!(
        patched.body,
        json!({"spec": {"template": {"metadata": {"annotations": {HASH_ANNOTATION: hash}}}}}),
        "a merge patch of the one annotation"
    );
    assert!(
        patched.query.contains("fieldManager=metastudio-operator"),
        "{}",
        patched.query
    );
}

/// One reconcile of lobby where nothing changed: the export Secret holds
/// the values and both workloads carry their hash, so they are only read.
/// Returns the status written.
async fn unchanged_round(
    api: &mut ApiServer,
    sim: &Simulator,
    ctx: &Arc<Context>,
    r: &ActivationCode,
) -> Value {
    let data = current_data(sim);
    let hash = export_hash(SECRET_UID, &data);
    let task = run_reconcile(r, ctx).await;
    expect_creds(api).await;
    let path = format!("/api/v1/namespaces/{NS}/secrets/{EXPORT}");
    api.expect("GET", &path, 200, stored_export(&data)).await;
    expect_reads(api, Some(&hash)).await;
    let status = expect_status(api, r).await;
    api.finish(task).await;
    status
}

#[tokio::test]
async fn a_sync_without_change_and_a_restarted_operator_patch_nothing() {
    let sim = simulator(robot_seed(2, 3), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let r = lobby(json!({}));
    let ctx = context(client, &sim, &[&r]);
    let status = unchanged_round(&mut api, &sim, &ctx, &r).await;
    assert_eq!(condition(&status, "Ready")["reason"], "Synced");
    unchanged_round(&mut api, &sim, &ctx, &r).await;
    // A new process (a restart, the next leader): the state is in the
    // workloads, so it too only reads them.
    let (client, mut api) = mock_client();
    let restarted = context(client, &sim, &[&r]);
    unchanged_round(&mut api, &sim, &restarted, &r).await;
    assert_eq!(sim.counters().total_resets(), 0);
}

#[tokio::test]
async fn a_rotation_rolls_out_each_target_once_with_the_hash_of_the_new_values() {
    let sim = simulator(robot_seed(2, 3), FaultConfig::default()).await;
    let before = current_data(&sim);
    let old_hash = export_hash(SECRET_UID, &before);
    let (client, mut api) = mock_client();
    let r = lobby(json!({"reset": {"token": "t1"}}));
    let ctx = context(client, &sim, &[&r]);

    let task = run_reconcile(&r, &ctx).await;
    expect_creds(&mut api).await;
    let intents = expect_status(&mut api, &r).await;
    assert_eq!(intents["pendingResets"].as_array().unwrap().len(), 2);
    let reset = api.expect_event(NS, "CodeReset").await;
    let path = format!("/api/v1/namespaces/{NS}/secrets/{EXPORT}");
    api.expect("GET", &path, 200, stored_export(&before)).await;
    let after = current_data(&sim);
    assert_ne!(after, before, "the reset minted new values");
    let written = api.expect("PATCH", &path, 200, stored_export(&after)).await;
    assert_eq!(written.body["data"], stored_export(&after)["data"]);
    let new_hash = export_hash(SECRET_UID, &after);
    assert_ne!(new_hash, old_hash);
    // Each workload read, found on the old hash, patched to the new one.
    api.expect(
        "GET",
        &workload_path("deployments", "web"),
        200,
        workload("Deployment", "web", Some(&old_hash)),
    )
    .await;
    expect_patch(&mut api, "deployments", "Deployment", "web", &new_hash).await;
    api.expect(
        "GET",
        &workload_path("statefulsets", "db"),
        200,
        workload("StatefulSet", "db", None),
    )
    .await;
    expect_patch(&mut api, "statefulsets", "StatefulSet", "db", &new_hash).await;
    let restarted = api.expect_event(NS, "WorkloadsRestarted").await;
    let note = note_of(&restarted).to_owned();
    assert_eq!(
        note,
        format!(
            "rolling out 2 workload(s) to the values of Secret {EXPORT} (pod template annotation {HASH_ANNOTATION}): Deployment/web, StatefulSet/db"
        )
    );
    assert_eq!(restarted.body["type"], "Normal");
    let status = expect_status(&mut api, &r).await;
    api.finish(task).await;
    assert_eq!(condition(&status, "Ready")["reason"], "Synced");
    assert_no_secret(
        &sim,
        &format!("{intents} {} {note} {status} {new_hash}", reset.raw),
    );

    // The next sync finds both on the new hash: reads only, no Event.
    unchanged_round(&mut api, &sim, &ctx, &r).await;
    assert_eq!(sim.counters().total_resets(), 2, "each code reset once");
}

/// The first sync of lobby (the export Secret is new, the values as
/// seeded) up to its writes of the Secret; returns the hash of its data.
async fn expect_first_export(api: &mut ApiServer, sim: &Simulator) -> String {
    expect_creds(api).await;
    let path = format!("/api/v1/namespaces/{NS}/secrets/{EXPORT}");
    api.expect("GET", &path, 404, not_found("secrets", EXPORT))
        .await;
    let data = current_data(sim);
    api.expect("PATCH", &path, 201, stored_export(&data)).await;
    export_hash(SECRET_UID, &data)
}

#[tokio::test]
async fn a_missing_target_is_a_warning_naming_it_and_the_codes_still_sync() {
    let sim = simulator(robot_seed(2, 3), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let r = lobby(json!({}));
    let ctx = context(client, &sim, &[&r]);
    let task = run_reconcile(&r, &ctx).await;
    let hash = expect_first_export(&mut api, &sim).await;
    api.expect(
        "GET",
        &workload_path("deployments", "web"),
        404,
        not_found("deployments.apps", "web"),
    )
    .await;
    // The other target is followed all the same.
    api.expect(
        "GET",
        &workload_path("statefulsets", "db"),
        200,
        workload("StatefulSet", "db", None),
    )
    .await;
    expect_patch(&mut api, "statefulsets", "StatefulSet", "db", &hash).await;
    let restarted = api.expect_event(NS, "WorkloadsRestarted").await;
    assert!(note_of(&restarted).ends_with(": StatefulSet/db"));
    let warning = api.expect_event(NS, "RestartTargetFailed").await;
    assert_eq!(warning.body["type"], "Warning");
    assert_eq!(
        note_of(&warning),
        format!(
            "1 restart target(s) cannot follow Secret {EXPORT} (the codes are synced all the same): Deployment/web does not exist in namespace {NS}: create it, or remove it from spec.exportSecretRef.restartTargets"
        )
    );
    let status = expect_status(&mut api, &r).await;
    let after = requeue_secs(&api.finish(task).await).expect("a drift check is scheduled");
    assert!(
        (600.0..=660.0).contains(&after),
        "syncInterval, not backoff: {after}"
    );
    let ready = condition(&status, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("True"), Some("Synced"))
    );
    assert_eq!(status["managedCodes"], 2);
}

#[tokio::test]
async fn a_target_rbac_forbids_is_a_warning_naming_the_chart_value() {
    let sim = simulator(robot_seed(2, 3), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let r = lobby(json!({}));
    let ctx = context(client, &sim, &[&r]);
    let task = run_reconcile(&r, &ctx).await;
    expect_first_export(&mut api, &sim).await;
    let forbidden = |plural: &str, name: &str| {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
            "message": format!("{plural}.apps \"{name}\" is forbidden: User \"system:serviceaccount:metastudio-system:metastudio-operator\" cannot get resource \"{plural}\" in API group \"apps\" in the namespace \"{NS}\"")})
    };
    for (plural, name) in [("deployments", "web"), ("statefulsets", "db")] {
        api.expect(
            "GET",
            &workload_path(plural, name),
            403,
            forbidden(plural, name),
        )
        .await;
    }
    let warning = api.expect_event(NS, "RestartTargetFailed").await;
    let note = note_of(&warning);
    for expected in [
        "2 restart target(s) cannot follow Secret lobby-codes",
        "the operator may not get deployments (apps) in namespace retail, so Deployment/web cannot follow the Secret: install the Helm chart with restartTargets.enabled=true",
        "; the operator may not get statefulsets (apps) in namespace retail, so StatefulSet/db cannot",
    ] {
        assert!(note.contains(expected), "{expected:?} in {note}");
    }
    let status = expect_status(&mut api, &r).await;
    api.finish(task).await;
    assert_eq!(condition(&status, "Ready")["reason"], "Synced");
}

#[tokio::test]
async fn a_target_of_another_kind_is_invalid_spec_without_any_call() {
    let sim = simulator(robot_seed(1, 3), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let r = lobby(json!({"exportSecretRef": {"name": EXPORT,
        "restartTargets": [{"kind": "CronJob", "name": "nightly"}]}}));
    let ctx = context(client, &sim, &[&r]);
    let task = run_reconcile(&r, &ctx).await;
    let event = api.expect_event(NS, "InvalidSpec").await;
    assert!(
        note_of(&event).contains(
            "spec.exportSecretRef.restartTargets[0].kind: `CronJob` is not a kind that rolls out: use Deployment, StatefulSet or DaemonSet"
        ),
        "{}",
        event.raw
    );
    expect_status(&mut api, &r).await;
    assert_eq!(api.finish(task).await, Action::await_change());
    assert_eq!(sim.counters().total_calls(), 0);
}

/// `reconcile -f` has no cluster: it reconciles and exports, touches no
/// workload, and its report says so.
#[test]
fn reconcile_f_says_restart_targets_apply_only_in_a_cluster() {
    let rt = runtime();
    let sim = rt.block_on(simulator(robot_seed(2, 3), FaultConfig::default()));
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        "apiVersion: metastudio.huaweicloud.com/v1alpha1\nkind: ActivationCode\nmetadata: {{name: lobby, namespace: retail}}\nspec:\n  robotId: {ROBOT}\n  validPeriod: 3\n  exportSecretRef:\n    name: {EXPORT}\n    restartTargets: [{{kind: Deployment, name: web}}]\n"
    );
    std::fs::write(dir.path().join("lobby.yaml"), manifest).unwrap();
    let status = path_str(&dir.path().join("status.json"));
    let out = run_reconcile_f(
        &sim,
        &["-f", &path_str(dir.path()), "--status-file", &status],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(
            "note: exportSecretRef.restartTargets roll out workloads only in a cluster: no workload was touched"
        ),
        "{}",
        text(&out)
    );
}
