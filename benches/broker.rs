//! `cargo bench --bench broker`: the once-code broker against the
//! simulator (in this process), review answers cached. It prints
//!
//! * the latency of CreateOnceCode called directly and through the broker
//!   (sequential requests; p50 and p99), and the difference: what the
//!   broker adds (routing, cached reviews, limits, TLS-less HTTP, JSON);
//! * grants per second with 16 concurrent callers and no quota, and with
//!   the default quota of 20/s, where the quota must be the limit.
//!
//! It asserts nothing about time. Without `--bench` (nextest, `cargo
//! test`) it runs a smoke pass that checks every answer is a grant.

use metastudio_operator::broker::contract::Denial;
use metastudio_operator::broker::issuer::Issuer;
use metastudio_operator::broker::limits::{Limits, ReviewBudget};
use metastudio_operator::broker::metrics::BrokerMetrics;
use metastudio_operator::broker::pipeline::Broker;
use metastudio_operator::broker::review::{Caller, Reviewer};
use metastudio_operator::broker::review_cache::{CachedReviewer, ReviewTtl};
use metastudio_operator::broker::server::{LIMITS, Service};
use metastudio_operator::controller::directory::ClusterDirectory;
use metastudio_operator::engine::host::{HostError, SecretSource};
use metastudio_operator::metastudio::connection::parse_endpoint;
use metastudio_operator::metastudio::rate_limit::RateLimit;
use metastudio_operator::metastudio::{ClientOptions, Connection, Credentials, Transport};
use metastudio_operator::secret::Secret;
use metastudio_operator::simulator::{
    DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, Simulator, SimulatorConfig,
};
use metastudio_operator::telemetry::connections::serve;
use serde_json::json;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Every token is the ServiceAccount bench/backend, allowed everything: the
/// cost of a cached review is what is measured.
struct AllowAll;

impl Reviewer for AllowAll {
    async fn authenticate(&self, _: &str) -> Result<Caller, Denial> {
        Ok(Caller {
            username: "system:serviceaccount:bench:backend".into(),
            uid: "uid".into(),
            groups: vec![],
            extra: BTreeMap::new(),
            namespace: "bench".into(),
            service_account: "backend".into(),
        })
    }

    async fn authorize(&self, _: &Caller, _: &str) -> Result<(), Denial> {
        Ok(())
    }
}

/// The connection's Secret, in memory.
struct Credential;

impl SecretSource for Credential {
    async fn secret_data(
        &self,
        _: &str,
        _: &str,
    ) -> Result<Option<BTreeMap<String, Secret>>, HostError> {
        Ok(Some(BTreeMap::from([
            ("accessKey".to_owned(), Secret::new(DEFAULT_ACCESS_KEY)),
            ("secretKey".to_owned(), Secret::new(DEFAULT_SECRET_KEY)),
        ])))
    }
}

fn options() -> ClientOptions {
    ClientOptions {
        pacing: metastudio_operator::metastudio::pacing::Pacing::UNLIMITED,
        ..ClientOptions::default()
    }
}

/// A broker for connection bench/main on port 0; its URL.
async fn broker(sim: &Simulator, quota: RateLimit) -> String {
    let connection = serde_json::from_value(json!({"apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "MetaStudioConnection",
        "metadata": {"name": "main", "namespace": "bench"},
        "spec": {"endpoint": sim.endpoint(), "projectId": sim.project_id(), "credentialsSecretRef": {"name": "main"}}}))
    .unwrap();
    let unlimited = RateLimit::UNLIMITED;
    let service = Service {
        broker: Broker {
            reviewer: CachedReviewer::new(
                AllowAll,
                ReviewTtl::default(),
                ReviewBudget::new(RateLimit::UNLIMITED),
            ),
            issuer: Issuer {
                directory: ClusterDirectory::of(&[connection], &[], &[]),
                secrets: Credential,
                transport: Transport::new(options()).unwrap(),
            },
            limits: Limits::new(unlimited, quota),
            ready: Arc::new(AtomicBool::new(true)),
            namespaces: vec![],
        },
        metrics: BrokerMetrics::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/v1/oncecodes/main",
        listener.local_addr().unwrap()
    );
    serve(
        listener,
        LIMITS,
        None,
        Arc::new(service),
        std::future::pending(),
    );
    url
}

