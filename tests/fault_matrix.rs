//! The fault matrix: 5xx, 429 with Retry-After, dropped connections, answers
//! lost after the change was applied, and answers slower than the client's
//! timeout, each at 10% and 30% of every operation's calls (list and show
//! included). A drifted fleet with a reset token is reconciled through the
//! engine pass after pass, statuses carried over as the status file does,
//! until every resource converged. Then:
//!
//! - the fleet is as the spec says, each code reset exactly once, and only
//!   drifted codes updated (an update may repeat: it is idempotent);
//! - every status matches the simulator's store, with no pending intent;
//! - every failure reported (event, condition, action result) names the
//!   request id of the error answer, or says the outcome is unknown;
//! - with every log line captured at trace level, no AK, SK, security token
//!   or code value (any the simulator ever held) appears in a log line, an
//!   event, a status or an error.

mod common;

use common::capture::{Captured, assert_clean, trace_subscriber};
use common::failure_text::{Found, check_failure_text, check_success_note};
use common::offline::{fleet_manifests, fleet_seed_with};
use common::simulator;
use metastudio_operator::crd::ActivationCodeStatus;
use metastudio_operator::engine::{ActionOutcome, Engine, Mode, Next, OperatorDefaults};
use metastudio_operator::metastudio::pacing::Pacing;
use metastudio_operator::metastudio::retry::RetryPolicy;
use metastudio_operator::metastudio::settings::ConnectionSettings;
use metastudio_operator::metastudio::{ClientOptions, Credentials, Operation, Transport};
use metastudio_operator::offline::host::OfflineHost;
use metastudio_operator::offline::manifests::{self, Loaded, key_of};
use metastudio_operator::offline::{ResourceOutcome, reconcile_all};
use metastudio_operator::simulator::{
    Counters, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig, Simulator,
};
use std::time::Duration;

const ROBOTS: usize = 12;
const CODES: u32 = 6;
const SPEC_DAYS: u16 = 7;
const TOKEN: &str = "rotate-2026-11";
const SECURITY_TOKEN: &str = "FAULT-MATRIX-SECURITY-TOKEN-5c1e";
/// Passes before giving up (a controller would requeue with backoff).
const MAX_PASSES: usize = 30;

/// Even robots' codes are seeded at another valid period: drift.
fn seeded_days(robot: usize) -> u16 {
    if robot.is_multiple_of(2) {
        3
    } else {
        SPEC_DAYS
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    ServerError,
    Throttle,
    Drop,
    LostResponse,
    Slow,
}

/// A call slower than this times out.
const SLOW_TIMEOUT: Duration = Duration::from_millis(100);

fn faults(fault: Fault, rate: f64, seed: u64) -> FaultConfig {
    let mut config = FaultConfig {
        latency: Duration::from_millis(1),
        // A retried 429 waits this long (whole seconds on the wire): 1 s
        // where throttling is rare, 0 (the client's own backoff) where it
        // is frequent, to keep the matrix fast.
        retry_after_secs: if rate < 0.2 { 1 } else { 0 },
        // Far beyond the client's timeout: the client gives up and the
        // simulator drops the call unapplied when the connection closes.
        slow_delay: Duration::from_secs(5),
        seed,
        ..FaultConfig::default()
    };
    match fault {
        Fault::ServerError => config.server_error_rate = rate,
        Fault::Throttle => config.throttle_rate = rate,
        Fault::Drop => config.drop_rate = rate,
        Fault::LostResponse => config.lost_response_rate = rate,
        Fault::Slow => config.slow_rate = rate,
    }
    config
}

fn options(fault: Fault) -> ClientOptions {
    ClientOptions {
        timeout: if fault == Fault::Slow {
            SLOW_TIMEOUT
        } else {
            Duration::from_secs(5)
        },
        // One retry per call, so failures reach the engine and its reports.
        retry: RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            max_elapsed: Duration::from_secs(10),
        },
        pacing: Pacing::UNLIMITED,
        ..ClientOptions::default()
    }
}

