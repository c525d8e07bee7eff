//! The controller against kube's mocked API service: each test scripts the
//! exact Kubernetes requests, in order, while MetaStudio is the simulator.

mod common;

use common::controller::*;
use common::kube_mock::{ApiServer, mock_client, not_found, secret};
use common::{ROBOT, fast_options, robot_seed, simulator};
use kube::runtime::controller::Action;
use metastudio_operator::controller::Context;
use metastudio_operator::crd::{ActivationCode, ActivationCodeStatus, ResetIntent};
use metastudio_operator::fingerprint::FingerprintKey;
use metastudio_operator::metastudio::{Credentials, Operation};
use metastudio_operator::simulator::{
    DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig, Simulator,
};
use serde_json::{Value, json};
use std::sync::Arc;

#[tokio::test]
async fn first_sync_with_drift_updates_exports_records_status_and_events() {
    let sim = simulator(robot_seed(3, 3), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let mut spec = with_creds(json!({"robotId": ROBOT, "validPeriod": 10}));
    spec["exportSecretRef"] = json!({"name": "lobby-codes"});
    let r = resource("lobby", spec);
    let ctx = context(client, &sim, &[&r]);
    let task = run_reconcile(&r, &ctx).await;

    expect_creds(&mut api).await;
    // One Event for the three updates, naming each code and its request.
    let event = api.expect_event(NS, "CodeUpdated").await;
    let notes = event.raw.clone();
    let note = note_of(&event);
    assert!(
        note.starts_with("updated 3 code(s): validPeriod 3 -> 10 days: "),
        "{note}"
    );
    assert!(
        code_ids(&sim).iter().all(|id| note.contains(id.as_str())),
        "{note}"
    );
    let ids = request_ids(&sim, note);
    assert_eq!(ids.len(), 3, "{note}");
    assert!(!ids.iter().any(|id| sim.failed_answer_status(id).is_some()));
    api.expect(
        "GET",
        &format!("/api/v1/namespaces/{NS}/secrets/lobby-codes"),
        404,
        not_found("secrets", "lobby-codes"),
    )
    .await;
    let export = api
        .expect(
            "PATCH",
            &format!("/api/v1/namespaces/{NS}/secrets/lobby-codes"),
            200,
            json!({}),
        )
        .await;
    let owner = &export.body["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            owner["kind"].as_str(),
            owner["uid"].as_str(),
            owner["controller"].as_bool()
        ),
        (Some("ActivationCode"), Some("uid-lobby"), Some(true))
    );
    assert_eq!(
        export.body["data"].as_object().unwrap().len(),
        3,
        "one key per code"
    );
    let status = expect_status(&mut api, &r).await;

    let after = requeue_secs(&api.finish(task).await).expect("a drift check is scheduled");
    assert!(
        (600.0..=660.0).contains(&after),
        "syncInterval 10m plus jitter: {after}"
    );
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(condition(&status, "Ready")["status"], "True");
    assert_eq!(condition(&status, "Ready")["reason"], "Synced");
    assert_eq!(condition(&status, "Ready")["observedGeneration"], 2);
    assert_eq!(condition(&status, "Synced")["status"], "True");
    assert_eq!(status["managedCodes"], 3);
    // Status holds no per-code entries, only counts and the earliest expiry.
    assert!(status.get("codes").is_none(), "{status}");
    assert!(status["nextExpireTime"].is_string(), "{status}");
    assert_eq!(sim.counters().total_updates(), 3);
    assert_no_secret(&sim, &format!("{status} {notes}"));
}

