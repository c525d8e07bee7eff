//! Scenario w: a tenant's hostile budget against a real API server. The
//! current CRD refuses `budget: {readsPerSecond: 1e-30}` and names the
//! field; a CRD older than the operator (a Helm upgrade leaves `crds/`
//! alone) stores it, and then the operator stays up: the ActivationCodes
//! of that connection are `InvalidSpec` naming the field, with no
//! MetaStudio call, and another namespace's ActivationCode created
//! afterwards becomes Ready.

use crate::common::offline::fleet_seed;
use crate::e2e::chart::apply_object;
use crate::e2e::cluster::{SUITE_MANAGER, suite_crds};
use crate::e2e::{OperatorProcess, Scenario, eventually};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use metastudio_operator::crd::ActivationCode;
use metastudio_operator::simulator::{DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig};
use serde_json::{Value, json};
use std::time::Duration;

const SINGLE: &[&str] = &["replicaCount=1", "leaderElection.enabled=false"];
const CONNECTION_CRD: &str = "metastudioconnections.metastudio.huaweicloud.com";
const FIELD: &str = "spec.budget.readsPerSecond";

fn connections(s: &Scenario, namespace: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(
        "metastudio.huaweicloud.com",
        "v1alpha1",
        "MetaStudioConnection",
    );
    Api::namespaced_with(
        s.cluster.client.clone(),
        namespace,
        &ApiResource::from_gvk(&gvk),
    )
}

/// The MetaStudioConnection `name` of `namespace` at the simulator, with
/// `budget`, its credentials in Secret `credentials` there.
fn connection(s: &Scenario, namespace: &str, name: &str, budget: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "MetaStudioConnection",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"endpoint": s.sim.endpoint(), "projectId": s.sim.project_id(),
                 "credentialsSecretRef": {"name": "credentials"}, "budget": budget},
    }))
    .unwrap()
}

fn activation_code(namespace: &str, name: &str, robot: &str, connection: &str) -> ActivationCode {
    serde_json::from_value(json!({
        "apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "ActivationCode",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"robotId": robot, "validPeriod": 9, "connectionRef": {"name": connection}},
    }))
    .unwrap()
}

/// The connection CRD as the suite installs it (current), or as a release
/// before the bounds had it (`old`: readsPerSecond only `minimum: 0`).
fn connection_crd(old: bool) -> Value {
    let mut crd = suite_crds(false)
        .into_iter()
        .find(|crd| crd["metadata"]["name"] == CONNECTION_CRD)
        .expect("the suite installs the connection CRD");
    if old {
        let rate = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["budget"]["properties"]["readsPerSecond"];
        assert!(
            rate["anyOf"].is_array(),
            "the current CRD bounds readsPerSecond: {rate}"
        );
        rate.as_object_mut().unwrap().remove("anyOf");
    }
    crd
}

async fn install_crd(client: &kube::Client, crd: &Value) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        CONNECTION_CRD,
        &PatchParams::apply(SUITE_MANAGER).force(),
        &Patch::Apply(crd),
    )
    .await
    .unwrap_or_else(|e| panic!("apply the connection CRD: {e}"));
}

/// Puts the current connection CRD back when dropped, however the test
/// ends: every scenario shares it.
struct RestoreCrd(kube::Client);