fn credentials() -> Credentials {
    Credentials::AkSk {
        access_key: DEFAULT_ACCESS_KEY.into(),
        secret_key: DEFAULT_SECRET_KEY.into(),
        security_token: Some(SECURITY_TOKEN.into()),
    }
}

/// Every code value the store holds now.
fn code_values(sim: &Simulator) -> Vec<String> {
    sim.with_store(|s| s.all_codes())
        .iter()
        .map(|c| c.active_code.expose().to_owned())
        .collect()
}

/// What the passes reported, for the checks after convergence.
#[derive(Default)]
struct Reports {
    /// Every report and event of every pass, as Debug text.
    text: String,
    found: Found,
    changes: usize,
}

fn run(fault: Fault, rate: f64, seed: u64) {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(trace_subscriber(&logs));
    // current_thread: the subscriber above sees every task, the simulator's
    // and the HTTP stack's included.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(scenario(fault, rate, seed, &logs));
}

async fn scenario(fault: Fault, rate: f64, seed: u64, logs: &Captured) {
    let sim = simulator(
        fleet_seed_with(ROBOTS, CODES, seeded_days),
        faults(fault, rate, seed),
    )
    .await;
    let values_before = code_values(&sim);
    let dir = tempfile::tempdir().unwrap();
    fleet_manifests(dir.path(), ROBOTS, SPEC_DAYS, Some(TOKEN));
    let resources = manifests::load(&[dir.path().to_path_buf()], "default")
        .expect("fleet manifests load")
        .resources;
    let defaults = OperatorDefaults {
        settings: ConnectionSettings {
            endpoint: Some(sim.endpoint()),
            project_id: Some(sim.project_id().to_owned()),
            ..ConnectionSettings::default()
        },
        credentials: Some(credentials()),
        // No tenants here: the operator's credentials serve every namespace.
        credentials_scope: metastudio_operator::tenancy::DefaultCredentialsScope::Everyone,
        inline_endpoints: metastudio_operator::tenancy::InlineEndpoints::Any,
    };
    // The simulator never applies a call after its caller gave up (hyper
    // drops the handler), so resets in doubt need only a short grace here.
    let engine = Engine::new(Transport::new(options(fault)).unwrap(), defaults)
        .with_reset_grace(Duration::from_millis(300));
    // No path: statuses stay in memory, carried from pass to pass.
    let host = OfflineHost::new(Default::default(), None, None).unwrap();

    let (passes, reports) = converge(&engine, &host, &resources, &sim).await;
    let counters = sim.counters();
    println!(
        "{fault:?} at {rate}: converged in {passes} pass(es), {} call(s) {:?}, {:?}",
        counters.total_calls(),
        counters.calls,
        reports.found
    );
    assert_faults_reported(fault, &counters, &engine, &reports);
    assert_each_code_reset_once(&sim, &counters);
    let mut statuses = Vec::new();
    for loaded in &resources {
        let key = key_of(&loaded.resource);
        let status = host.status_of(&key).expect("a status was saved");
        assert_status_matches(&key, &status, &sim, &loaded.resource.spec.robot_id);
        statuses.push(status);
    }

    let mut secrets: Vec<String> = vec![
        DEFAULT_ACCESS_KEY.into(),
        DEFAULT_SECRET_KEY.into(),
        SECURITY_TOKEN.into(),
    ];
    secrets.extend(values_before);
    secrets.extend(code_values(&sim));
    let log_text = logs.text();
    assert!(
        log_text.contains("TRACE") && log_text.contains("metastudio_call"),
        "the client's trace logs were captured"
    );
    assert_clean(&log_text, &secrets);
    assert_clean(&reports.text, &secrets);
    assert_clean(&serde_json::to_string(&statuses).unwrap(), &secrets);
}