async fn through_broker(http: &reqwest::Client, url: &str) -> u16 {
    let response = http
        .post(url)
        .bearer_auth("bench-token")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let _ = response.bytes().await;
    status
}

/// `n` sequential calls of `call`; their durations, sorted.
async fn timed<F: std::future::Future<Output = ()>>(
    n: usize,
    mut call: impl FnMut() -> F,
) -> Vec<Duration> {
    let mut took = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        call().await;
        took.push(started.elapsed());
    }
    took.sort();
    took
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Grants and other answers of `callers` concurrent loops for `length`.
async fn throughput(url: &str, callers: usize, length: Duration) -> (u64, u64) {
    let (granted, other) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let deadline = Instant::now() + length;
    let loops: Vec<_> = (0..callers)
        .map(|_| {
            let (url, granted, other) = (url.to_owned(), granted.clone(), other.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                while Instant::now() < deadline {
                    match through_broker(&http, &url).await {
                        200 => granted.fetch_add(1, Ordering::Relaxed),
                        _ => other.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    for handle in loops {
        handle.await.unwrap();
    }
    (
        granted.load(Ordering::Relaxed),
        other.load(Ordering::Relaxed),
    )
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

async fn report(requests: usize, seconds: u64) {
    let sim = Simulator::start(SimulatorConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = Transport::new(options()).unwrap().client(
        Connection::new(
            parse_endpoint(&sim.endpoint()).unwrap(),
            sim.project_id(),
            Credentials::ak_sk(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY),
            None,
        )
        .unwrap(),
    );
    let url = broker(&sim, RateLimit::UNLIMITED).await;
    let http = reqwest::Client::new();
    // Warm both paths (connections, caches).
    for _ in 0..50 {
        client.once_code().await.unwrap();
        assert_eq!(through_broker(&http, &url).await, 200);
    }
    let direct = timed(requests, || async {
        client.once_code().await.map(|_| ()).unwrap()
    })
    .await;
    let brokered = timed(requests, || async {
        assert_eq!(through_broker(&http, &url).await, 200)
    })
    .await;
    println!("latency, {requests} sequential requests (p50 / p99):");
    println!(
        "  CreateOnceCode directly     {} / {}",
        ms(percentile(&direct, 0.5)),
        ms(percentile(&direct, 0.99))
    );
    println!(
        "  through the broker          {} / {}",
        ms(percentile(&brokered, 0.5)),
        ms(percentile(&brokered, 0.99))
    );
    println!(
        "  the broker adds             {} / {}",
        ms(percentile(&brokered, 0.5).saturating_sub(percentile(&direct, 0.5))),
        ms(percentile(&brokered, 0.99).saturating_sub(percentile(&direct, 0.99)))
    );
    let length = Duration::from_secs(seconds);
    let (granted, other) = throughput(&url, 16, length).await;
    println!(
        "throughput, 16 callers for {seconds} s, no quota: {:.0} grants/s ({other} other answers)",
        granted as f64 / length.as_secs_f64()
    );
    let quota = RateLimit {
        per_second: 20.0,
        burst: 20,
    };
    let limited = broker(&sim, quota).await;
    let (granted, other) = throughput(&limited, 16, length).await;
    println!(
        "throughput, 16 callers for {seconds} s, quota 20/s (burst 20): {:.1} grants/s, {other} answered 429 (bound: {:.1}/s)",
        granted as f64 / length.as_secs_f64(),
        (20.0 * length.as_secs_f64() + 20.0) / length.as_secs_f64()
    );
}

async fn smoke() -> Result<(), String> {
    let sim = Simulator::start(SimulatorConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = broker(&sim, RateLimit::UNLIMITED).await;
    let http = reqwest::Client::new();
    for _ in 0..20 {
        let status = through_broker(&http, &url).await;
        if status != 200 {
            return Err(format!("the broker answered {status}, not 200"));
        }
    }
    println!("broker smoke: 20 grants");
    Ok(())
}

fn main() -> ExitCode {
    metastudio_operator::tls::install_crypto_provider();
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if has("--list") {
        if !has("--ignored") {
            println!("broker_smoke: test");
        }
        return ExitCode::SUCCESS;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if has("--bench") {
        runtime.block_on(report(2000, 5));
        return ExitCode::SUCCESS;
    }
    match runtime.block_on(smoke()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("broker: {message}");
            ExitCode::FAILURE
        }
    }
}