impl Drop for RestoreCrd {
    fn drop(&mut self) {
        let client = self.0.clone();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::block_in_place(move || {
            runtime.block_on(install_crd(&client, &connection_crd(false)));
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w_a_hostile_budget_under_an_old_crd_stops_only_its_own_resources() {
    let s = Scenario::with_tenants(
        "budgets",
        fleet_seed(2, 2, 7),
        FaultConfig::default(),
        SINGLE,
        &["other"],
    )
    .await;
    let (ns, other) = (s.ns().to_owned(), s.tenants[0].name.clone());
    for namespace in [&ns, &other] {
        apply_object(
            &s.cluster.client,
            &json!({"apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": "credentials", "namespace": namespace},
                    "stringData": {"accessKey": DEFAULT_ACCESS_KEY, "secretKey": DEFAULT_SECRET_KEY}}),
        )
        .await;
    }
    let tiny = connection(&s, &ns, "tiny", json!({"readsPerSecond": 1e-30}));

    // The current CRD refuses the value and names the field.
    let refused = connections(&s, &ns)
        .create(&PostParams::default(), &tiny)
        .await
        .expect_err("the CRD bounds readsPerSecond");
    println!("the API server refuses readsPerSecond 1e-30: {refused}");
    let text = refused.to_string();
    assert!(
        text.contains(&format!(
            "{FIELD} in body should be greater than or equal to 0.1"
        )),
        "{text}"
    );

    // So do the ActivationCode's counts; its forms within bounds pass.
    let rollout = |max_codes: Value| {
        let mut code = activation_code(&ns, "rollout", "robot-0", "tiny");
        code.spec.reset = Some(
            serde_json::from_value(
                json!({"token": "t", "rollout": {"maxCodes": max_codes, "interval": "1h"}}),
            )
            .unwrap(),
        );
        code
    };
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let codes = |namespace: &str| -> Api<ActivationCode> {
        Api::namespaced(s.cluster.client.clone(), namespace)
    };
    for too_many in [json!(4_294_967_295u64), json!("0%"), json!("100001")] {
        let refused = codes(&ns)
            .create(&dry_run, &rollout(too_many.clone()))
            .await
            .expect_err("maxCodes is bounded");
        assert!(
            refused.to_string().contains("spec.reset.rollout.maxCodes"),
            "{too_many}: {refused}"
        );
    }
    for fine in [json!(100_000), json!("10%"), json!("50")] {
        codes(&ns)
            .create(&dry_run, &rollout(fine.clone()))
            .await
            .unwrap_or_else(|e| panic!("maxCodes {fine}: {e}"));
    }
    let explain = eventually(
        "kubectl explain to know the budget's bounds",
        Duration::from_secs(60),
        || async {
            let output = crate::e2e::tools::kubectl()
                .args(["explain", "metastudioconnection.spec.budget.readsPerSecond"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.contains("from 0.1 to 1000").then_some(text)
        },
    )
    .await;
    println!("{explain}");

    // A CRD from before the bounds stores it. Other scenarios install the
    // current CRD as they start, so apply the old one until the create
    // gets through.
    let _restore = RestoreCrd(s.cluster.client.clone());
    eventually(
        "the old CRD to store readsPerSecond 1e-30",
        Duration::from_secs(60),
        || {
            let (s, ns, tiny) = (&s, &ns, &tiny);
            async move {
                install_crd(&s.cluster.client, &connection_crd(true)).await;
                connections(s, ns)
                    .create(&PostParams::default(), tiny)
                    .await
                    .ok()
            }
        },
    )
    .await;

    let mut operator = OperatorProcess::start(&s.replica("budgets"));
    codes(&ns)
        .create(
            &PostParams::default(),
            &activation_code(&ns, "stuck", "robot-0", "tiny"),
        )
        .await
        .unwrap();
    let stuck = s.ready_reason("stuck", "InvalidSpec").await;
    let ready = stuck.status.unwrap().condition("Ready").unwrap().clone();
    println!("stuck: {}: {}", ready.reason, ready.message);
    assert!(ready.message.contains(FIELD), "{}", ready.message);
    assert!(
        ready.message.contains("MetaStudioConnection"),
        "{}",
        ready.message
    );
    assert_eq!(s.sim.counters().total_calls(), 0, "no MetaStudio call");

    // Another namespace, afterwards: unaffected.
    apply_object(
        &s.cluster.client,
        &serde_json::to_value(connection(&s, &other, "good", json!({}))).unwrap(),
    )
    .await;
    codes(&other)
        .create(
            &PostParams::default(),
            &activation_code(&other, "fine", "robot-1", "good"),
        )
        .await
        .unwrap();
    eventually(
        "the other namespace's ActivationCode to be Ready",
        Duration::from_secs(120),
        || {
            let codes = codes(&other);
            async move {
                let current = codes.get("fine").await.ok()?;
                let ready = current.status?.condition("Ready")?.clone();
                (ready.status == "True").then_some(())
            }
        },
    )
    .await;

    assert!(
        operator.running(),
        "the operator stays up:\n{}",
        operator.log()
    );
    assert_eq!(
        operator.metric("metastudio_reconcile_panics_total").await,
        0.0
    );
    assert!(!operator.log().contains("panicked"), "{}", operator.log());
    let counters = s.sim.counters();
    assert!(
        counters.calls_of(metastudio_operator::metastudio::Operation::ListActiveCode) > 0,
        "the other namespace was served"
    );
    s.assert_clean_logs(&[&operator], &s.secrets_to_hide());
}