/// Reconciles the resources not yet converged, pass after pass; returns
/// the passes it took and what they reported.
async fn converge(
    engine: &Engine,
    host: &OfflineHost,
    resources: &[Loaded],
    sim: &Simulator,
) -> (usize, Reports) {
    let mut reports = Reports::default();
    let mut pending = resources.to_vec();
    let mut passes = 0;
    while !pending.is_empty() {
        passes += 1;
        assert!(
            passes <= MAX_PASSES,
            "{} resource(s) not converged after {MAX_PASSES} passes",
            pending.len()
        );
        let outcomes = reconcile_all(engine, host, &pending, Mode::Normal, 4).await;
        for outcome in &outcomes {
            check_reported(outcome, sim, &mut reports);
        }
        pending.retain(|loaded| {
            let key = key_of(&loaded.resource);
            !outcomes.iter().any(|o| o.key == key && o.report.converged)
        });
        // Wait as the controller would, no sooner than the engine asks
        // (a reset whose answer was lost is settled after a grace period).
        let wait = outcomes
            .iter()
            .filter_map(|o| match o.report.next {
                Next::Retry { at_least } => at_least,
                _ => None,
            })
            .min();
        if let Some(wait) = wait.filter(|_| !pending.is_empty()) {
            tokio::time::sleep(wait).await;
        }
    }
    (passes, reports)
}

/// The faults were injected, and each reset that failed so (never retried:
/// it is not idempotent) was reported with its request id or as unknown.
fn assert_faults_reported(fault: Fault, counters: &Counters, engine: &Engine, reports: &Reports) {
    let metrics = engine.transport().metrics();
    let label = match fault {
        Fault::ServerError => "500",
        Fault::Throttle => "429",
        Fault::Drop => "dropped",
        Fault::LostResponse => "lost",
        Fault::Slow => "timeout",
    };
    let injected: u64 = Operation::ALL
        .iter()
        .map(|&op| match fault {
            // A call given up on is never answered, so the simulator never
            // counts it; the client does.
            Fault::Slow => metrics.call_count(op, label),
            _ => counters.calls_with(op, label),
        })
        .sum();
    assert!(injected > 0, "no {label} injected: {:?}", counters.calls);
    assert!(reports.changes > 0, "changes were reported");
    let reset = Operation::ResetActiveCode;
    let found = reports.found;
    match fault {
        Fault::ServerError => assert!(
            found.answered as u64 >= counters.calls_with(reset, "500"),
            "{found:?}"
        ),
        Fault::Drop => assert!(
            found.unanswered as u64 >= counters.calls_with(reset, "dropped"),
            "{found:?}"
        ),
        // A reset that timed out only because this machine stalled may
        // have been applied; read back, it is then reported as done.
        Fault::Slow => assert!(
            metrics.call_count(reset, "timeout") == 0 || found.unanswered > 0,
            "{found:?}"
        ),
        // Retried by the client, or confirmed by reading the code back.
        Fault::Throttle | Fault::LostResponse => {}
    }
}

/// The fleet is as the spec says: each code reset exactly once for the
/// token, only drifted codes updated (an update may repeat: idempotent).
fn assert_each_code_reset_once(sim: &Simulator, counters: &Counters) {
    let store = sim.with_store(|s| s.all_codes());
    assert_eq!(store.len(), ROBOTS * CODES as usize);
    for code in &store {
        let id = &code.active_code_id;
        let robot: usize = code.robot_id["robot-".len()..].parse().unwrap();
        assert_eq!(code.valid_period, SPEC_DAYS, "{id}");
        assert_eq!(counters.resets_of(id), 1, "code {id} reset once");
        let updates = counters.updates_of(id);
        if seeded_days(robot) == SPEC_DAYS {
            assert_eq!(updates, 0, "code {id} was not drifted, yet written");
        } else {
            assert!(updates >= 1, "code {id} was drifted, yet not updated");
        }
    }
}

