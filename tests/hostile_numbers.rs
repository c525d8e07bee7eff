//! Property: whatever numbers a tenant writes (a connection's budget, an
//! ActivationCode's durations and counts, extremes included: 0, negative,
//! 1e-30, 1e300, NaN, infinities, u32::MAX, Duration::MAX), validation and
//! the engine against the simulator never panic, and nothing waits longer
//! than the longest interval a valid spec allows:
//!
//! * a call never waits for its budget longer than
//!   [`MAX_INTERVAL`] per call queued ahead of it (the slowest budget the
//!   bounds allow spaces calls 1000 s apart), measured as the client asks
//!   for each wait (its debug line), not by the clock;
//! * a reconcile never asks to run again later than the longest
//!   `syncInterval` allowed (30d);
//! * a budget or spec out of bounds makes no MetaStudio call at all.
//!
//! Seeded (see `common::fuzz`). The engine runs each case for at most a
//! short while of real time: a slow budget's first wait is what is
//! measured, nobody waits it out.

mod common;

use common::capture::Captured;
use common::{ROBOT, fast_options, robot_seed, simulator};
use metastudio_operator::crd::bounds::SYNC_INTERVAL;
use metastudio_operator::crd::connection::{Budget, MetaStudioConnectionSpec};
use metastudio_operator::crd::{
    ActivationCode, ActivationCodeSpec, MaxCodes, ResetPolicy, Rollout,
};
use metastudio_operator::duration::HumanDuration;
use metastudio_operator::engine::conditions::reason;
use metastudio_operator::engine::{Engine, Mode, Next, OperatorDefaults};
use metastudio_operator::metastudio::pacing::{Pacer, Pacing};
use metastudio_operator::metastudio::rate_limit::{CUT_COOLDOWN, MAX_INTERVAL};
use metastudio_operator::metastudio::{ClientOptions, Operation, Transport};
use metastudio_operator::offline::host::OfflineHost;
use metastudio_operator::secret::Secret;
use metastudio_operator::simulator::{
    DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig, Simulator,
};
use metastudio_operator::tenancy::Catalog;
use metastudio_operator::{panics, validate};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

const NS: &str = "tenant";

/// How long one case's reconcile may run, in real time: long enough for a
/// reconcile that does not wait, far shorter than any wait it might ask for.
const CASE_TIME: Duration = Duration::from_millis(400);

/// A runtime whose worker serves the simulator between cases; each case's
/// reconcile runs on the test thread (so its log lines reach the case's
/// subscriber).
struct World {
    runtime: tokio::runtime::Runtime,
    sim: Simulator,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let sim = runtime.block_on(simulator(robot_seed(4, 7), FaultConfig::default()));
        World { runtime, sim }
    })
}

fn rate() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => prop_oneof![
            Just(0.0),
            Just(-1.0),
            Just(1e-30),
            Just(1e-6),
            Just(0.1),
            Just(1000.0),
            Just(1000.5),
            Just(1e300),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::MIN_POSITIVE),
            Just(f64::MAX),
        ],
        2 => 0.05f64..50.0,
        1 => any::<f64>(),
    ]
}

fn share() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(0.001),
        Just(0.01),
        Just(1.0),
        Just(2.0),
        Just(f64::NAN),
        Just(-0.5),
        0.0f64..1.2,
    ]
}

fn burst() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0),
        Just(1),
        Just(1000),
        Just(1001),
        Just(u32::MAX),
        1u32..20
    ]
}

fn pacing() -> impl Strategy<Value = Pacing> {
    (
        proptest::option::of(rate()),
        proptest::option::of(rate()),
        proptest::option::of(share()),
        proptest::option::of(burst()),
        proptest::option::of(rate()),
    )
        .prop_map(
            |(reads_per_second, writes_per_second, share, burst, cap)| Pacing {
                reads_per_second,
                writes_per_second,
                share,
                burst,
                cap,
            },
        )
}