#[tokio::test]
async fn forty_updates_are_one_event_within_the_note_limit() {
    let sim = simulator(robot_seed(40, 3), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let r = resource(
        "fleet",
        with_creds(json!({"robotId": ROBOT, "validPeriod": 30})),
    );
    let ctx = context(client, &sim, &[&r]);
    let task = run_reconcile(&r, &ctx).await;
    expect_creds(&mut api).await;
    let event = api.expect_event(NS, "CodeUpdated").await;
    let status = expect_status(&mut api, &r).await;
    api.finish(task).await;
    assert_eq!(sim.counters().total_updates(), 40);
    assert_eq!(condition(&status, "Ready")["reason"], "Synced");

    let note = note_of(&event);
    let (listed, more) = note
        .rsplit_once(", and ")
        .unwrap_or_else(|| panic!("not all 40 fit in 1 KiB: {note}"));
    let more: usize = more
        .strip_suffix(" more")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("ends with \"and N more\": {note}"));
    let codes = code_ids(&sim);
    let named = codes
        .iter()
        .filter(|id| listed.contains(id.as_str()))
        .count();
    let ids = request_ids(&sim, listed);
    assert!(
        listed.starts_with("updated 40 code(s): validPeriod 3 -> 30 days: "),
        "{note}"
    );
    assert_eq!(
        named,
        ids.len(),
        "each listed code with its request id: {note}"
    );
    assert_eq!(named + more, 40, "{note}");
    assert!(named > 5, "the note is filled: {note}");
}

#[tokio::test]
async fn failed_updates_are_one_warning_naming_each_code_and_error() {
    let faults = FaultConfig {
        server_error_rate: 1.0,
        operations: [Operation::UpdateActiveCode].into(),
        seed: 6,
        ..FaultConfig::default()
    };
    let sim = simulator(robot_seed(2, 3), faults).await;
    let (client, mut api) = mock_client();
    let r = resource(
        "failing",
        with_creds(json!({"robotId": ROBOT, "validPeriod": 9})),
    );
    let ctx = context(client, &sim, &[&r]);
    let task = run_reconcile(&r, &ctx).await;
    expect_creds(&mut api).await;
    let event = api.expect_event(NS, "RemoteError").await;
    let status = expect_status(&mut api, &r).await;
    api.finish(task).await;
    assert_eq!(event.body["type"], "Warning");
    let note = note_of(&event);
    assert!(note.starts_with("2 change(s) failed: "), "{note}");
    for id in code_ids(&sim) {
        assert!(
            note.contains(&format!("{id}: UpdateActiveCode failed after ")),
            "{note}"
        );
    }
    let ids = request_ids(&sim, note);
    assert_eq!(ids.len(), 2, "{note}");
    assert!(
        ids.iter()
            .all(|id| sim.failed_answer_status(id) == Some(500)),
        "{note}"
    );
    assert_eq!(condition(&status, "Ready")["reason"], "RemoteError");
}

