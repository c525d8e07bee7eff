//! spec.robotId is immutable on every server. API servers from Kubernetes
//! 1.25 refuse a change by the CRD's CEL rule; on older ones (1.20 here)
//! the change is stored, and the operator refuses it: the status records
//! the robot it belongs to (status.robotId), and a spec naming another one
//! stops the resource (Ready=False, Stalled, InvalidSpec naming both
//! robots and the fix) with no MetaStudio call and the reset ledger kept,
//! until the robot is put back. `reconcile -f` refuses the change as such
//! a server would (the CEL rule, against the robot the status file
//! records), naming the file, the resource, the field and the rule's
//! message. A resource stopped so is no rival of the other robot's own.

mod common;

use common::offline::{fleet_seed, path_str, run_reconcile, status_file, text};
use common::{fast_options, simulator};
use metastudio_operator::crd::ActivationCode;
use metastudio_operator::engine::conditions::reason;
use metastudio_operator::engine::{Engine, Mode, OperatorDefaults};
use metastudio_operator::metastudio::settings::ConnectionSettings;
use metastudio_operator::metastudio::{Credentials, Transport};
use metastudio_operator::offline::host::OfflineHost;
use metastudio_operator::offline::status_file::StatusFile;
use metastudio_operator::simulator::{
    DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig, Simulator,
};
use metastudio_operator::tenancy::DefaultCredentialsScope;
use serde_json::json;
use std::collections::BTreeMap;

/// retail/kiosk of `robot`, rotating to token t1.
fn kiosk(robot: &str) -> ActivationCode {
    serde_json::from_value(json!({
        "apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "ActivationCode",
        "metadata": {"name": "kiosk", "namespace": "retail", "generation": 1},
        "spec": {"robotId": robot, "validPeriod": 7, "reset": {"token": "t1"}},
    }))
    .unwrap()
}

fn engine(sim: &Simulator) -> Engine {
    let defaults = OperatorDefaults {
        settings: ConnectionSettings {
            endpoint: Some(sim.endpoint()),
            project_id: Some(sim.project_id().to_owned()),
            ..ConnectionSettings::default()
        },
        credentials: Some(Credentials::ak_sk(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)),
        credentials_scope: DefaultCredentialsScope::Everyone,
        ..OperatorDefaults::default()
    };
    Engine::new(Transport::new(fast_options()).unwrap(), defaults)
}

#[tokio::test]
async fn a_changed_robot_id_stops_the_resource_untouched_until_it_is_put_back() {
    let sim = simulator(fleet_seed(2, 3, 7), FaultConfig::default()).await;
    let engine = engine(&sim);
    let host = OfflineHost::new(BTreeMap::new(), None, None).unwrap();
    let now = jiff::Timestamp::now;

    let first = engine
        .reconcile(&kiosk("robot-0"), &host, Mode::Normal, now())
        .await;
    assert_eq!(first.reason, reason::SYNCED);
    assert_eq!(first.status.robot_id.as_deref(), Some("robot-0"));
    assert_eq!(
        sim.counters().total_resets(),
        3,
        "t1 resets robot-0's codes"
    );
    let ledger = first.status.reset_ledger.clone();
    let calls = sim.counters().total_calls();

    // Stored as a 1.20 server stores it: the same resource, another robot.
    let mut changed = kiosk("robot-1");
    changed.metadata.generation = Some(2);
    let stopped = engine.reconcile(&changed, &host, Mode::Normal, now()).await;
    assert_eq!(stopped.reason, reason::INVALID_SPEC);
    let status = host.status_of("retail/kiosk").unwrap();
    let ready = status.condition("Ready").unwrap();
    assert_eq!(ready.status, "False");
    assert_eq!(
        ready.message,
        "spec.robotId is immutable, but it was changed from \"robot-0\" to \"robot-1\" (an API server before Kubernetes 1.25 does not enforce the CRD's rule): the status, its reset ledger and pending resets belong to robot \"robot-0\", so no MetaStudio call is made and they are kept as they are; put spec.robotId back to \"robot-0\", or delete this ActivationCode and create a new one for \"robot-1\""
    );
    let stalled = status.condition("Stalled").unwrap();
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", reason::INVALID_SPEC)
    );
    assert_eq!(sim.counters().total_calls(), calls, "no MetaStudio call");
    assert_eq!(status.reset_ledger, ledger, "the ledger is kept");
    assert_eq!(status.robot_id.as_deref(), Some("robot-0"));
    let events = host.take_events("retail/kiosk");
    assert!(
        events
            .iter()
            .any(|e| e.warning && e.reason == reason::INVALID_SPEC),
        "{events:?}"
    );

    // Put back: Ready again, and t1 resets nothing twice.
    let mut back = kiosk("robot-0");
    back.metadata.generation = Some(3);
    let recovered = engine.reconcile(&back, &host, Mode::Normal, now()).await;
    assert_eq!(recovered.reason, reason::SYNCED);
    assert!(recovered.status.condition("Stalled").is_none());
    assert_eq!(sim.counters().total_resets(), 3, "no code reset twice");
    assert_eq!(recovered.status.reset_ledger, ledger);
}