/// A budget within every bound, its extremes included.
fn valid_pacing() -> impl Strategy<Value = Pacing> {
    let rate = || {
        prop_oneof![
            Just(0.0),
            Just(0.1),
            Just(1000.0),
            0.1f64..1000.0,
            0.1f64..3.0
        ]
    };
    let share = prop_oneof![Just(0.01), Just(1.0), 0.01f64..=1.0];
    let burst = prop_oneof![Just(1u32), Just(1000), 1u32..=1000];
    (
        proptest::option::of(rate()),
        proptest::option::of(rate()),
        proptest::option::of(share),
        proptest::option::of(burst),
        proptest::option::of(rate()),
    )
        .prop_map(
            |(reads_per_second, writes_per_second, share, burst, cap)| Pacing {
                reads_per_second,
                writes_per_second,
                share,
                burst,
                cap,
            },
        )
}

fn secs(range: std::ops::RangeInclusive<u64>) -> impl Strategy<Value = HumanDuration> {
    let (start, end) = (*range.start(), *range.end());
    prop_oneof![Just(start), Just(end), range].prop_map(|s| HumanDuration(Duration::from_secs(s)))
}

/// A spec within every bound, its extremes included: a validity, a
/// window shorter than it, a rollout.
fn valid_spec() -> impl Strategy<Value = ActivationCodeSpec> {
    const DAY: u64 = 86_400;
    (
        prop_oneof![Just(0u16), Just(1), Just(u16::MAX), 1u16..400],
        proptest::option::of(secs(10..=30 * DAY)),
        0u8..3,
        secs(60..=3650 * DAY),
        proptest::option::of((
            prop_oneof![
                (1i64..=100_000).prop_map(MaxCodes::Count),
                Just(MaxCodes::Count(100_000)),
                (1u8..=100).prop_map(|p| MaxCodes::Text(format!("{p}%"))),
            ],
            secs(60..=30 * DAY),
        )),
        proptest::option::of(prop_oneof![Just("t1"), Just("t2")]),
    )
        .prop_map(
            |(valid_period, sync, window_kind, window, rollout, token)| {
                let validity = Duration::from_secs(u64::from(valid_period) * DAY);
                // Shorter than the validity (a permanent code has none).
                let window = (valid_period == 0 || window.0 < validity).then_some(window);
                let (before, renew) = match window_kind {
                    1 => (window, None),
                    2 => (None, window),
                    _ => (None, None),
                };
                build_spec(valid_period, sync, before, renew, rollout, token)
            },
        )
}

fn duration() -> impl Strategy<Value = HumanDuration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_millis(1)),
        Just(Duration::from_secs(9)),
        Just(Duration::from_secs(10)),
        Just(Duration::from_secs(3600)),
        Just(Duration::from_secs(30 * 86_400)),
        Just(Duration::from_secs(3651 * 86_400)),
        Just(metastudio_operator::duration::MAX),
        Just(Duration::MAX),
        any::<u64>().prop_map(Duration::from_secs),
        (0u64..100 * 86_400).prop_map(Duration::from_secs),
    ]
    .prop_map(HumanDuration)
}

fn max_codes() -> impl Strategy<Value = MaxCodes> {
    prop_oneof![
        any::<i64>().prop_map(MaxCodes::Count),
        Just(MaxCodes::Count(i64::from(u32::MAX))),
        Just(MaxCodes::Count(0)),
        Just(MaxCodes::Count(-1)),
        (1i64..10).prop_map(MaxCodes::Count),
        Just(MaxCodes::Text("4294967296".into())),
        Just(MaxCodes::Text("50%".into())),
        Just(MaxCodes::Text("0%".into())),
    ]
}

/// An ActivationCode spec with arbitrary numbers.
fn spec() -> impl Strategy<Value = ActivationCodeSpec> {
    (
        prop_oneof![Just(0u16), Just(7), Just(u16::MAX), any::<u16>()],
        proptest::option::of(duration()),
        proptest::option::of(duration()),
        proptest::option::of(duration()),
        proptest::option::of((max_codes(), duration())),
        proptest::option::of(prop_oneof![Just("t1"), Just("t2")]),
    )
        .prop_map(|(valid_period, sync, before, renew, rollout, token)| {
            build_spec(valid_period, sync, before, renew, rollout, token)
        })
}

