//! Scenario k: the shipped alerts in a real Prometheus that scrapes the
//! operator under test (rule file deploy/prometheus/, `for:` shortened from
//! minutes to seconds in the test copy only).
//!
//! A healthy resource is scraped first; then a resource whose Secret the
//! simulator rejects. MetaStudioCredentialsRejected must go pending and
//! fire for exactly that resource, with its summary and runbook, while no
//! other alert is active, pending or firing: the healthy resource's series
//! had been in Prometheus longer than CredentialsRejected's shortened
//! `for:` when that fired, so any rule that matched it would be active by
//! then (pending at least). Fixing the Secret resolves
//! the alert. Killing the operator then fires MetaStudioOperatorAbsent.
//! Every dashboard expression evaluates in that Prometheus, and the
//! overview panels return data. The times printed are measurements, not
//! assertions.

use crate::common::offline::fleet_seed;
use crate::e2e::prometheus::{Alert, JOB};
use crate::e2e::{OperatorProcess, PrometheusProcess, Scenario, eventually};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams, PostParams};
use metastudio_operator::simulator::{DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const SINGLE: &[&str] = &["replicaCount=1", "leaderElection.enabled=false"];
/// How long an alert may take to show up (scrape 1 s, evaluation 1 s,
/// shortened `for:` 5 s, and a shared machine).
const ALERT_WAIT: Duration = Duration::from_secs(90);
const REJECTED: &str = "MetaStudioCredentialsRejected";
const ABSENT: &str = "MetaStudioOperatorAbsent";
const DASHBOARD: &str = "deploy/grafana/metastudio-operator-dashboard.json";
/// Panels whose series this scenario certainly produces.
const PANELS_WITH_DATA: [&str; 6] = [
    "Replicas leading",
    "Targets up",
    "Resources by Ready",
    "Codes managed",
    "Reconciles by reason",
    "API calls by operation and status",
];

/// The active alerts named `name`, once there are some in `state`.
async fn alert_in_state(prometheus: &PrometheusProcess, name: &str, state: &str) -> Vec<Alert> {
    eventually(
        &format!("{name} to be {state} in Prometheus"),
        ALERT_WAIT,
        || async {
            let alerts = prometheus.alerts().await?;
            let found: Vec<Alert> = alerts.into_iter().filter(|a| a.name == name).collect();
            found.iter().any(|a| a.state == state).then_some(found)
        },
    )
    .await
}

/// Waits until Prometheus holds a sample of `promql`.
async fn scraped(prometheus: &PrometheusProcess, promql: &str) {
    eventually(
        &format!("Prometheus to hold {promql}"),
        ALERT_WAIT,
        || async { (!prometheus.query(promql).await?.is_empty()).then_some(()) },
    )
    .await;
}

async fn create_secret(s: &Scenario, name: &str, access_key: &str, secret_key: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "stringData": {"accessKey": access_key, "secretKey": secret_key},
    }))
    .unwrap();
    s.secrets()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap_or_else(|e| panic!("create Secret {name}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k_a_real_prometheus_fires_credentials_rejected_for_that_resource_only() {
    let s = Scenario::start(
        "alerts",
        fleet_seed(2, 2, 7),
        FaultConfig::default(),
        SINGLE,
    )
    .await;
    let mut operator = OperatorProcess::start(&s.replica("alerts-0"));
    let prometheus = PrometheusProcess::start(operator.metrics_addr().await).await;
    let ns = s.ns().to_owned();

    // Must not fire: a healthy resource, scraped before the rejected one.
    s.apply(&s.manifest("kiosk", "robot-0", json!({}))).await;
    s.ready("kiosk").await;
    scraped(
        &prometheus,
        &format!(
            r#"metastudio_resource_condition{{namespace="{ns}",name="kiosk",reason="Synced"}}"#
        ),
    )
    .await;

    // Must fire: the simulator rejects this Secret's keys (401).
    create_secret(&s, "rejected", "NOTAKEYTHESIMULATORKNOWS", "wrong").await;
    let mut hall = s.manifest("hall", "robot-1", json!({}));
    hall["spec"]["connection"]["credentialsSecretRef"] = json!({"name": "rejected"});
    let applied = Instant::now();
    s.apply(&hall).await;
    s.ready_reason("hall", "CredentialsRejected").await;
    let reported = applied.elapsed();
    alert_in_state(&prometheus, REJECTED, "pending").await;
    let pending = applied.elapsed();
    let firing = alert_in_state(&prometheus, REJECTED, "firing").await;
    let fired = applied.elapsed();
    println!(
        "measured: {REJECTED} for {ns}/hall: Ready=CredentialsRejected after {reported:?}, pending after {pending:?}, firing after {fired:?} (for: 5s in the test copy)"
    );
    assert_eq!(firing.len(), 1, "only hall's alert: {firing:#?}");
    let alert = &firing[0];
    assert_eq!(
        (&alert.labels["namespace"], &alert.labels["name"]),
        (&json!(ns), &json!("hall")),
        "{alert:#?}"
    );
    assert_eq!(
        alert.annotations["summary"],
        json!(format!(
            "ActivationCode {ns}/hall: MetaStudio rejects its credentials"
        ))
    );
    assert!(
        alert.annotations["runbook_url"]
            .as_str()
            .is_some_and(|u| u.ends_with("README.md#metastudiocredentialsrejected")),
        "{alert:#?}"
    );
    let all = prometheus.alerts().await.unwrap();
    let others: Vec<&Alert> = all.iter().filter(|a| a.name != REJECTED).collect();
    assert!(others.is_empty(), "no other alert is active: {others:#?}");
    check_dashboard(&prometheus).await;

    // The fixed Secret is tried at once; the alert resolves.
    let fixed =
        json!({"stringData": {"accessKey": DEFAULT_ACCESS_KEY, "secretKey": DEFAULT_SECRET_KEY}});
    let fixed_at = Instant::now();
    s.secrets()
        .patch("rejected", &PatchParams::default(), &Patch::Merge(&fixed))
        .await
        .unwrap();
    s.ready("hall").await;
    eventually(&format!("{REJECTED} to resolve"), ALERT_WAIT, || async {
        let alerts = prometheus.alerts().await?;
        alerts.iter().all(|a| a.name != REJECTED).then_some(())
    })
    .await;
    println!(
        "measured: {REJECTED} resolved {:?} after the Secret was fixed",
        fixed_at.elapsed()
    );
    s.assert_clean_logs(&[&operator], &s.secrets_to_hide());

    // The operator gone: its target is down and OperatorAbsent fires.
    operator.kill_9();
    let killed = Instant::now();
    let absent = alert_in_state(&prometheus, ABSENT, "firing").await;
    println!(
        "measured: {ABSENT} firing {:?} after kill -9 of the operator (for: 5s in the test copy)",
        killed.elapsed()
    );
    assert!(
        absent[0].annotations["summary"]
            .as_str()
            .is_some_and(|s| s.contains(&format!("job=\"{JOB}\""))),
        "{absent:#?}"
    );
}

/// Every dashboard expression evaluates in the real Prometheus, and the
/// panels this scenario feeds return data.
async fn check_dashboard(prometheus: &PrometheusProcess) {
    let text =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(DASHBOARD))
            .unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let mut empty = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or("");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = grafana_to_promql(target["expr"].as_str().unwrap());
            let result = prometheus
                .query(&expr)
                .await
                .unwrap_or_else(|| panic!("panel {title:?}: Prometheus refused {expr}"));
            if result.is_empty() {
                empty.push(title.to_owned());
            }
        }
    }
    println!("dashboard: panels without data in this scenario: {empty:?}");
    for title in PANELS_WITH_DATA {
        assert!(
            !empty.iter().any(|t| t == title),
            "panel {title:?} has no data although the scenario produced its series"
        );
    }
}

/// Grafana's variables, as an "All" selection resolves them.
fn grafana_to_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$job", ".+")
        .replace("$namespace", ".*")
}