/// The status says what the simulator holds: the count of codes, the
/// earliest expiry, every code's reset in the ledger; no intent or drift
/// left; Ready and Synced.
fn assert_status_matches(key: &str, status: &ActivationCodeStatus, sim: &Simulator, robot: &str) {
    assert!(status.pending_resets.is_empty(), "{key}: intents left");
    assert!(status.drift.is_empty(), "{key}: drift left");
    assert_eq!(status.managed_codes, CODES, "{key}");
    for type_ in ["Ready", "Synced"] {
        let condition = status.condition(type_).expect("condition set");
        assert_eq!(condition.status, "True", "{key} {type_}: {condition:?}");
    }
    let remote = sim.with_store(|s| s.list(robot, 0, 100).data);
    assert_eq!(status.managed_codes as usize, remote.len(), "{key}");
    assert!(status.codes.is_empty(), "{key}: no per-code entries");
    let earliest = remote.iter().filter_map(|c| c.expire_time).min();
    assert_eq!(status.next_expire_time, earliest, "{key}");
    for code in &remote {
        assert_eq!(code.valid_period, SPEC_DAYS, "{key}");
        assert_eq!(
            status.last_token(&code.active_code_id),
            Some(TOKEN),
            "{key}: the reset of {} is in the ledger",
            code.active_code_id
        );
    }
}

/// Checks one resource's report of one pass: failures name their request
/// id or say the outcome is unknown; changes name their request id.
fn check_reported(outcome: &ResourceOutcome, sim: &Simulator, reports: &mut Reports) {
    reports.text.push_str(&format!("{outcome:?}\n"));
    let mut add = |found: Found| {
        reports.found.answered += found.answered;
        reports.found.unanswered += found.unanswered;
    };
    // An event lists the failures of one sync as far as its note holds;
    // the action results hold every one, so they are counted.
    for event in &outcome.events {
        if event.warning {
            check_failure_text(&event.note, sim);
        } else {
            check_success_note(&event.note, sim);
            reports.changes += 1;
        }
    }
    for result in &outcome.report.applied {
        match &result.outcome {
            ActionOutcome::Failed { error, .. } | ActionOutcome::Unconfirmed { error } => {
                add(check_failure_text(error, sim));
            }
            ActionOutcome::Done { request_id, .. } => {
                assert!(request_id.is_some(), "{result:?}");
            }
        }
    }
    let ready = outcome
        .report
        .status
        .condition("Ready")
        .expect("Ready is set");
    if ready.reason == "ResetUnconfirmed" && !ready.message.contains(" failed after ") {
        // Only resets in doubt from an earlier pass: each was reported with
        // its failure then; this says they wait to be settled.
        assert!(
            ready.message.contains("checked again before any new reset"),
            "{}",
            ready.message
        );
    } else if ready.status != "True" {
        check_failure_text(&ready.message, sim);
    }
}

#[test]
fn server_errors_10_percent() {
    run(Fault::ServerError, 0.1, 101);
}

#[test]
fn server_errors_30_percent() {
    run(Fault::ServerError, 0.3, 103);
}

#[test]
fn throttling_with_retry_after_10_percent() {
    run(Fault::Throttle, 0.1, 201);
}

#[test]
fn throttling_with_retry_after_30_percent() {
    run(Fault::Throttle, 0.3, 203);
}

#[test]
fn dropped_connections_10_percent() {
    run(Fault::Drop, 0.1, 301);
}

#[test]
fn dropped_connections_30_percent() {
    run(Fault::Drop, 0.3, 303);
}

#[test]
fn responses_lost_after_the_change_10_percent() {
    run(Fault::LostResponse, 0.1, 401);
}

#[test]
fn responses_lost_after_the_change_30_percent() {
    run(Fault::LostResponse, 0.3, 403);
}

#[test]
fn responses_slower_than_the_timeout_10_percent() {
    run(Fault::Slow, 0.1, 501);
}

#[test]
fn responses_slower_than_the_timeout_30_percent() {
    run(Fault::Slow, 0.3, 503);
}
