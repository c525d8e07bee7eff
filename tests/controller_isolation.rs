//! One tenant cannot stop the others: against kube's mocked API service
//! and the simulator, a reconcile waiting for its tenant's slow budget
//! holds no concurrency slot, a panicking reconcile is its resource's
//! `InternalError` while the next reconcile goes on, and a connection
//! whose budget bypassed the schema stops its ActivationCodes before any
//! MetaStudio call.

mod common;

use common::controller::*;
use common::kube_mock::{ApiServer, mock_client, secret};
use common::{ROBOT, seed_yaml, simulator_accepting};
use kube::runtime::controller::Action;
use metastudio_operator::controller::connections::{STATUS_REFRESH, isolated_status};
use metastudio_operator::controller::directory::ClusterDirectory;
use metastudio_operator::controller::{
    Context, ReconcileError, error_policy, isolated, reconcile_in_slot,
};
use metastudio_operator::crd::ActivationCode;
use metastudio_operator::crd::connection::MetaStudioConnection;
use metastudio_operator::metastudio::connection::{ConnectionOptions, parse_endpoint};
use metastudio_operator::metastudio::pacing::Pacing;
use metastudio_operator::metastudio::{Connection, Credentials};
use metastudio_operator::simulator::{
    DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig, Simulator,
};
use metastudio_operator::slots::Slots;
use serde_json::{Value, json};
use std::sync::Arc;

const OTHER_ROBOT: &str = "0ther0b0t0000000000000000000000b";
const TENANT_B_TOKEN: &str = "tenant-b-token";

async fn two_robots() -> Simulator {
    let seed = seed_yaml(&format!(
        "spec: {{robots: [{{robotId: {ROBOT}, generate: {{count: 2, validPeriod: 7}}}}, {{robotId: {OTHER_ROBOT}, generate: {{count: 2, validPeriod: 7}}}}]}}"
    ));
    simulator_accepting(seed, FaultConfig::default(), &[TENANT_B_TOKEN]).await
}

/// The MetaStudioConnection `name` of namespace [`NS`]: the simulator,
/// credentials from Secret `name-credentials`, this `budget`.
fn connection_resource(sim: &Simulator, name: &str, budget: Value) -> MetaStudioConnection {
    serde_json::from_value(json!({
        "apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "MetaStudioConnection",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"endpoint": sim.endpoint(), "projectId": sim.project_id(),
                 "credentialsSecretRef": {"name": format!("{name}-credentials")},
                 "budget": budget},
    }))
    .unwrap()
}

/// Answers the read of the Secret `name` with the simulator's AK/SK, or
/// with `authToken` when given.
async fn expect_secret(api: &mut ApiServer, name: &str, token: Option<&str>) {
    let data = match token {
        Some(token) => vec![("authToken", token)],
        None => vec![
            ("accessKey", DEFAULT_ACCESS_KEY),
            ("secretKey", DEFAULT_SECRET_KEY),
        ],
    };
    api.expect(
        "GET",
        &format!("/api/v1/namespaces/{NS}/secrets/{name}"),
        200,
        secret(NS, name, &data),
    )
    .await;
}

/// As kube-runtime runs it: the reconcile in a slot, then error_policy.
fn spawn_in_slot(
    r: &ActivationCode,
    ctx: &Arc<Context>,
    slots: &Slots,
) -> tokio::task::JoinHandle<Action> {
    let (r, ctx, slots) = (Arc::new(r.clone()), ctx.clone(), slots.clone());
    tokio::spawn(async move {
        match reconcile_in_slot(r.clone(), ctx.clone(), slots).await {
            Ok(action) => action,
            Err(err) => error_policy(r, &err, ctx),
        }
    })
}