#[tokio::test]
async fn a_resource_whose_robot_id_was_changed_is_no_rival_of_the_robots_own() {
    let sim = simulator(fleet_seed(2, 2, 7), FaultConfig::default()).await;
    let created = |at: &str| {
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            at.parse().unwrap(),
        ))
    };
    // Older, its status robot-0's, changed to robot-1 on a server without CEL.
    let mut changed = kiosk("robot-1");
    changed.metadata.creation_timestamp = created("2026-01-01T00:00:00Z");
    changed.status = Some(serde_json::from_value(json!({"robotId": "robot-0"})).unwrap());
    let mut own = kiosk("robot-1");
    own.metadata.name = Some("lobby".into());
    own.metadata.creation_timestamp = created("2026-06-01T00:00:00Z");
    let host = OfflineHost::new(BTreeMap::new(), None, None).unwrap();
    host.hold_fleet([&changed, &own]);
    let report = engine(&sim)
        .reconcile(&own, &host, Mode::Normal, jiff::Timestamp::now())
        .await;
    assert_eq!(report.reason, reason::SYNCED, "not Conflict");
}

#[tokio::test]
async fn a_status_of_an_earlier_operator_is_taken_as_the_specs_robots() {
    let sim = simulator(fleet_seed(1, 2, 7), FaultConfig::default()).await;
    let host = OfflineHost::new(BTreeMap::new(), None, None).unwrap();
    let mut resource = kiosk("robot-0");
    // An earlier version's status: a ledger, no robotId.
    resource.status = Some(
        serde_json::from_value(json!({"resetLedger": [{"token": "t1", "codes": []}]})).unwrap(),
    );
    let report = engine(&sim)
        .reconcile(&resource, &host, Mode::Normal, jiff::Timestamp::now())
        .await;
    assert_eq!(report.reason, reason::SYNCED);
    assert_eq!(report.status.robot_id.as_deref(), Some("robot-0"));
}

fn write_kiosk(dir: &std::path::Path, robot: &str) {
    std::fs::write(
        dir.join("kiosk.yaml"),
        format!(
            "apiVersion: metastudio.huaweicloud.com/v1alpha1\nkind: ActivationCode\nmetadata: {{name: kiosk, namespace: retail}}\nspec: {{robotId: {robot}, validPeriod: 7}}\n"
        ),
    )
    .unwrap();
}

#[test]
fn reconcile_f_refuses_a_changed_robot_id_as_a_cel_enforcing_server_would() {
    let rt = common::offline::runtime();
    let sim = rt.block_on(simulator(fleet_seed(2, 2, 7), FaultConfig::default()));
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    let status = path_str(&status_file(dir.path()));
    let args = ["-f", &path_str(&manifests), "--status-file", &status];

    write_kiosk(&manifests, "robot-0");
    let first = run_reconcile(&sim, &args);
    assert!(first.status.success(), "{}", text(&first));
    let recorded = std::fs::read(&status).unwrap();
    let file = StatusFile::load(&status_file(dir.path())).unwrap();
    assert_eq!(
        file.statuses["retail/kiosk"].robot_id.as_deref(),
        Some("robot-0")
    );
    let calls = sim.counters().total_calls();

    write_kiosk(&manifests, "robot-1");
    for extra in [&[][..], &["--dry-run"]] {
        let refused = run_reconcile(&sim, &[&args[..], extra].concat());
        assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
        let stderr = String::from_utf8_lossy(&refused.stderr);
        let kiosk = path_str(&manifests.join("kiosk.yaml"));
        assert!(
            stderr.contains(&format!(
                "{kiosk}: ActivationCode retail/kiosk: spec.robotId: robotId is immutable: create a new ActivationCode for another robot (the CRD's rule `self == oldSelf`, which API servers from Kubernetes 1.25 enforce; the status file records this resource with spec.robotId \"robot-0\": put it back, or give the resource a new metadata.name)"
            )),
            "{}",
            text(&refused)
        );
    }
    assert_eq!(sim.counters().total_calls(), calls, "no MetaStudio call");
    assert_eq!(
        std::fs::read(&status).unwrap(),
        recorded,
        "status file kept"
    );

    // A new resource for the other robot is a create: accepted.
    std::fs::rename(manifests.join("kiosk.yaml"), dir.path().join("old.yaml")).unwrap();
    std::fs::write(
        manifests.join("kiosk-2.yaml"),
        "apiVersion: metastudio.huaweicloud.com/v1alpha1\nkind: ActivationCode\nmetadata: {name: kiosk-2, namespace: retail}\nspec: {robotId: robot-1, validPeriod: 7}\n",
    )
    .unwrap();
    let renamed = run_reconcile(&sim, &args);
    assert!(renamed.status.success(), "{}", text(&renamed));
}
