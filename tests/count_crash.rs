//! Crash safety of creates: `reconcile --status-file` scales a room from 0
//! to 100 codes (`spec.count`) while 20% of the creates lose their answer
//! after being applied, and is killed with SIGKILL at seeded random moments
//! (after a random number of calls reached the simulator), 16 times. The
//! simulator lives in the test process, so it outlives every kill.
//!
//! After every kill the status file parses, the room never holds more
//! than 100 codes, and every code created so far is on record: as this
//! resource's in the status file, or covered by a pending create intent.
//! A run to completion then leaves exactly 100 codes, each created once
//! and on record as the resource's, no intent pending. No AK, SK or code
//! value appears in the status file or in any run's output at trace level.

mod common;

use common::capture::assert_clean;
use common::offline::*;
use common::simulator;
use metastudio_operator::crd::ActivationCodeStatus;
use metastudio_operator::metastudio::{ActiveCode, Operation};
use metastudio_operator::offline::status_file::StatusFile;
use metastudio_operator::simulator::{
    DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig, Simulator,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

const ROBOT: &str = "robot-0";
const ROOM: &str = "lobby";
const COUNT: usize = 100;
const KILLS: usize = 16;
/// A kill comes after 0..=MAX_CALLS_BEFORE_KILL calls of the run: sixteen
/// kills cannot make 100 creates, so every kill lands before the run would
/// have ended.
const MAX_CALLS_BEFORE_KILL: u64 = 12;

fn manifest(dir: &Path) {
    let text = format!(
        "apiVersion: metastudio.huaweicloud.com/v1alpha1\nkind: ActivationCode\nmetadata: {{name: kiosks, namespace: test}}\nspec:\n  robotId: {ROBOT}\n  roomId: {ROOM}\n  validPeriod: 7\n  count: {COUNT}\n"
    );
    std::fs::write(dir.join("kiosks.yaml"), text).unwrap();
}

fn room(sim: &Simulator) -> Vec<ActiveCode> {
    sim.with_store(|s| s.all_codes())
        .into_iter()
        .filter(|c| c.robot_id == ROBOT && c.room_id.as_deref() == Some(ROOM))
        .collect()
}

fn status_of(file: &StatusFile) -> ActivationCodeStatus {
    file.statuses
        .get("test/kiosks")
        .map(|s| (**s).clone())
        .unwrap_or_default()
}

/// Every code of the room is on record: as the resource's, or covered by
/// the creates a pending intent may have made.
fn assert_creates_on_record(file: &StatusFile, sim: &Simulator) {
    let status = status_of(file);
    let created = status.created_code_ids();
    let unrecorded = room(sim)
        .iter()
        .filter(|c| !created.contains(c.active_code_id.as_str()))
        .count();
    let in_doubt: u32 = status.pending_creates.iter().map(|i| i.count).sum();
    assert!(
        unrecorded as u64 <= u64::from(in_doubt),
        "{unrecorded} codes of the room are not on record, {in_doubt} creates in doubt"
    );
}

#[test]
fn kill_9_at_random_moments_during_a_scale_up_ends_with_exactly_the_count() {
    let rt = runtime();
    let faults = FaultConfig {
        // A run takes a few hundred milliseconds, so kills land mid-run.
        latency: Duration::from_millis(5),
        lost_response_rate: 0.2,
        operations: [Operation::CreateActiveCode].into(),
        seed: 1900,
        ..Default::default()
    };
    let sim = rt.block_on(simulator(fleet_seed(1, 0, 7), faults));
    let dir = tempfile::tempdir().unwrap();
    let manifest_dir = dir.path().join("manifests");
    let log_dir = dir.path().join("logs");
    std::fs::create_dir_all(&manifest_dir).unwrap();
    std::fs::create_dir_all(&log_dir).unwrap();
    manifest(&manifest_dir);
    let status_path = status_file(dir.path());
    let (manifests, status) = (path_str(&manifest_dir), path_str(&status_path));
    let args = [
        "-f",
        &manifests,
        "--status-file",
        &status,
        "--log-level",
        "trace",
    ];
    let mut rng = StdRng::seed_from_u64(0x5EED_1900);
    let (mut runs, mut kills, mut settling) = (0, 0, 0);
    loop {
        runs += 1;
        let output = |name: &str| File::create(log_dir.join(format!("{runs}.{name}"))).unwrap();
        let mut child = reconcile_command(&sim, &args)
            .stdout(Stdio::from(output("stdout")))
            .stderr(Stdio::from(output("stderr")))
            .spawn()
            .unwrap();
        let ended = if kills < KILLS {
            let start = sim.counters().total_calls();
            let after = rng.random_range(0..=MAX_CALLS_BEFORE_KILL);
            kill_9_when(&mut child, Duration::from_secs(60), || {
                sim.counters().total_calls() >= start + after
            })
        } else {
            Some(child.wait().unwrap())
        };
        let file = StatusFile::load(&status_path).expect("the status file parses");
        assert!(room(&sim).len() <= COUNT, "{} codes", room(&sim).len());
        assert_creates_on_record(&file, &sim);
        let Some(exit) = ended else {
            kills += 1;
            continue;
        };
        let stdout =
            std::fs::read_to_string(log_dir.join(format!("{runs}.stdout"))).unwrap_or_default();
        if exit.code() == Some(1) && stdout.contains("CountUnconfirmed") {
            // Creates a kill or a lost answer left in doubt wait out the
            // grace (--reset-grace) before the listing settles them.
            settling += 1;
            assert!(settling < 300, "creates still in doubt: {stdout}");
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let log = std::fs::read_to_string(log_dir.join(format!("{runs}.stderr")));
        assert!(
            exit.success(),
            "run {runs} failed: {exit:?}\n{stdout}\n{log:?}"
        );
        break;
    }

    let counters = sim.counters();
    let codes = room(&sim);
    assert_eq!(codes.len(), COUNT);
    assert_eq!(
        counters.total_creates(),
        COUNT as u64,
        "each code created once"
    );
    assert!(
        counters.calls_with(Operation::CreateActiveCode, "lost") > 0,
        "answers were lost"
    );
    let file = StatusFile::load(&status_path).unwrap();
    let status = status_of(&file);
    let created: BTreeSet<&str> = status.created_code_ids();
    let listed: BTreeSet<&str> = codes.iter().map(|c| c.active_code_id.as_str()).collect();
    assert_eq!(created, listed, "every code on record as the resource's");
    assert!(status.pending_creates.is_empty());
    assert_eq!(status.managed_codes, COUNT as u32);
    assert_eq!(status.condition("Ready").unwrap().status, "True");
    assert!(kills == KILLS, "only {kills} kills landed mid-run");
    println!(
        "{runs} runs, {kills} killed, {settling} waited for creates in doubt; {} CreateActiveCode calls ({} answers lost), {} codes",
        counters.calls_of(Operation::CreateActiveCode),
        counters.calls_with(Operation::CreateActiveCode, "lost"),
        codes.len()
    );

    let mut secrets: Vec<String> = vec![DEFAULT_ACCESS_KEY.into(), DEFAULT_SECRET_KEY.into()];
    secrets.extend(codes.iter().map(|c| c.active_code.expose().to_owned()));
    assert_clean(&std::fs::read_to_string(&status_path).unwrap(), &secrets);
    for entry in std::fs::read_dir(&log_dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert_clean(&text, &secrets);
    }
}
