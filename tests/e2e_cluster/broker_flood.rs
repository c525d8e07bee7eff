//! Scenario v: the once-code broker and the metrics port under junk,
//! against the real API server.
//!
//! While 3,000 requests with random bearer tokens arrive 40 at a time, a
//! caller the broker served before asks for a code every 100 ms and a
//! prober asks `/healthz`; then 1,000 connections to the metrics port send
//! nothing. The API server's own `apiserver_request_total` counts the
//! TokenReviews the flood cost.
//!
//! The test asserts what holds by construction: the reviews stay within
//! the budget (rate x flood time + burst: a token bucket is a hard cap),
//! the served caller gets its codes (its token is cached, and known after
//! that, so the budget never holds it up), every probe answers 200, the
//! leader keeps its Lease, and the server closes every idle connection.
//! The times (grant latency, probe latency, how long the idle connections
//! lasted) are figures: the ignored [`v_bench_broker_flood`]
//! (`scripts/bench-broker-flood`) prints them, medians of three runs.

use crate::e2e::Scenario;
use crate::e2e::broker::{BrokerReplica, ask, serve, tokenreviews_served};
use futures::StreamExt;
use metastudio_operator::simulator::FaultConfig;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

const FLOOD: usize = 3000;
const AT_ONCE: usize = 40;
const IDLE: usize = 1000;
/// The chart's default review budget (broker.reviewRate, reviewBurst).
const REVIEW_RATE: f64 = 20.0;
const REVIEW_BURST: f64 = 20.0;
/// TokenReviews others may cause in the cluster meanwhile (other
/// scenarios' brokers run in parallel), and the served caller's own
/// renewal every 10 s.
const OTHERS: f64 = 20.0;
/// How long the closing of the idle connections is waited for (the
/// metrics port closes them after 10 s).
const IDLE_WAIT: Duration = Duration::from_secs(300);

/// What one flood and one idle wave came to.
struct Figures {
    flood: Duration,
    reviews: f64,
    refused_unreviewed: usize,
    granted: usize,
    asked: usize,
    grant_latencies: Vec<Duration>,
    probes_ok: usize,
    probe_latencies: Vec<Duration>,
    idle_closed_after: Duration,
    idle_probe_latencies: Vec<Duration>,
}

impl Figures {
    fn reviews_per_second(&self) -> f64 {
        self.reviews / self.flood.as_secs_f64()
    }
}