/// A spec of robot [`ROBOT`] through connection `conn` with these numbers.
fn build_spec(
    valid_period: u16,
    sync: Option<HumanDuration>,
    before: Option<HumanDuration>,
    renew: Option<HumanDuration>,
    rollout: Option<(MaxCodes, HumanDuration)>,
    token: Option<&str>,
) -> ActivationCodeSpec {
    let mut spec: ActivationCodeSpec = serde_json::from_value(serde_json::json!({
        "robotId": ROBOT, "validPeriod": valid_period, "connectionRef": {"name": "conn"},
    }))
    .unwrap();
    spec.sync_interval = sync;
    spec.renew_before_expiry = renew;
    if before.is_some() || rollout.is_some() || token.is_some() {
        spec.reset = Some(ResetPolicy {
            token: token.map(str::to_owned),
            before_expiry: before,
            rollout: rollout.map(|(max_codes, interval)| Rollout {
                max_codes,
                interval,
                unknown_fields: Default::default(),
            }),
            ..Default::default()
        });
    }
    spec
}

/// The MetaStudioConnection `conn` of [`NS`] at the simulator with
/// `budget`.
fn connection(sim: &Simulator, budget: &Pacing) -> MetaStudioConnectionSpec {
    let mut spec: MetaStudioConnectionSpec = serde_json::from_value(serde_json::json!({
        "endpoint": sim.endpoint(), "projectId": sim.project_id(),
        "credentialsSecretRef": {"name": "creds"},
    }))
    .unwrap();
    spec.target.budget = Some(Budget {
        reads_per_second: budget.reads_per_second,
        writes_per_second: budget.writes_per_second,
        share: budget.share,
        burst: budget.burst,
        requests_per_second: budget.cap,
        ..Budget::default()
    });
    spec
}

fn host(sim: &Simulator, budget: &Pacing) -> OfflineHost {
    let secret: BTreeMap<String, Secret> = [
        ("accessKey".to_owned(), Secret::new(DEFAULT_ACCESS_KEY)),
        ("secretKey".to_owned(), Secret::new(DEFAULT_SECRET_KEY)),
    ]
    .into();
    let secrets = [(format!("{NS}/creds"), secret)].into();
    let mut catalog = Catalog::default();
    catalog
        .connections
        .insert((NS.into(), "conn".into()), connection(sim, budget));
    OfflineHost::new(secrets, None, None)
        .unwrap()
        .with_catalog(catalog)
}

/// Every wait the client asked for, from its debug lines.
fn requested_waits(logs: &str) -> Vec<Duration> {
    logs.lines()
        .filter(|line| line.contains("waiting for the budget of these credentials"))
        .filter_map(|line| line.split("wait_ms=").nth(1))
        .map(|rest| rest.split(|c: char| !c.is_ascii_digit()).next().unwrap())
        .map(|ms| Duration::from_millis(ms.parse().unwrap()))
        .collect()
}

