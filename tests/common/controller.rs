//! Fixtures of the controller tests against kube's mocked API service: a
//! Context over the simulator, resources of namespace [`NS`], and the
//! expectations of the requests every reconcile makes.

use super::fast_options;
use super::kube_mock::{ApiServer, secret};
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use metastudio_operator::controller::directory::ClusterDirectory;
use metastudio_operator::controller::{Context, error_policy, reconcile};
use metastudio_operator::crd::ActivationCode;
use metastudio_operator::engine::{Engine, OperatorDefaults};
use metastudio_operator::metastudio::Transport;
use metastudio_operator::metastudio::settings::ConnectionSettings;
use metastudio_operator::simulator::{DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, Simulator};
use metastudio_operator::telemetry::metrics::OperatorMetrics;
use serde_json::{Value, json};
use std::sync::Arc;

pub const NS: &str = "retail";
pub const CREDS: &str = "metastudio-credentials";

pub fn resource(name: &str, spec: Value) -> ActivationCode {
    serde_json::from_value(json!({
        "apiVersion": "metastudio.huaweicloud.com/v1alpha1",
        "kind": "ActivationCode",
        "metadata": {
            "name": name, "namespace": NS, "uid": format!("uid-{name}"), "generation": 2,
            "creationTimestamp": "2026-11-01T00:00:00Z"
        },
        "spec": spec,
    }))
    .unwrap()
}

pub fn with_creds(mut spec: Value) -> Value {
    spec["connection"] = json!({"credentialsSecretRef": {"name": CREDS}});
    spec
}

/// The operator's defaults of the tests: the simulator's endpoint and
/// project, no credentials of its own.
pub fn defaults(sim: &Simulator) -> OperatorDefaults {
    OperatorDefaults {
        settings: ConnectionSettings {
            endpoint: Some(sim.endpoint()),
            project_id: Some(sim.project_id().to_owned()),
            ..Default::default()
        },
        ..OperatorDefaults::default()
    }
}

pub fn context(client: kube::Client, sim: &Simulator, known: &[&ActivationCode]) -> Arc<Context> {
    context_with(
        client,
        known,
        defaults(sim),
        ClusterDirectory::of(&[], &[], &[]),
    )
}

/// A context with these defaults and connection resources.
pub fn context_with(
    client: kube::Client,
    known: &[&ActivationCode],
    defaults: OperatorDefaults,
    directory: ClusterDirectory,
) -> Arc<Context> {
    let (store, mut writer): (Store<ActivationCode>, _) = reflector::store();
    for r in known {
        writer.apply_watcher_event(&watcher::Event::Apply((*r).clone()));
    }
    let metrics = Arc::new(OperatorMetrics::default());
    let transport = Transport::with_metrics(fast_options(), metrics.api.clone()).unwrap();
    let reporter = Reporter {
        controller: "metastudio-operator".into(),
        instance: Some("test".into()),
    };
    let context = Context::new(
        client,
        Engine::new(transport, defaults),
        reporter,
        vec![store],
        metrics,
    );
    // Synced already: the test's objects are all there is.
    Arc::new(context.with_synced_directory(directory))
}

pub fn creds_secret() -> Value {
    secret(
        NS,
        CREDS,
        &[
            ("accessKey", DEFAULT_ACCESS_KEY),
            ("secretKey", DEFAULT_SECRET_KEY),
        ],
    )
}

pub fn status_path(name: &str) -> String {
    format!(
        "/apis/metastudio.huaweicloud.com/v1alpha1/namespaces/{NS}/activationcodes/{name}/status"
    )
}

pub fn code_values(sim: &Simulator) -> Vec<String> {
    sim.with_store(|s| s.all_codes())
        .iter()
        .map(|c| c.active_code.expose().to_owned())
        .collect()
}