#[tokio::test]
async fn a_slow_tenants_reconcile_waits_without_its_slot_and_another_tenant_goes_on() {
    let sim = two_robots().await;
    let (client, mut api) = mock_client();
    // Tenant A: one read per 1000 s (0.1/s at a 1% share, the slowest
    // budget allowed). Tenant B: its own token, the default budget.
    let slow_budget = json!({"readsPerSecond": 0.1, "share": 0.01});
    let slow = connection_resource(&sim, "slow", slow_budget);
    let a = resource(
        "tenant-a",
        json!({"robotId": ROBOT, "validPeriod": 7, "connectionRef": {"name": "slow"}}),
    );
    let mut b_spec = json!({"robotId": OTHER_ROBOT, "validPeriod": 7});
    b_spec["connection"] = json!({"credentialsSecretRef": {"name": "tenant-b-credentials"}});
    let b = resource("tenant-b", b_spec);
    let ctx = context_with(
        client,
        &[&a, &b],
        defaults(&sim),
        ClusterDirectory::of(&[slow], &[], &[]),
    );
    // Tenant A has spent its one read already: its next one waits 1000 s.
    let a_connection = Connection::with_options(
        parse_endpoint(&sim.endpoint()).unwrap(),
        sim.project_id().to_owned(),
        Credentials::ak_sk(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY),
        None,
        ConnectionOptions {
            pacing: Pacing {
                reads_per_second: Some(0.1),
                share: Some(0.01),
                ..Pacing::default()
            },
            ..ConnectionOptions::default()
        },
    )
    .unwrap();
    let a_client = ctx.engine.transport().client(a_connection);
    a_client.list_page(ROBOT, 0, 1).await.unwrap();

    // One slot for the whole operator.
    let slots = Slots::new(1);
    let task_a = spawn_in_slot(&a, &ctx, &slots);
    expect_secret(&mut api, "slow-credentials", None).await;
    // A now waits for its budget; B must get the slot meanwhile.
    let task_b = spawn_in_slot(&b, &ctx, &slots);
    expect_secret(&mut api, "tenant-b-credentials", Some(TENANT_B_TOKEN)).await;
    let status = expect_status(&mut api, &b).await;
    api.finish(task_b).await;
    assert_eq!(condition(&status, "Ready")["reason"], "Synced", "{status}");
    assert!(!task_a.is_finished(), "tenant A still waits for its budget");
    assert_eq!(slots.available(), 1, "and holds no slot while it waits");
    task_a.abort();
}

#[tokio::test]
async fn a_panicking_reconcile_is_its_resources_internal_error_and_the_next_goes_on() {
    let sim = two_robots().await;
    let (client, mut api) = mock_client();
    let broken = resource(
        "broken",
        with_creds(json!({"robotId": ROBOT, "validPeriod": 7})),
    );
    let fine = resource(
        "fine",
        with_creds(json!({"robotId": OTHER_ROBOT, "validPeriod": 7})),
    );
    let ctx = context(client, &sim, &[&broken, &fine]);
    let slots = Slots::new(1);

    let task = {
        let (r, ctx, slots) = (Arc::new(broken.clone()), ctx.clone(), slots.clone());
        tokio::spawn(async move {
            let panicking = |_, _| async { panic!("a bug in this reconcile") };
            slots.run(isolated(r, ctx, panicking)).await
        })
    };
    let event = api.expect_event(NS, "InternalError").await;
    let status = expect_status(&mut api, &broken).await;
    let result: Result<Action, ReconcileError> = api.finish(task).await;
    assert!(
        matches!(
            result,
            Err(ReconcileError::Retry {
                reason: "InternalError",
                ..
            })
        ),
        "retried with backoff: {result:?}"
    );
    let ready = condition(&status, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some("InternalError"))
    );
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains("tests/controller_isolation.rs:")
            && message.contains("a bug in this reconcile"),
        "{message}"
    );
    assert_eq!(condition(&status, "Stalled")["status"], "True");
    assert_eq!(event.body["note"], ready["message"]);
    assert_eq!(ctx.metrics.reconcile_panics.get(), 1);
    assert!(
        scrape(&ctx).contains("metastudio_reconcile_panics_total 1\n"),
        "counted on /metrics"
    );
    assert_eq!(slots.available(), 1, "the slot came back");
    assert_eq!(sim.counters().total_calls(), 0);

    // The operator goes on: the next resource reconciles as ever.
    let next = spawn_in_slot(&fine, &ctx, &slots);
    expect_creds(&mut api).await;
    let status = expect_status(&mut api, &fine).await;
    api.finish(next).await;
    assert_eq!(condition(&status, "Ready")["reason"], "Synced", "{status}");
}