/// A replica of the chart's defaults (leader election on, the default
/// review budget) whose caller bucket does not limit the served caller.
async fn start() -> (Scenario, BrokerReplica) {
    let s = Scenario::start(
        "flood",
        crate::common::robot_seed(1, 7),
        FaultConfig::default(),
        &[
            "replicaCount=1",
            "broker.enabled=true",
            "broker.tls.secretName=broker-tls",
        ],
    )
    .await;
    let mut broker = serve(
        &s,
        &[
            ("BROKER_CALLER_RATE", "100"),
            ("BROKER_CALLER_BURST", "100"),
        ],
    )
    .await;
    assert_eq!(broker.first.0, 200, "{}", broker.first.2);
    let mut leading = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !leading {
        assert!(
            Instant::now() < deadline,
            "the replica never took the Lease"
        );
        leading = broker.operator.metric("metastudio_leader").await == 1.0;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (s, broker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v_junk_tokens_cost_reviews_within_the_budget_and_served_callers_keep_their_codes() {
    let (s, mut broker) = start().await;
    let figures = measure(&s, &mut broker, 1).await;
    let bound = REVIEW_RATE * figures.flood.as_secs_f64() + REVIEW_BURST + OTHERS;
    assert!(
        figures.reviews <= bound,
        "{} TokenReviews in {:?} of flood: more than the budget allows ({bound:.0})",
        figures.reviews,
        figures.flood
    );
    assert!(figures.reviews >= 1.0, "the API server's counter moved");
    assert!(
        figures.refused_unreviewed as f64 >= FLOOD as f64 - bound,
        "{} junk requests refused without a review",
        figures.refused_unreviewed
    );
    assert!(
        figures.granted * 10 >= figures.asked * 9,
        "the served caller got {} codes of {} asked",
        figures.granted,
        figures.asked
    );
    assert_eq!(figures.probes_ok, figures.probe_latencies.len(), "/healthz");
    assert_eq!(
        broker.operator.metric("metastudio_leader").await,
        1.0,
        "the replica kept its Lease through the flood"
    );
    let mut hidden = s.secrets_to_hide();
    hidden.push(broker.token.clone());
    s.assert_clean_logs(&[&broker.operator], &hidden);
}

/// The figures: three runs against one replica, and their medians.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a bench: scripts/bench-broker-flood runs it and prints its figures"]
async fn v_bench_broker_flood() {
    let (s, mut broker) = start().await;
    let mut runs = Vec::new();
    for run in 1..=3 {
        let figures = measure(&s, &mut broker, run).await;
        print_run(run, &figures);
        runs.push(figures);
    }
    print_medians(&runs);
}

/// One flood, then one wave of idle connections; `run` seeds the tokens.
async fn measure(s: &Scenario, broker: &mut BrokerReplica, run: u64) -> Figures {
    let metrics = broker.operator.metrics_addr().await;
    let before = tokenreviews_served(&s.cluster).await;
    let done = Arc::new(AtomicBool::new(false));
    let caller = (
        broker.client.clone(),
        broker.url.clone(),
        broker.token.clone(),
    );
    let served = tokio::spawn(served_caller(caller, done.clone()));
    let prober = tokio::spawn(prober(metrics, done.clone()));
    let started = Instant::now();
    let statuses = flood(broker, run).await;
    let flood = started.elapsed();
    done.store(true, Ordering::SeqCst);
    let reviews = tokenreviews_served(&s.cluster).await - before;
    let (granted, grant_latencies) = served.await.unwrap();
    let (probes_ok, probe_latencies) = prober.await.unwrap();
    let (idle_closed_after, idle_probe_latencies) = idle_wave(metrics).await;
    Figures {
        flood,
        reviews,
        refused_unreviewed: statuses
            .iter()
            .filter(|(status, reason)| *status == 429 && reason == "ReviewRateLimited")
            .count(),
        asked: grant_latencies.len(),
        granted,
        grant_latencies,
        probes_ok,
        probe_latencies,
        idle_closed_after,
        idle_probe_latencies,
    }
}

/// FLOOD requests with random JWT-shaped tokens, AT_ONCE at a time: each
/// answer's status and reason.
async fn flood(broker: &BrokerReplica, run: u64) -> Vec<(u16, String)> {
    let mut rng = StdRng::seed_from_u64(run);
    let tokens: Vec<String> = (0..FLOOD)
        .map(|_| {
            format!(
                "eyJhbGciOiJSUzI1NiIsImtpZCI6IiJ9.{:032x}.{:064x}",
                rng.random::<u128>(),
                rng.random::<u128>()
            )
        })
        .collect();
    futures::stream::iter(tokens)
        .map(|token| {
            let (client, url) = (broker.client.clone(), broker.url.clone());
            async move {
                let (status, _, body) = ask(&client, &url, &token).await;
                (status, body["reason"].as_str().unwrap_or("").to_owned())
            }
        })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await
}

/// The caller served before: a request every 100 ms until `done`; the
/// codes it got and each request's latency.
async fn served_caller(
    (client, url, token): (reqwest::Client, String, String),
    done: Arc<AtomicBool>,
) -> (usize, Vec<Duration>) {
    let (mut granted, mut latencies) = (0, Vec::new());
    while !done.load(Ordering::SeqCst) {
        let started = Instant::now();
        let (status, _, _) = ask(&client, &url, &token).await;
        latencies.push(started.elapsed());
        granted += usize::from(status == 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (granted, latencies)
}

/// `/healthz` every 100 ms until `done`: the 200s and each latency.
async fn prober(metrics: SocketAddr, done: Arc<AtomicBool>) -> (usize, Vec<Duration>) {
    let (mut ok, mut latencies) = (0, Vec::new());
    while !done.load(Ordering::SeqCst) {
        let (status, took) = probe(metrics).await;
        ok += usize::from(status == 200);
        latencies.push(took);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (ok, latencies)
}

/// One `/healthz` on a fresh connection, as the kubelet probes.
async fn probe(metrics: SocketAddr) -> (u16, Duration) {
    let started = Instant::now();
    let (status, _) = crate::common::fake_api::get(&format!("http://{metrics}/healthz")).await;
    (status, started.elapsed())
}

/// IDLE connections to the metrics port that send nothing: how long until
/// the server had closed every one, and the latencies of probes meanwhile.
async fn idle_wave(metrics: SocketAddr) -> (Duration, Vec<Duration>) {
    let started = Instant::now();
    let mut waits = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        let mut stream = tokio::net::TcpStream::connect(metrics).await.unwrap();
        waits.push(tokio::spawn(async move {
            let mut buf = [0; 64];
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        }));
    }
    let closed = Arc::new(AtomicBool::new(false));
    let probes = tokio::spawn({
        let closed = closed.clone();
        async move {
            let mut latencies = Vec::new();
            while !closed.load(Ordering::SeqCst) {
                let (status, took) = probe(metrics).await;
                assert_eq!(status, 200, "/healthz beside {IDLE} idle connections");
                latencies.push(took);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            latencies
        }
    });
    let all_closed = futures::future::join_all(waits);
    tokio::time::timeout(IDLE_WAIT, all_closed)
        .await
        .unwrap_or_else(|_| {
            panic!("the metrics port left idle connections open for {IDLE_WAIT:?}")
        });
    let took = started.elapsed();
    closed.store(true, Ordering::SeqCst);
    (took, probes.await.unwrap())
}

fn percentile(latencies: &[Duration], p: f64) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn print_run(run: u64, f: &Figures) {
    println!(
        "run {run}: flood {:.2} s, {} TokenReviews ({:.1}/s of flood; budget {REVIEW_RATE}/s + {REVIEW_BURST}), {} of {FLOOD} refused unreviewed; \
         served caller {}/{} codes, p50 {} p95 {} max {}; /healthz during the flood p95 {} max {} ({} probes); \
         {IDLE} idle metrics connections all closed after {:.1} s, /healthz meanwhile p95 {} max {}",
        f.flood.as_secs_f64(),
        f.reviews,
        f.reviews_per_second(),
        f.refused_unreviewed,
        f.granted,
        f.asked,
        ms(percentile(&f.grant_latencies, 0.5)),
        ms(percentile(&f.grant_latencies, 0.95)),
        ms(percentile(&f.grant_latencies, 1.0)),
        ms(percentile(&f.probe_latencies, 0.95)),
        ms(percentile(&f.probe_latencies, 1.0)),
        f.probe_latencies.len(),
        f.idle_closed_after.as_secs_f64(),
        ms(percentile(&f.idle_probe_latencies, 0.95)),
        ms(percentile(&f.idle_probe_latencies, 1.0)),
    );
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn print_medians(runs: &[Figures]) {
    let of = |f: &dyn Fn(&Figures) -> f64| median(runs.iter().map(f).collect());
    let secs = |d: Duration| d.as_secs_f64();
    println!("medians of {} runs:", runs.len());
    println!(
        "  flood time                         {:.2} s",
        of(&|f| secs(f.flood))
    );
    println!(
        "  TokenReviews per second of flood   {:.1}",
        of(&|f| f.reviews_per_second())
    );
    println!(
        "  TokenReviews per flood             {:.0}",
        of(&|f| f.reviews)
    );
    println!(
        "  served caller's share of codes     {:.1}%",
        of(&|f| 100.0 * f.granted as f64 / f.asked.max(1) as f64)
    );
    println!(
        "  served caller p95 / max            {:.0} / {:.0} ms",
        of(&|f| 1000.0 * secs(percentile(&f.grant_latencies, 0.95))),
        of(&|f| 1000.0 * secs(percentile(&f.grant_latencies, 1.0)))
    );
    println!(
        "  /healthz during flood p95 / max    {:.0} / {:.0} ms",
        of(&|f| 1000.0 * secs(percentile(&f.probe_latencies, 0.95))),
        of(&|f| 1000.0 * secs(percentile(&f.probe_latencies, 1.0)))
    );
    println!(
        "  {IDLE} idle connections closed after {:.1} s",
        of(&|f| secs(f.idle_closed_after))
    );
    println!(
        "  /healthz beside them p95 / max     {:.0} / {:.0} ms",
        of(&|f| 1000.0 * secs(percentile(&f.idle_probe_latencies, 0.95))),
        of(&|f| 1000.0 * secs(percentile(&f.idle_probe_latencies, 1.0)))
    );
}
