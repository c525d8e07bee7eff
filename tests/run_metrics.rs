//! `run` against an in-memory API: /readyz turns ready only after the caches
//! synced, and /metrics carries every series the README lists.

mod common;

use clap::Parser;
use common::fake_api::{self, Reply, status};
use common::{ROBOT, robot_seed};
use metastudio_operator::cli::run::{RunArgs, run};
use metastudio_operator::simulator::{FaultConfig, Simulator, SimulatorConfig};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    args: RunArgs,
}

fn item(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "ActivationCode",
        "metadata": {"name": name, "namespace": "retail", "uid": format!("uid-{name}"), "generation": 1,
                     "resourceVersion": "7", "creationTimestamp": "2026-11-01T00:00:00Z"},
        "spec": spec,
    })
}

fn items() -> Vec<Value> {
    vec![
        item("lobby", json!({"robotId": ROBOT, "validPeriod": 9})),
        item(
            "orphan",
            json!({"robotId": "another-robot", "validPeriod": 1, "connection": {"credentialsSecretRef": {"name": "missing"}}}),
        ),
    ]
}

fn api(released: Arc<AtomicBool>) -> kube::Client {
    fake_api::client_with(move |method, path, query, _content_type, body| {
        let watch = query.contains("watch=true");
        match (method, path) {
            (_, _) if watch => Reply::Hold,
            ("GET", "/apis/metastudio.huaweicloud.com/v1alpha1/activationcodes") => {
                if !released.load(Ordering::SeqCst) {
                    return Reply::Later;
                }
                Reply::Now((
                    200,
                    json!({"apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "ActivationCodeList",
                                        "metadata": {"resourceVersion": "7"}, "items": items()}),
                ))
            }
            ("GET", "/api/v1/secrets") => Reply::Now((
                200,
                json!({"apiVersion": "v1", "kind": "SecretList", "metadata": {"resourceVersion": "3"}, "items": []}),
            )),
            ("GET", p) if p.starts_with("/api/v1/namespaces/retail/secrets/") => {
                Reply::Now(status(404, "NotFound", "not found"))
            }
            ("POST", "/apis/events.k8s.io/v1/namespaces/retail/events") => Reply::Now((201, body)),
            ("PATCH", p) if p.starts_with("/apis/events.k8s.io/v1/namespaces/retail/events/") => {
                Reply::Now((200, body))
            }
            ("PATCH", p) if p.ends_with("/status") => {
                let name = p.split('/').rev().nth(1).unwrap_or_default();
                let mut object = items()
                    .into_iter()
                    .find(|i| i["metadata"]["name"] == name)
                    .unwrap();
                object["status"] = body["status"].clone();
                Reply::Now((200, object))
            }
            _ => Reply::Now(status(404, "NotFound", "not served by the fake")),
        }
    })
}

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(response) => (
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        ),
        Err(_) => (0, String::new()),
    }
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_after_sync_and_metrics_carry_every_series() {
    metastudio_operator::tls::install_crypto_provider();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    let mut config = SimulatorConfig {
        seed: Some(robot_seed(3, 3)),
        faults: FaultConfig {
            throttle_rate: 0.5,
            retry_after_secs: 0,
            operations: [metastudio_operator::metastudio::Operation::UpdateActiveCode].into(),
            seed: 1,
            ..Default::default()
        },
        ..SimulatorConfig::default()
    };
    config.accepted.tokens.push("run-test-token".into());
    let sim = Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();

    let released = Arc::new(AtomicBool::new(false));
    let flags = Flags::try_parse_from([
        "run",
        "--metrics-addr",
        "127.0.0.1:0",
        "--endpoint",
        &sim.endpoint(),
        "--project-id",
        sim.project_id(),
        "--auth-token",
        "run-test-token",
        "--rate-limit",
        "20",
        "--rate-burst",
        "1",
    ])
    .unwrap();
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let operator = tokio::spawn(run(
        flags.args,
        api(released.clone()),
        shutdown,
        move |addr| {
            let _ = addr_tx.send(addr);
        },
    ));
    let base = format!("http://{}", addr_rx.await.unwrap());

    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    assert_eq!(
        get(&format!("{base}/readyz")).await.0,
        503,
        "not ready before the caches synced"
    );
    released.store(true, Ordering::SeqCst);
    eventually("/readyz", async || {
        get(&format!("{base}/readyz")).await.0 == 200
    })
    .await;

    let metrics_url = format!("{base}/metrics");
    eventually("both resources reconciled", async || {
        let body = get(&metrics_url).await.1;
        body.contains(r#"metastudio_reconciles_total{reason="Synced"}"#)
            && body.contains(r#"reason="CredentialsNotFound""#)
    })
    .await;
    let body = get(&metrics_url).await.1;
    for series in [
        r#"metastudio_reconciles_total{reason="Synced"} 1"#,
        r#"metastudio_reconcile_errors_total{reason="CredentialsNotFound"}"#,
        "metastudio_reconcile_duration_seconds_bucket",
        r#"metastudio_api_calls_total{operation="ListActiveCode",status="200"}"#,
        r#"metastudio_api_calls_total{operation="UpdateActiveCode",status="200"} 3"#,
        "metastudio_api_retries_total{",
        "metastudio_api_call_duration_seconds_bucket",
        "metastudio_rate_limit_waits_total",
        "metastudio_rate_limit_wait_seconds_total",
        "metastudio_codes_managed 3",
        "metastudio_drift_found_total 3",
        r#"metastudio_resources{ready="True"} 1"#,
        r#"metastudio_resources{ready="False"} 1"#,
        "metastudio_leader 1",
    ] {
        assert!(body.contains(series), "missing {series} in:\n{body}");
    }
    assert!(
        !body.contains("metastudio_rate_limit_waits_total 0\n"),
        "the 1-call burst made calls wait:\n{body}"
    );

    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(30), operator)
        .await
        .expect("graceful shutdown")
        .unwrap()
        .expect("run ends cleanly");
}
