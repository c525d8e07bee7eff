//! `run` against an in-memory API: /readyz turns ready only after the caches
//! synced, /metrics carries every series the README lists, status writes do
//! not trigger more reconciles, and the gauges drop deleted resources.

mod common;

use common::fake_api::{FakeCluster, Operator, activation_code, eventually, get};
use common::{ROBOT, seed_yaml};
use metastudio_operator::metastudio::Operation;
use metastudio_operator::simulator::{FaultConfig, Simulator, SimulatorConfig};
use serde_json::json;
use std::time::Duration;

const OTHER_ROBOT: &str = "5e65d1c0ffee556249aa00bb11cc2265";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_after_sync_metrics_carry_every_series_and_gauges_follow_the_cache() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    let mut config = SimulatorConfig {
        seed: Some(seed_yaml(&format!(
            "spec: {{robots: [{{robotId: {ROBOT}, generate: {{count: 3, validPeriod: 3}}}}, {{robotId: {OTHER_ROBOT}, generate: {{count: 2, validPeriod: 5}}}}]}}"
        ))),
        faults: FaultConfig {
            throttle_rate: 0.5,
            retry_after_secs: 0,
            operations: [Operation::UpdateActiveCode].into(),
            seed: 1,
            ..Default::default()
        },
        ..SimulatorConfig::default()
    };
    config
        .accepted
        .tokens
        .push(common::fake_api::RUN_TOKEN.into());
    let sim = Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();

    let cluster = FakeCluster::new(
        vec![
            activation_code(
                "retail",
                "lobby",
                json!({"robotId": ROBOT, "validPeriod": 9}),
            ),
            activation_code(
                "retail",
                "orphan",
                json!({"robotId": "another-robot", "validPeriod": 1, "connection": {"credentialsSecretRef": {"name": "missing"}}}),
            ),
            activation_code(
                "retail",
                "watcher",
                json!({"robotId": OTHER_ROBOT, "validPeriod": 7, "managementPolicy": "Observe"}),
            ),
        ],
        vec![],
    );
    cluster.hold_lists(true);
    let operator = Operator::start(
        &sim,
        cluster.client("operator"),
        &["--read-rate", "20", "--rate-burst", "1"],
    )
    .await;

    assert_eq!(get(&operator.url("/healthz")).await.0, 200);
    assert_eq!(
        get(&operator.url("/readyz")).await.0,
        503,
        "not ready before the caches synced"
    );
    cluster.hold_lists(false);
    eventually("/readyz", async || {
        get(&operator.url("/readyz")).await.0 == 200
    })
    .await;

    eventually("every resource reconciled", async || {
        let body = operator.metrics().await;
        body.contains(r#"metastudio_reconciles_total{reason="Synced"}"#)
            && body.contains(r#"metastudio_reconciles_total{reason="Observing"}"#)
            && body.contains(r#"reason="CredentialsNotFound""#)
    })
    .await;
    // Every status write went back to the watch, as an API server sends it;
    // none of them may start another reconcile (they would list the remote
    // codes again, in a loop).
    eventually("the status events were delivered", async || {
        cluster.queued_events() == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sim.counters().calls_of(Operation::ListActiveCode),
        2,
        "one list per resource with credentials: status writes trigger nothing"
    );

    let body = operator.metrics().await;
    for series in [
        r#"metastudio_reconciles_total{reason="Synced"} 1"#,
        r#"metastudio_reconciles_total{reason="Observing"} 1"#,
        r#"metastudio_reconcile_errors_total{reason="CredentialsNotFound"}"#,
        "metastudio_reconcile_duration_seconds_bucket",
        r#"metastudio_api_calls_total{operation="ListActiveCode",status="200"} 2"#,
        r#"metastudio_api_calls_total{operation="UpdateActiveCode",status="200"} 3"#,
        r#"metastudio_code_changes_total{operation="UpdateActiveCode",outcome="done"} 3"#,
        "metastudio_api_retries_total{",
        "metastudio_api_call_duration_seconds_bucket",
        "metastudio_rate_limit_waits_total",
        "metastudio_rate_limit_wait_seconds_total",
        "metastudio_codes_managed 5\n",
        "metastudio_drift 2\n",
        "metastudio_resources{ready=\"True\"} 2\n",
        "metastudio_resources{ready=\"False\"} 1\n",
        "metastudio_resources{ready=\"Unknown\"} 0\n",
        "metastudio_leader 1\n",
    ] {
        assert!(body.contains(series), "missing {series} in:\n{body}");
    }
    assert!(
        !body.contains("metastudio_rate_limit_waits_total 0\n"),
        "the 1-call burst made calls wait:\n{body}"
    );

    // kube-runtime never reconciles a deleted object: the gauges must still
    // drop it.
    cluster.delete_resource("retail", "orphan");
    eventually("the deleted resource leaves the gauges", async || {
        operator
            .metrics()
            .await
            .contains("metastudio_resources{ready=\"False\"} 0\n")
    })
    .await;
    cluster.delete_resource("retail", "watcher");
    eventually("the observed drift leaves with its resource", async || {
        let body = operator.metrics().await;
        body.contains("metastudio_drift 0\n")
            && body.contains("metastudio_codes_managed 3\n")
            && body.contains("metastudio_resources{ready=\"True\"} 1\n")
    })
    .await;

    operator.stop().await.expect("run ends cleanly");
}

/// The metrics port under idle clients: more connections than its cap that
/// never send a request do not keep a probe out (the idle ones make room),
/// and the server closes every one of them. Paused time: the deadlines are
/// the server's own timers, not the machine's speed.
#[tokio::test(start_paused = true)]
async fn the_metrics_port_closes_idle_connections_and_a_probe_gets_past_its_cap() {
    use metastudio_operator::telemetry::http::{Health, LIMITS, serve};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    let health = std::sync::Arc::new(Health::default());
    let registry = std::sync::Arc::new(prometheus_client::registry::Registry::default());
    let (addr, _server) = serve("127.0.0.1:0".parse().unwrap(), registry, health)
        .await
        .unwrap();
    let mut idle = Vec::new();
    for _ in 0..LIMITS.max_connections + 64 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let started = tokio::time::Instant::now();
    let mut probe = TcpStream::connect(addr).await.unwrap();
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    probe.read_to_end(&mut answer).await.unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200 OK"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        started.elapsed() < LIMITS.head_timeout,
        "idle connections made room before any of them timed out"
    );
    let every_one_closed = async {
        for stream in &mut idle {
            let mut buf = [0; 64];
            assert!(matches!(stream.read(&mut buf).await, Ok(0) | Err(_)));
        }
    };
    tokio::time::timeout(Duration::from_secs(600), every_one_closed)
        .await
        .expect("the server closed every idle connection");
}
