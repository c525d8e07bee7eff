//! Crash safety: `reconcile --status-file` is killed with SIGKILL at seeded
//! random moments (after a random number of calls reached the simulator),
//! 24 times, while a reset token rolls over a fleet twice and 30% of the
//! resets lose their answer after being applied. The simulator lives in
//! the test process, so it outlives every kill.
//!
//! After every kill the status file parses, and every reset applied so far
//! is on record in it: as the code's last reset, or as a pending intent.
//! After each token, a run to completion leaves every code reset exactly
//! once for it (the simulator's counters), the status file naming that
//! token for every code, no intent pending. No AK, SK or code value appears
//! in the status file or in any run's output at trace level.

mod common;

use common::capture::assert_clean;
use common::offline::*;
use common::simulator;
use metastudio_operator::crd::ActivationCodeStatus;
use metastudio_operator::metastudio::Operation;
use metastudio_operator::offline::status_file::StatusFile;
use metastudio_operator::simulator::{
    Counters, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig, Simulator,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fs::File;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const ROBOTS: usize = 10;
const CODES: u32 = 30;
const DAYS: u16 = 7;
const TOKENS: [&str; 2] = ["rotation-1", "rotation-2"];
const KILLS_PER_TOKEN: usize = 12;
/// A kill comes after 0..=MAX_CALLS_BEFORE_KILL calls of the run. Twelve
/// kills cannot finish a token's work (10 lists, 300 resets and a show per
/// lost answer), so every kill lands before the run would have ended.
const MAX_CALLS_BEFORE_KILL: u64 = 25;

fn code_values(sim: &Simulator) -> Vec<String> {
    sim.with_store(|s| s.all_codes())
        .iter()
        .map(|c| c.active_code.expose().to_owned())
        .collect()
}

/// Every reset the simulator applied is on record in the status file, as
/// the code's last reset for `token` or as a pending intent for it.
/// `earlier` resets per code came from earlier tokens.
fn assert_resets_on_record(file: &StatusFile, counters: &Counters, token: &str, earlier: u64) {
    let statuses: Vec<&ActivationCodeStatus> = file.statuses.values().map(|s| &**s).collect();
    let on_record = |code: &str| {
        statuses.iter().any(|s| {
            s.last_token(code) == Some(token)
                || s.pending_resets
                    .iter()
                    .any(|i| i.code_id == code && i.token.as_deref() == Some(token))
        })
    };
    for (code, &resets) in &counters.resets {
        assert!(
            resets <= earlier + 1,
            "code {code} reset {resets} times, more than once per token"
        );
        if resets == earlier + 1 {
            assert!(
                on_record(code),
                "code {code} was reset for {token} but the status file does not say so"
            );
        }
    }
}

#[test]
fn kill_9_at_random_moments_while_tokens_roll_resets_each_code_once_per_token() {
    let rt = runtime();
    let faults = FaultConfig {
        // A run takes several hundred milliseconds, so kills land mid-run.
        latency: Duration::from_millis(5),
        lost_response_rate: 0.3,
        operations: [Operation::ResetActiveCode].into(),
        seed: 23,
        ..Default::default()
    };
    let sim = rt.block_on(simulator(fleet_seed(ROBOTS, CODES, DAYS), faults));
    let dir = tempfile::tempdir().unwrap();
    let manifest_dir = dir.path().join("manifests");
    let log_dir = dir.path().join("logs");
    std::fs::create_dir_all(&manifest_dir).unwrap();
    std::fs::create_dir_all(&log_dir).unwrap();
    let status_path = status_file(dir.path());
    let (manifests, status) = (path_str(&manifest_dir), path_str(&status_path));
    let args = [
        "-f",
        &manifests,
        "--status-file",
        &status,
        "--concurrency",
        "2",
        "--log-level",
        "trace",
    ];
    let mut rng = StdRng::seed_from_u64(0x5EED_4B11);
    let mut secrets: Vec<String> = vec![DEFAULT_ACCESS_KEY.into(), DEFAULT_SECRET_KEY.into()];
    secrets.extend(code_values(&sim));
    let mut runs = 0;
    let mut kills = 0;

    for (earlier, token) in (0u64..).zip(TOKENS) {
        fleet_manifests(&manifest_dir, ROBOTS, DAYS, Some(token));
        let mut kills_for_token = 0;
        let mut settling = 0;
        loop {
            runs += 1;
            let output = |name: &str| File::create(log_dir.join(format!("{runs}.{name}"))).unwrap();
            let mut child = reconcile_command(&sim, &args)
                .stdout(Stdio::from(output("stdout")))
                .stderr(Stdio::from(output("stderr")))
                .spawn()
                .unwrap();
            let ended = if kills_for_token < KILLS_PER_TOKEN {
                let start = sim.counters().total_calls();
                let after = rng.random_range(0..=MAX_CALLS_BEFORE_KILL);
                kill_9_when(&mut child, Duration::from_secs(60), || {
                    sim.counters().total_calls() >= start + after
                })
            } else {
                Some(child.wait().unwrap())
            };
            let file = StatusFile::load(&status_path).expect("the status file parses");
            assert_resets_on_record(&file, &sim.counters(), token, earlier);
            match ended {
                None => {
                    kills += 1;
                    kills_for_token += 1;
                }
                Some(exit) => {
                    let stdout = std::fs::read_to_string(log_dir.join(format!("{runs}.stdout")))
                        .unwrap_or_default();
                    if exit.code() == Some(1) && stdout.contains("ResetUnconfirmed") {
                        // Resets a kill interrupted wait out the grace
                        // (--reset-grace) before they are tried again.
                        settling += 1;
                        assert!(settling < 300, "resets still in doubt: {stdout}");
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    let log = std::fs::read_to_string(log_dir.join(format!("{runs}.stderr")));
                    assert!(exit.success(), "run {runs} failed: {exit:?}\n{log:?}");
                    break;
                }
            }
        }

        let counters = sim.counters();
        assert_eq!(counters.resets.len(), (ROBOTS * CODES as usize));
        assert!(
            counters.resets.values().all(|&n| n == earlier + 1),
            "each code reset exactly once for {token}: {:?}",
            counters
                .resets
                .values()
                .filter(|&&n| n != earlier + 1)
                .count()
        );
        let file = StatusFile::load(&status_path).unwrap();
        assert_eq!(file.statuses.len(), ROBOTS);
        for (key, status) in &file.statuses {
            assert!(status.pending_resets.is_empty(), "{key}: intents left");
            assert_eq!(status.managed_codes, CODES, "{key}");
            let ledger = status.reset_ledger.iter().find(|e| e.token == token);
            assert_eq!(
                ledger.map(|e| e.codes.len()),
                Some(CODES as usize),
                "{key}: every code's last reset is for {token}"
            );
            assert_eq!(status.condition("Ready").unwrap().status, "True", "{key}");
        }
        secrets.extend(code_values(&sim));
    }
    let counters = sim.counters();
    assert!(kills >= 20, "only {kills} kills landed mid-run");
    assert!(
        counters.calls_with(Operation::ResetActiveCode, "lost") > 0,
        "answers were lost"
    );
    println!(
        "{runs} runs, {kills} killed; {} calls: {:?}",
        counters.total_calls(),
        counters.calls
    );

    assert_clean(&std::fs::read_to_string(&status_path).unwrap(), &secrets);
    let mut logged = 0;
    for entry in std::fs::read_dir(&log_dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        logged += text.len();
        assert_clean(&text, &secrets);
    }
    assert!(logged > 0, "the runs logged at trace level");
    assert!(Path::new(&status_path).exists());
}