#[tokio::test]
async fn a_formatted_panic_message_stays_out_of_status_and_events() {
    let sim = two_robots().await;
    let (client, mut api) = mock_client();
    let r = resource(
        "leaky",
        with_creds(json!({"robotId": ROBOT, "validPeriod": 7})),
    );
    let ctx = context(client, &sim, &[&r]);
    let task = {
        let (r, ctx) = (Arc::new(r.clone()), ctx.clone());
        tokio::spawn(async move {
            let leaky = |_, _| async {
                let key: Result<u64, String> = Err(DEFAULT_SECRET_KEY.to_owned());
                let secs = std::hint::black_box(key).expect("use the key");
                Ok(Action::requeue(std::time::Duration::from_secs(secs)))
            };
            isolated(r, ctx, leaky).await
        })
    };
    let event = api.expect_event(NS, "InternalError").await;
    let status = expect_status(&mut api, &r).await;
    let _ = api.finish(task).await;
    assert_no_secret(&sim, &format!("{status} {}", event.raw));
    assert!(
        condition(&status, "Ready")["message"]
            .as_str()
            .unwrap()
            .contains("its message is withheld"),
        "{status}"
    );
}

#[tokio::test]
async fn a_connection_whose_budget_bypassed_the_schema_stops_its_resources_before_any_call() {
    let sim = two_robots().await;
    let (client, mut api) = mock_client();
    let tiny = connection_resource(&sim, "tiny", json!({"readsPerSecond": 1e-30}));
    let r = resource(
        "kiosk",
        json!({"robotId": ROBOT, "validPeriod": 7, "connectionRef": {"name": "tiny"}}),
    );
    let ctx = context_with(
        client,
        &[&r],
        defaults(&sim),
        ClusterDirectory::of(&[tiny], &[], &[]),
    );
    let task = run_reconcile(&r, &ctx).await;
    expect_secret(&mut api, "tiny-credentials", None).await;
    let event = api.expect_event(NS, "InvalidSpec").await;
    let status = expect_status(&mut api, &r).await;
    api.finish(task).await;
    let ready = condition(&status, "Ready");
    assert_eq!(
        ready["message"],
        "MetaStudioConnection retail/tiny: spec.budget.readsPerSecond: must be 0 (no limit) or from 0.1 to 1000 requests per second, not 1e-30"
    );
    assert_eq!(condition(&status, "Stalled")["status"], "True");
    assert_eq!(event.body["note"], ready["message"]);
    assert_eq!(sim.counters().total_calls(), 0, "no MetaStudio call");
    assert_eq!(ctx.metrics.reconcile_panics.get(), 0);
}

/// `/metrics` as the operator serves it.
fn scrape(ctx: &Context) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &ctx.metrics.registry()).unwrap();
    text
}

/// A connection's status controller reads what a tenant wrote too: a panic
/// there is counted and the connection looked at again later, instead of
/// ending the process.
#[tokio::test]
async fn a_panicking_connection_status_reconcile_is_counted_and_retried() {
    let sim = two_robots().await;
    let (client, _api) = mock_client();
    let ctx = context(client, &sim, &[]);
    let connection = Arc::new(connection_resource(&sim, "broken", json!({})));
    async fn panicking(
        _: Arc<MetaStudioConnection>,
        _: Arc<Context>,
    ) -> Result<Action, std::convert::Infallible> {
        panic!("a bug in the connection's status")
    }
    let action = isolated_status(connection, ctx.clone(), panicking)
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(STATUS_REFRESH));
    assert_eq!(ctx.metrics.reconcile_panics.get(), 1);
}