/// One reconcile of `spec` through a connection with `budget`, the
/// operator's own pacing `flags` (which the flags' parser would have
/// refused out of bounds: here they bypass it).
fn run_case(spec: ActivationCodeSpec, budget: Pacing, flags: Pacing) -> Result<(), TestCaseError> {
    let world = world();
    let sim = &world.sim;
    let transport = Transport::new(ClientOptions {
        pacing: flags,
        ..fast_options()
    })
    .unwrap();
    let engine = Engine::new(transport, OperatorDefaults::default()).with_concurrency(1);
    let host = host(sim, &budget);
    let mut resource = ActivationCode::new("kiosk", spec.clone());
    resource.metadata.namespace = Some(NS.into());
    let calls_before = sim.counters().total_calls();
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("metastudio_operator::metastudio::pacing=debug")
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let now = jiff::Timestamp::now();
    let outcome = tracing::subscriber::with_default(subscriber, || {
        world.runtime.block_on(async {
            let reconcile = engine.reconcile(&resource, &host, Mode::Normal, now);
            panics::catch(tokio::time::timeout(CASE_TIME, reconcile)).await
        })
    });
    let outcome = outcome.map_err(|p| TestCaseError::fail(format!("the reconcile {p}")))?;
    for wait in requested_waits(&logs.text()) {
        prop_assert!(
            wait <= MAX_INTERVAL,
            "a call waited {wait:?} for its budget (longest allowed: {MAX_INTERVAL:?})"
        );
    }
    let refused = !validate::validate(&spec).is_empty()
        || !validate::connection_target(&connection(sim, &budget).target).is_empty();
    let Ok(report) = outcome else {
        // Cut short while it waited: only a valid spec gets that far.
        prop_assert!(!refused, "an invalid spec or budget reached a wait");
        return Ok(());
    };
    if refused {
        prop_assert_eq!(report.reason, reason::INVALID_SPEC);
        prop_assert_eq!(sim.counters().total_calls(), calls_before, "no call");
    }
    match report.next {
        Next::SyncAfter(after) => prop_assert!(after <= *SYNC_INTERVAL.end(), "{after:?}"),
        Next::Retry {
            at_least: Some(after),
        } => prop_assert!(after <= *SYNC_INTERVAL.end(), "{after:?}"),
        _ => {}
    }
    if let Some(next_batch) = report
        .status
        .reset_token
        .as_ref()
        .and_then(|t| t.next_batch_time)
    {
        let horizon = now + jiff::SignedDuration::from_secs(30 * 86_400);
        prop_assert!(next_batch <= horizon, "next batch at {next_batch}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(common::fuzz::config(96))]

    #[test]
    fn arbitrary_numbers_never_panic_nor_wait_past_the_longest_valid_interval(
        spec in prop_oneof![2 => valid_spec(), 1 => spec()],
        budget in prop_oneof![2 => valid_pacing(), 1 => pacing()],
        flags in prop_oneof![3 => Just(Pacing::default()), 1 => pacing()],
    ) {
        run_case(spec, budget, flags)?;
    }

    /// The pacer alone, in paused time, with callers trying at once, 429
    /// cuts and new limits: a caller is never told to wait longer than the
    /// longest interval (a waiter holds no slot, so no queue adds up).
    #[test]
    fn a_call_never_waits_longer_than_the_longest_interval(
        budget in pacing(),
        other in pacing(),
        rounds in proptest::collection::vec((1usize..6, any::<bool>(), any::<bool>(), 0u64..2000), 1..6),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let pacer = Pacer::new(budget.budgets(None));
            for (callers, throttled, changed, pause_ms) in rounds {
                for _ in 0..callers {
                    if let Err(wait) = pacer.try_acquire(Operation::ResetActiveCode) {
                        prop_assert!(wait <= MAX_INTERVAL, "told to wait {wait:?}");
                    }
                }
                if throttled {
                    pacer.throttled(Operation::ResetActiveCode);
                }
                if changed {
                    pacer.set_budgets(other.budgets(None));
                }
                tokio::time::advance(CUT_COOLDOWN + Duration::from_millis(pause_ms)).await;
            }
            Ok(())
        })?;
    }
}

/// A status is tenant-writable (and a status file editable): a reset token
/// first seen at the end of time is planned like any other, without the
/// overflow that used to panic.
#[test]
fn a_token_first_seen_at_the_end_of_time_is_planned_without_a_panic() {
    use metastudio_operator::crd::{ActivationCodeStatus, TokenRollout};
    use metastudio_operator::metastudio::ActiveCode;
    use metastudio_operator::plan::{self, Ledger};
    let spec = build_spec(7, None, None, None, None, Some("t1"));
    let status = ActivationCodeStatus {
        reset_token: Some(TokenRollout {
            token: "t1".into(),
            observed_at: jiff::Timestamp::MAX,
            done: 0,
            total: 0,
            progress: String::new(),
            batch_started_at: None,
            batch_resets: 0,
            next_batch_time: None,
        }),
        ..ActivationCodeStatus::default()
    };
    let code: ActiveCode = serde_json::from_value(serde_json::json!({
        "active_code_id": "c1", "active_code": "v", "robot_id": ROBOT, "valid_period": 7,
        "create_time": "2026-01-01T00:00:00Z", "update_time": "2026-01-01T00:00:00Z"
    }))
    .unwrap();
    let now = jiff::Timestamp::now();
    let planned = plan::plan(&spec, &Ledger::of(&status), &status, &[code], true, now);
    assert_eq!(
        planned.actions.len(),
        1,
        "the code older than the token is reset"
    );
}