/// Neither status, events nor Secrets-as-logged hold a code value or a key.
pub fn assert_no_secret(sim: &Simulator, text: &str) {
    for value in code_values(sim)
        .iter()
        .chain([DEFAULT_SECRET_KEY.to_owned(), DEFAULT_ACCESS_KEY.to_owned()].iter())
    {
        assert!(
            !text.contains(value.as_str()),
            "a secret leaked into: {text}"
        );
    }
}

/// The `X-Request-Id`s a note names, each one the simulator sent.
pub fn request_ids<'a>(sim: &Simulator, note: &'a str) -> Vec<&'a str> {
    let ids: Vec<&str> = note
        .split("X-Request-Id: ")
        .skip(1)
        .map(|rest| rest.split_once(')').map_or(rest, |(id, _)| id))
        .collect();
    for id in &ids {
        assert!(
            sim.issued_request_id(id),
            "not from the simulator: {id} in {note}"
        );
    }
    ids
}

/// The note of an event, checked to be within the API's 1 KiB.
pub fn note_of(event: &super::kube_mock::Received) -> &str {
    let note = event.body["note"].as_str().expect("a note");
    assert!(note.len() <= 1024, "{} bytes: {note}", note.len());
    note
}

/// The ids of the simulator's codes.
pub fn code_ids(sim: &Simulator) -> Vec<String> {
    sim.with_store(|s| s.all_codes())
        .into_iter()
        .map(|c| c.active_code_id)
        .collect()
}

/// The code ids the status's reset ledger holds for `token`, as stored
/// (sorted).
pub fn ledger_codes(status: &Value, token: &str) -> Vec<String> {
    status["resetLedger"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["token"] == token)
        .flat_map(|entry| entry["codes"].as_array().cloned().unwrap_or_default())
        .map(|id| id.as_str().unwrap_or_default().to_owned())
        .collect()
}

/// `ids`, sorted.
pub fn sorted(ids: &[String]) -> Vec<String> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids
}

pub fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

/// Answers the read of the credentials Secret.
pub async fn expect_creds(api: &mut ApiServer) {
    api.expect(
        "GET",
        &format!("/api/v1/namespaces/{NS}/secrets/{CREDS}"),
        200,
        creds_secret(),
    )
    .await;
}

/// Answers a status apply with the object, and returns the applied status.
pub async fn expect_status(api: &mut ApiServer, r: &ActivationCode) -> Value {
    let mut answer = serde_json::to_value(r).unwrap();
    let received = api
        .expect(
            "PATCH",
            &status_path(&r.metadata.name.clone().unwrap()),
            200,
            answer.clone(),
        )
        .await;
    assert!(
        received.query.contains("fieldManager=metastudio-operator"),
        "server-side apply: {}",
        received.query
    );
    assert!(received.query.contains("force=true"), "{}", received.query);
    assert_eq!(
        received.body["apiVersion"],
        "metastudio.huaweicloud.com/v1alpha1"
    );
    answer["status"] = received.body["status"].clone();
    received.body["status"].clone()
}

/// The requeue delay of an action, in seconds (Action keeps it private).
pub fn requeue_secs(action: &Action) -> Option<f64> {
    let text = format!("{action:?}");
    let inner = text.split("Some(").nth(1)?.split(')').next()?;
    if let Some(ms) = inner.strip_suffix("ms") {
        return ms.parse::<f64>().ok().map(|v| v / 1000.0);
    }
    inner.strip_suffix('s')?.parse().ok()
}

pub async fn run_reconcile(
    r: &ActivationCode,
    ctx: &Arc<Context>,
) -> tokio::task::JoinHandle<Action> {
    let (r, ctx) = (Arc::new(r.clone()), ctx.clone());
    // As kube-runtime does: a failed reconcile's requeue is error_policy's.
    tokio::spawn(async move {
        match reconcile(r.clone(), ctx.clone()).await {
            Ok(action) => action,
            Err(err) => error_policy(r, &err, ctx),
        }
    })
}
