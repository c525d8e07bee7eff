//! Helpers for tests that run `metastudio-operator reconcile` as a process.

use metastudio_operator::simulator::{DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, Simulator};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

/// A runtime for the simulator while the test thread drives processes.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// `robots` ActivationCodes, robot i named `robot-{i}`, all valid `days`.
pub fn fleet_manifests(dir: &Path, robots: usize, days: u16, token: Option<&str>) {
    let mut text = String::new();
    for i in 0..robots {
        let reset = token.map_or(String::new(), |t| format!("\n  reset: {{token: \"{t}\"}}"));
        text.push_str(&format!(
            "---\napiVersion: metastudio.huaweicloud.com/v1alpha1\nkind: ActivationCode\nmetadata: {{name: fleet-{i}, namespace: test}}\nspec:\n  robotId: robot-{i}\n  validPeriod: {days}{reset}\n"
        ));
    }
    std::fs::write(dir.join("fleet.yaml"), text).unwrap();
}

/// Seed YAML: `robots` robots with `codes` codes each, valid `days`.
pub fn fleet_seed(robots: usize, codes: u32, days: u16) -> metastudio_operator::simulator::Seed {
    fleet_seed_with(robots, codes, |_| days)
}

/// Like [`fleet_seed`], robot i's codes valid `days_of(i)` (drift where it
/// differs from the manifests).
pub fn fleet_seed_with(
    robots: usize,
    codes: u32,
    days_of: impl Fn(usize) -> u16,
) -> metastudio_operator::simulator::Seed {
    let list: Vec<String> = (0..robots)
        .map(|i| {
            let days = days_of(i);
            format!("{{robotId: robot-{i}, generate: {{count: {codes}, validPeriod: {days}}}}}")
        })
        .collect();
    metastudio_operator::simulator::Seed::from_yaml(&format!(
        "spec: {{robots: [{}]}}",
        list.join(", ")
    ))
    .unwrap()
}

/// `reconcile ARGS...` against `sim`, unpaced (the simulator enforces no
/// quota unless a test sets one).
pub fn reconcile_command(sim: &Simulator, args: &[&str]) -> Command {
    paced_reconcile_command(sim, args, &["--read-rate", "0", "--write-rate", "0"])
}

/// `reconcile ARGS...` against `sim` with the pacing flags `pacing` (none:
/// the binary's default pacing).
pub fn paced_reconcile_command(sim: &Simulator, args: &[&str], pacing: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_metastudio-operator"));
    command
        .arg("reconcile")
        .args(args)
        .args([
            "--endpoint",
            &sim.endpoint(),
            "--project-id",
            sim.project_id(),
        ])
        .args(pacing)
        .args(["--timeout", "5s"])
        // The simulator never applies a call after its caller is gone, so a
        // short grace for resets in doubt keeps the tests quick.
        .args(["--reset-grace", RESET_GRACE])
        .env("CLOUD_SDK_AK", DEFAULT_ACCESS_KEY)
        .env("CLOUD_SDK_SK", DEFAULT_SECRET_KEY)
        .env_remove("RUST_LOG");
    command
}

/// The `--reset-grace` of the test runs.
pub const RESET_GRACE: &str = "300ms";

/// Runs `reconcile` again while it reports resets in doubt (after a kill
/// they wait out the grace), until it ends otherwise; returns its output.
pub fn run_until_settled(sim: &Simulator, args: &[&str]) -> Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = run_reconcile(sim, args);
        let in_doubt = out.status.code() == Some(1)
            && String::from_utf8_lossy(&out.stdout).contains("ResetUnconfirmed");
        if !in_doubt {
            return out;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "resets still in doubt after a minute: {}",
            text(&out)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

pub fn run_reconcile(sim: &Simulator, args: &[&str]) -> Output {
    reconcile_command(sim, args)
        .output()
        .expect("the binary runs")
}

/// Runs `reconcile --simulate ARGS...`: the binary's embedded simulator,
/// none of the caller's MetaStudio settings or credentials.
pub fn run_simulated(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_metastudio-operator"));
    command
        .args(["reconcile", "--simulate"])
        .args(args)
        .args(["--read-rate", "0", "--write-rate", "0", "--timeout", "5s"])
        .env_remove("RUST_LOG");
    for var in [
        "CLOUD_SDK_AK",
        "CLOUD_SDK_SK",
        "CLOUD_SDK_SECURITY_TOKEN",
        "METASTUDIO_AUTH_TOKEN",
        "METASTUDIO_ENDPOINT",
        "METASTUDIO_REGION",
        "METASTUDIO_PROJECT_ID",
        "METASTUDIO_INSECURE_HTTP",
    ] {
        command.env_remove(var);
    }
    command.output().expect("the binary runs")
}

pub fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub fn path_str(path: &Path) -> String {
    path.display().to_string()
}

pub fn status_file(dir: &Path) -> PathBuf {
    dir.join("status.json")
}

/// Polls `until` (every millisecond) while `child` runs, then kills it with
/// SIGKILL. Returns `None` when it was killed, or its exit status when it
/// ended first. Panics after `deadline`.
pub fn kill_9_when(
    child: &mut Child,
    deadline: Duration,
    mut until: impl FnMut() -> bool,
) -> Option<ExitStatus> {
    let deadline = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if until() {
            // SIGKILL; a child that ended just before is reaped with its
            // own status.
            let _ = child.kill();
            let status = child.wait().unwrap();
            return match std::os::unix::process::ExitStatusExt::signal(&status) {
                Some(9) => None,
                _ => Some(status),
            };
        }
        assert!(
            Instant::now() < deadline,
            "the kill condition never held while the child ran"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}