#[tokio::test]
async fn in_sync_makes_no_remote_write() {
    let sim = simulator(robot_seed(2, 5), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let r = resource(
        "steady",
        with_creds(json!({"robotId": ROBOT, "validPeriod": 5})),
    );
    let ctx = context(client, &sim, &[&r]);
    let task = run_reconcile(&r, &ctx).await;
    expect_creds(&mut api).await;
    let status = expect_status(&mut api, &r).await;
    api.finish(task).await;
    assert_eq!(condition(&status, "Synced")["reason"], "InSync");
    let counters = sim.counters();
    assert_eq!(counters.total_updates() + counters.total_resets(), 0);
    assert_eq!(counters.calls_of(Operation::ListActiveCode), 1);
}

#[tokio::test]
async fn an_unknown_spec_field_is_a_warning_event_and_the_sync_goes_on() {
    // As after a rollback: the stored spec has a field of a newer CRD.
    let sim = simulator(robot_seed(2, 5), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let r = resource(
        "newer",
        with_creds(json!({"robotId": ROBOT, "validPeriod": 5, "reset": {"cadence": "gradual"}})),
    );
    let ctx = context(client, &sim, &[&r]);
    let task = run_reconcile(&r, &ctx).await;
    let event = api.expect_event(NS, "UnknownField").await;
    assert_eq!(event.body["type"], "Warning", "{}", event.raw);
    let note = event.body["note"].as_str().unwrap();
    assert!(
        note.starts_with("spec.reset.cadence is not known to this version of the operator"),
        "{note}"
    );
    assert!(note.contains("upgrade the operator"), "{note}");
    expect_creds(&mut api).await;
    let status = expect_status(&mut api, &r).await;
    api.finish(task).await;
    assert_eq!(condition(&status, "Ready")["reason"], "Synced");
    assert_eq!(condition(&status, "Synced")["reason"], "InSync");
    assert_eq!(sim.counters().calls_of(Operation::ListActiveCode), 1);
}

#[tokio::test]
async fn observe_reports_drift_and_changes_nothing() {
    let sim = simulator(robot_seed(2, 3), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let r = resource(
        "watcher",
        with_creds(
            json!({"robotId": ROBOT, "validPeriod": 9, "managementPolicy": "Observe", "reset": {"token": "t"}}),
        ),
    );
    let ctx = context(client, &sim, &[&r]);
    let task = run_reconcile(&r, &ctx).await;
    expect_creds(&mut api).await;
    api.expect_event(NS, "DriftDetected").await;
    let status = expect_status(&mut api, &r).await;
    api.finish(task).await;
    assert_eq!(condition(&status, "Ready")["reason"], "Observing");
    assert_eq!(condition(&status, "Synced")["status"], "False");
    let drift = status["drift"].as_array().unwrap();
    assert_eq!(drift.len(), 4, "2 resets and 2 updates due: {drift:?}");
    assert!(status.get("pendingResets").is_none());
    assert_eq!(
        sim.counters().total_updates() + sim.counters().total_resets(),
        0
    );
}

#[tokio::test]
async fn invalid_spec_is_reported_without_any_remote_call() {
    let sim = simulator(robot_seed(1, 1), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let r = resource(
        "bad",
        with_creds(json!({"robotId": ROBOT, "validPeriod": 1, "reset": {"beforeExpiry": "48h"}})),
    );
    let ctx = context(client, &sim, &[&r]);
    let task = run_reconcile(&r, &ctx).await;
    let event = api.expect_event(NS, "InvalidSpec").await;
    assert!(
        event.body["note"]
            .as_str()
            .unwrap()
            .contains("spec.reset.beforeExpiry")
    );
    let status = expect_status(&mut api, &r).await;
    let action = api.finish(task).await;
    assert_eq!(
        action,
        Action::await_change(),
        "wait for the spec to change"
    );
    assert_eq!(condition(&status, "Ready")["reason"], "InvalidSpec");
    assert_eq!(condition(&status, "Synced")["status"], "Unknown");
    assert_eq!(sim.counters().total_calls(), 0);
}

#[tokio::test]
async fn missing_credentials_secret_is_credentials_not_found_with_backoff() {
    let sim = simulator(robot_seed(1, 1), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let r = resource(
        "nocreds",
        with_creds(json!({"robotId": ROBOT, "validPeriod": 1})),
    );
    let ctx = context(client, &sim, &[&r]);
    for round in 1..=2u64 {
        let task = run_reconcile(&r, &ctx).await;
        api.expect(
            "GET",
            &format!("/api/v1/namespaces/{NS}/secrets/{CREDS}"),
            404,
            not_found("secrets", CREDS),
        )
        .await;
        let event = api.expect_event(NS, "CredentialsNotFound").await;
        assert!(
            event.body["note"]
                .as_str()
                .unwrap()
                .contains("does not exist: create it")
        );
        let status = expect_status(&mut api, &r).await;
        assert_eq!(condition(&status, "Ready")["reason"], "CredentialsNotFound");
        let after = requeue_secs(&api.finish(task).await).expect("a retry is scheduled");
        let floor = 5.0 * f64::from(1u32 << (round - 1));
        assert!(
            after >= floor && after <= floor * 1.1,
            "backoff grows: round {round}, {after}s"
        );
    }
    assert_eq!(sim.counters().total_calls(), 0);
}

#[tokio::test]
async fn the_younger_of_two_resources_on_the_same_codes_is_a_conflict() {
    let sim = simulator(robot_seed(2, 3), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let older = resource(
        "first",
        with_creds(json!({"robotId": ROBOT, "validPeriod": 3})),
    );
    let mut younger = resource(
        "second",
        with_creds(json!({"robotId": ROBOT, "validPeriod": 8})),
    );
    younger.metadata.creation_timestamp =
        Some(serde_json::from_value(json!("2026-11-20T00:00:00Z")).unwrap());
    let ctx = context(client, &sim, &[&older, &younger]);
    let task = run_reconcile(&younger, &ctx).await;
    expect_creds(&mut api).await;
    let event = api.expect_event(NS, "Conflict").await;
    assert!(
        event.body["note"]
            .as_str()
            .unwrap()
            .contains("retail/first")
    );
    let status = expect_status(&mut api, &younger).await;
    api.finish(task).await;
    assert_eq!(condition(&status, "Ready")["reason"], "Conflict");
    assert_eq!(
        sim.counters().total_updates() + sim.counters().total_resets(),
        0,
        "the younger writes nothing"
    );
}

/// The reset test's resource, its intents' fingerprint key and code ids.
fn reset_fixture(sim: &Simulator) -> (ActivationCode, FingerprintKey, Vec<String>) {
    let r = resource(
        "rotate",
        with_creds(json!({"robotId": ROBOT, "validPeriod": 3, "reset": {"token": "t1"}})),
    );
    let key = FingerprintKey::from_credentials(&Credentials::ak_sk(
        DEFAULT_ACCESS_KEY,
        DEFAULT_SECRET_KEY,
    ));
    let ids = sim
        .with_store(|s| s.all_codes())
        .into_iter()
        .map(|c| c.active_code_id)
        .collect();
    (r, key, ids)
}

/// What one reconcile of the reset fixture wrote.
struct ResetRound {
    /// The status recording the intents, when there were resets to make.
    intents: Option<Value>,
    /// The note of the one event for the resets confirmed after a crash.
    confirmed: Option<String>,
    /// The note of the one event for the resets made.
    reset: Option<String>,
    status: Value,
}

/// One reconcile of the reset fixture: resets found done after a crash
/// (one event for all, when `confirmed`), then new ones (intents first,
/// one event for all after them, when `resets`).
async fn reset_round(
    api: &mut ApiServer,
    r: &ActivationCode,
    confirmed: bool,
    resets: bool,
) -> ResetRound {
    expect_creds(api).await;
    let note =
        async |api: &mut ApiServer| note_of(&api.expect_event(NS, "CodeReset").await).to_owned();
    let confirmed = if confirmed {
        Some(note(api).await)
    } else {
        None
    };
    let intents = if resets {
        Some(expect_status(api, r).await)
    } else {
        None
    };
    let reset = if resets { Some(note(api).await) } else { None };
    ResetRound {
        intents,
        confirmed,
        reset,
        status: expect_status(api, r).await,
    }
}

#[tokio::test]
async fn a_reset_token_resets_each_code_exactly_once() {
    let sim = simulator(robot_seed(3, 3), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let (r, _, ids) = reset_fixture(&sim);
    let ctx = context(client, &sim, &[&r]);

    let task = run_reconcile(&r, &ctx).await;
    let round = reset_round(&mut api, &r, false, true).await;
    api.finish(task).await;
    let (intents, status) = (round.intents.unwrap(), round.status);
    // One Event for the three resets: every code, every request id.
    let note = round.reset.unwrap();
    assert!(
        note.starts_with("reset 3 code(s) for token \"t1\": "),
        "{note}"
    );
    assert!(ids.iter().all(|id| note.contains(id.as_str())), "{note}");
    let request_ids = request_ids(&sim, &note);
    assert_eq!(request_ids.len(), 3, "{note}");
    assert!(
        !request_ids
            .iter()
            .any(|id| sim.failed_answer_status(id).is_some())
    );
    assert_eq!(
        intents["pendingResets"].as_array().unwrap().len(),
        3,
        "intents recorded before any reset"
    );
    // While the resets run, this generation is observed but not Ready.
    assert_eq!(intents["observedGeneration"], 2);
    assert_eq!(condition(&intents, "Ready")["status"], "False");
    assert_eq!(condition(&intents, "Ready")["reason"], "Resetting");
    assert_eq!(condition(&intents, "Reconciling")["status"], "True");
    assert_eq!(condition(&status, "Ready")["status"], "True");
    assert!(
        status.get("pendingResets").is_none(),
        "settled after the resets"
    );
    assert_eq!(ledger_codes(&status, "t1"), sorted(&ids), "{status}");
    assert_no_secret(&sim, &format!("{intents} {status} {note}"));

    // The same resource again (the controller remembers the status it wrote).
    let task = run_reconcile(&r, &ctx).await;
    reset_round(&mut api, &r, false, false).await;
    api.finish(task).await;
    let counters = sim.counters();
    assert!(
        ids.iter().all(|id| counters.resets_of(id) == 1),
        "{:?}",
        counters.resets
    );
}

/// Intents for every current code of the simulator, as a reconciler
/// records them just before it resets.
fn intents_for_current_codes(sim: &Simulator, key: &FingerprintKey) -> Vec<ResetIntent> {
    sim.with_store(|s| s.all_codes())
        .iter()
        .map(|c| ResetIntent {
            code_id: c.active_code_id.clone(),
            token: Some("t1".into()),
            previous_update_time: c.update_time,
            previous_fingerprint: key.fingerprint(c),
            recorded_at: jiff::Timestamp::now(),
            unanswered_since: None,
            call_window_seconds: Some(30),
        })
        .collect()
}

fn with_intents(mut r: ActivationCode, intents: Vec<ResetIntent>) -> ActivationCode {
    r.status = Some(ActivationCodeStatus {
        pending_resets: intents,
        ..Default::default()
    });
    r
}

#[tokio::test]
async fn a_crash_after_the_intent_was_recorded_resets_once_on_restart() {
    let sim = simulator(robot_seed(2, 3), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let (r, key, ids) = reset_fixture(&sim);
    // The previous process recorded intents for the current values, then died.
    let r = with_intents(r, intents_for_current_codes(&sim, &key));
    let ctx = context(client, &sim, &[&r]);

    // On restart the resets may still be in flight at the server: they wait
    // out the grace, from now, and nothing is reset meanwhile.
    let task = run_reconcile(&r, &ctx).await;
    let status = reset_round(&mut api, &r, false, false).await.status;
    api.finish(task).await;
    assert_eq!(sim.counters().total_resets(), 0);
    let ready = condition(&status, "Ready");
    assert_eq!(ready["reason"], "ResetUnconfirmed", "{ready}");
    assert_eq!(condition(&status, "Reconciling")["status"], "True");
    let waiting = status["pendingResets"].as_array().unwrap();
    assert_eq!(waiting.len(), 2);
    assert!(waiting.iter().all(|i| i["unansweredSince"].is_string()));

    // Ten minutes later (another process), the grace has passed with no
    // effect: each code is reset, once.
    let mut after: ActivationCodeStatus = serde_json::from_value(status).unwrap();
    for intent in &mut after.pending_resets {
        intent.unanswered_since =
            Some(jiff::Timestamp::now() - jiff::SignedDuration::from_mins(10));
    }
    let mut r = r;
    r.status = Some(after);
    let (client, mut api) = mock_client();
    let ctx = context(client, &sim, &[&r]);
    let task = run_reconcile(&r, &ctx).await;
    let round = reset_round(&mut api, &r, false, true).await;
    api.finish(task).await;
    let (status, note) = (round.status, round.reset.unwrap());
    assert!(
        note.starts_with("reset 2 code(s) for token \"t1\": "),
        "{note}"
    );
    assert_eq!(request_ids(&sim, &note).len(), 2, "{note}");
    assert_eq!(ledger_codes(&status, "t1"), sorted(&ids), "{status}");
    let counters = sim.counters();
    assert!(
        ids.iter().all(|id| counters.resets_of(id) == 1),
        "never zero times: {:?}",
        counters.resets
    );
}

#[tokio::test]
async fn a_crash_after_the_remote_reset_does_not_reset_again() {
    let sim = simulator(robot_seed(2, 3), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let (r, key, ids) = reset_fixture(&sim);
    // Intents recorded, resets made at the API, then the process died
    // before it could record them.
    let intents = intents_for_current_codes(&sim, &key);
    let direct = common::client(&sim, fast_options());
    for id in &ids {
        direct.reset(id, true).await.unwrap();
    }
    let r = with_intents(r, intents);
    let ctx = context(client, &sim, &[&r]);
    let task = run_reconcile(&r, &ctx).await;
    let round = reset_round(&mut api, &r, true, false).await;
    api.finish(task).await;
    let (status, note) = (round.status, round.confirmed.unwrap());
    assert!(
        note.starts_with("reset 2 code(s) for token \"t1\" (confirmed after an interruption): "),
        "{note}"
    );
    assert!(ids.iter().all(|id| note.contains(id.as_str())), "{note}");
    assert_eq!(ledger_codes(&status, "t1"), sorted(&ids), "{status}");
    assert!(status.get("pendingResets").is_none());
    let counters = sim.counters();
    assert!(
        ids.iter().all(|id| counters.resets_of(id) == 1),
        "never twice: {:?}",
        counters.resets
    );
}

#[tokio::test]
async fn an_intent_write_refused_as_stale_starts_no_reset_and_replans_from_a_fresh_read() {
    let sim = simulator(robot_seed(2, 3), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let (mut r, key, _) = reset_fixture(&sim);
    r.metadata.resource_version = Some("5".into());
    let ctx = context(client, &sim, &[&r]);
    let task = run_reconcile(&r, &ctx).await;

    expect_creds(&mut api).await;
    // Another reconciler recorded its intents first: the API server refuses
    // this one's, which names the version its plan was made from.
    let refused = api
        .expect(
            "PATCH",
            &status_path("rotate"),
            409,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict",
                   "message": "the object has been modified", "code": 409}),
        )
        .await;
    assert_eq!(refused.body["metadata"]["resourceVersion"], "5");
    assert_eq!(
        refused.body["status"]["pendingResets"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let mut fresh = with_intents(r.clone(), intents_for_current_codes(&sim, &key));
    fresh.metadata.resource_version = Some("6".into());
    api.expect(
        "GET",
        &format!(
            "/apis/metastudio.huaweicloud.com/v1alpha1/namespaces/{NS}/activationcodes/rotate"
        ),
        200,
        serde_json::to_value(&fresh).unwrap(),
    )
    .await;
    // Replanned from the fresh state: the other's resets may be in flight,
    // so this one waits for them instead of resetting.
    expect_creds(&mut api).await;
    let written = api
        .expect(
            "PATCH",
            &status_path("rotate"),
            200,
            serde_json::to_value(&fresh).unwrap(),
        )
        .await;
    api.finish(task).await;
    assert_eq!(written.body["metadata"]["resourceVersion"], "6");
    let status = &written.body["status"];
    assert_eq!(
        condition(status, "Ready")["reason"],
        "ResetUnconfirmed",
        "{status}"
    );
    assert_eq!(status["pendingResets"].as_array().unwrap().len(), 2);
    assert_eq!(sim.counters().total_resets(), 0, "no reset by the loser");
}

#[tokio::test]
async fn a_resource_being_deleted_makes_no_remote_call_and_writes_no_export() {
    let sim = simulator(robot_seed(2, 3), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let mut r = resource(
        "leaving",
        with_creds(
            json!({"robotId": ROBOT, "validPeriod": 9, "reset": {"token": "t1"},
                          "exportSecretRef": {"name": "leaving-codes"}}),
        ),
    );
    r.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::now(),
    ));
    r.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    let ctx = context(client, &sim, &[&r]);
    let task = run_reconcile(&r, &ctx).await;
    // No credentials read, no export Secret, no event: only the status.
    let status = expect_status(&mut api, &r).await;
    api.finish(task).await;
    let ready = condition(&status, "Ready");
    assert_eq!(ready["reason"], "Deleting", "{ready}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("example.com/hold"),
        "names the finalizer it waits for: {ready}"
    );
    assert_eq!(sim.counters().total_calls(), 0, "no MetaStudio call");
}

#[tokio::test]
async fn suspended_makes_no_call_at_all_and_says_suspended() {
    let sim = simulator(robot_seed(2, 3), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let r = resource(
        "paused",
        with_creds(
            json!({"robotId": ROBOT, "validPeriod": 9, "suspend": true, "reset": {"token": "t"}}),
        ),
    );
    let ctx = context(client, &sim, &[&r]);
    let task = run_reconcile(&r, &ctx).await;
    // Not even the credentials are read: the status is the only request.
    let status = expect_status(&mut api, &r).await;
    let action = api.finish(task).await;
    assert_eq!(
        action,
        Action::await_change(),
        "wait for the spec to change"
    );
    assert_eq!(condition(&status, "Ready")["status"], "False");
    assert_eq!(condition(&status, "Ready")["reason"], "Suspended");
    assert_eq!(sim.counters().total_calls(), 0);
}

/// A reconcile that lists and fails: credentials read, a warning Event with
/// `reason`, the status. Returns the status and the requeue in seconds.
async fn failing_round(
    api: &mut ApiServer,
    ctx: &Arc<Context>,
    r: &ActivationCode,
    credentials: Value,
    reason: &str,
) -> (Value, f64) {
    let task = run_reconcile(r, ctx).await;
    api.expect(
        "GET",
        &format!("/api/v1/namespaces/{NS}/secrets/{CREDS}"),
        200,
        credentials,
    )
    .await;
    let event = api.expect_event(NS, reason).await;
    assert_eq!(event.body["type"], "Warning");
    let status = expect_status(api, r).await;
    let after = requeue_secs(&api.finish(task).await).expect("a retry is scheduled");
    assert_eq!(condition(&status, "Ready")["status"], "False");
    assert_eq!(condition(&status, "Ready")["reason"], reason);
    (status, after)
}

#[tokio::test]
async fn rejected_credentials_are_credentials_rejected() {
    let sim = simulator(robot_seed(2, 3), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let r = resource(
        "wrongkey",
        with_creds(json!({"robotId": ROBOT, "validPeriod": 9})),
    );
    let ctx = context(client, &sim, &[&r]);
    let wrong = secret(
        NS,
        CREDS,
        &[
            ("accessKey", DEFAULT_ACCESS_KEY),
            ("secretKey", "not-the-secret-key"),
        ],
    );
    let (status, after) = failing_round(&mut api, &ctx, &r, wrong, "CredentialsRejected").await;
    assert!(
        condition(&status, "Ready")["message"]
            .as_str()
            .unwrap()
            .contains("check the access key, secret key and project id"),
        "{status}"
    );
    assert!((5.0..=5.5).contains(&after), "backoff: {after}");
    assert_eq!(sim.counters().total_updates(), 0);
    assert_no_secret(&sim, &status.to_string());
}

#[tokio::test]
async fn a_throttled_list_is_rate_limited() {
    let faults = FaultConfig {
        throttle_rate: 1.0,
        retry_after_secs: 0,
        operations: [Operation::ListActiveCode].into(),
        seed: 3,
        ..FaultConfig::default()
    };
    let sim = simulator(robot_seed(2, 3), faults).await;
    let (client, mut api) = mock_client();
    let r = resource(
        "busy",
        with_creds(json!({"robotId": ROBOT, "validPeriod": 9})),
    );
    let ctx = context(client, &sim, &[&r]);
    let (status, after) = failing_round(&mut api, &ctx, &r, creds_secret(), "RateLimited").await;
    assert!(
        condition(&status, "Ready")["message"]
            .as_str()
            .unwrap()
            .contains("backs off"),
        "{status}"
    );
    assert!(after >= 5.0, "backs off: {after}");
    assert_eq!(sim.counters().total_updates(), 0);
}

#[tokio::test]
async fn a_failing_api_is_a_remote_error() {
    let faults = FaultConfig {
        server_error_rate: 1.0,
        operations: [Operation::ListActiveCode].into(),
        seed: 4,
        ..FaultConfig::default()
    };
    let sim = simulator(robot_seed(2, 3), faults).await;
    let (client, mut api) = mock_client();
    let r = resource(
        "down",
        with_creds(json!({"robotId": ROBOT, "validPeriod": 9})),
    );
    let ctx = context(client, &sim, &[&r]);
    let (_, after) = failing_round(&mut api, &ctx, &r, creds_secret(), "RemoteError").await;
    assert!((5.0..=5.5).contains(&after), "backoff: {after}");
    assert_eq!(sim.counters().total_updates(), 0);
}

#[tokio::test]
async fn an_export_secret_owned_by_someone_else_is_export_failed_and_left_alone() {
    let sim = simulator(robot_seed(2, 3), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let mut spec = with_creds(json!({"robotId": ROBOT, "validPeriod": 3}));
    spec["exportSecretRef"] = json!({"name": "taken"});
    let r = resource("exporter", spec);
    let ctx = context(client, &sim, &[&r]);
    let task = run_reconcile(&r, &ctx).await;
    expect_creds(&mut api).await;
    let mut theirs = secret(NS, "taken", &[("config", "someone else's")]);
    theirs["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "uid-web", "controller": true
    }]);
    api.expect(
        "GET",
        &format!("/api/v1/namespaces/{NS}/secrets/taken"),
        200,
        theirs,
    )
    .await;
    // No write to that Secret: a warning Event, then the status.
    api.expect_event(NS, "ExportFailed").await;
    let status = expect_status(&mut api, &r).await;
    let after = requeue_secs(&api.finish(task).await).expect("a retry is scheduled");
    assert!((5.0..=5.5).contains(&after), "backoff: {after}");
    let ready = condition(&status, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("ExportFailed"))
    );
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("is not owned by this ActivationCode"),
        "{ready}"
    );
    assert_eq!(status["managedCodes"], 2, "the codes themselves are fine");
}

#[tokio::test]
async fn backoff_starts_over_after_a_success() {
    let sim = simulator(robot_seed(1, 3), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let r = resource(
        "flaky",
        with_creds(json!({"robotId": ROBOT, "validPeriod": 3})),
    );
    let ctx = context(client, &sim, &[&r]);
    let creds_path = format!("/api/v1/namespaces/{NS}/secrets/{CREDS}");
    let missing = async |api: &mut ApiServer| -> f64 {
        let task = run_reconcile(&r, &ctx).await;
        api.expect("GET", &creds_path, 404, not_found("secrets", CREDS))
            .await;
        api.expect_event(NS, "CredentialsNotFound").await;
        expect_status(api, &r).await;
        requeue_secs(&api.finish(task).await).expect("a retry is scheduled")
    };
    let first = missing(&mut api).await;
    let second = missing(&mut api).await;
    assert!(
        (5.0..=5.5).contains(&first) && (10.0..=11.0).contains(&second),
        "{first} {second}"
    );

    let task = run_reconcile(&r, &ctx).await;
    api.expect("GET", &creds_path, 200, creds_secret()).await;
    let status = expect_status(&mut api, &r).await;
    let synced = requeue_secs(&api.finish(task).await).expect("a drift check");
    assert_eq!(condition(&status, "Ready")["reason"], "Synced");
    assert!(synced >= 600.0, "syncInterval after a success: {synced}");

    let again = missing(&mut api).await;
    assert!(
        (5.0..=5.5).contains(&again),
        "the first failure after a success waits the base delay again: {again}"
    );
}

/// Triggers (src/controller/triggers.rs), with the whole controller running
/// against an in-memory API server: a change to the credentials Secret a
/// resource names reconciles it again; a change to an unrelated Secret does
/// not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_credentials_secret_reconciles_the_resources_that_use_it() {
    use common::fake_api::{FakeCluster, Operator, RUN_TOKEN, activation_code, eventually};
    let sim =
        common::simulator_accepting(robot_seed(2, 3), FaultConfig::default(), &[RUN_TOKEN]).await;
    let cluster = FakeCluster::new(
        vec![activation_code(
            NS,
            "lobby",
            with_creds(json!({"robotId": ROBOT, "validPeriod": 3})),
        )],
        vec![
            creds_secret(),
            common::fake_api::secret(NS, "unrelated", &[("k", "v")]),
        ],
    );
    let operator = Operator::start(&sim, cluster.client("operator"), &[]).await;
    let lists = || sim.counters().calls_of(Operation::ListActiveCode);
    eventually("lobby reconciled", async || {
        cluster
            .resource(NS, "lobby")
            .is_some_and(|r| r.get("status").is_some())
    })
    .await;
    assert_eq!(lists(), 1);

    cluster.put_secret(common::fake_api::secret(NS, "unrelated", &[("k", "w")]));
    eventually("the unrelated change was delivered", async || {
        cluster.queued_events() == 0
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(lists(), 1, "an unrelated Secret triggers nothing");

    // The credentials are rotated (the same keys, a new resourceVersion).
    cluster.put_secret(creds_secret());
    eventually("lobby reconciled again", async || lists() == 2).await;
    operator.stop().await.expect("run ends cleanly");
}
