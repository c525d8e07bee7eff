//! The official SDK's side of a run (`--sdk`): the same fleet in a fresh
//! simulator with the same quotas, converged by `sdk_fleet.py` with the
//! official Huawei Cloud Python SDK; the simulator's counters give its
//! calls and 429s.

use super::cpu;
use super::fleet::{self, Shape};
use super::options::Options;
use super::runner::Runner;
use super::simulator::{CallDelta, SimulatorProcess};
use metastudio_operator::simulator::{DEFAULT_ACCESS_KEY, DEFAULT_PROJECT_ID, DEFAULT_SECRET_KEY};
use serde::Deserialize;
use std::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/converge/sdk_fleet.py");

/// Retries the SDK side is allowed per call (urllib3's `total`).
const SDK_RETRIES: u32 = 5;

/// What the script printed.
#[derive(Debug, Deserialize)]
pub struct SdkPass {
    pub wall_secs: f64,
    /// The Python process's CPU time (user + system), from the parent.
    #[serde(default)]
    pub cpu_secs: f64,
    pub failed_updates: u64,
    pub failed_robots: u64,
}

pub struct SdkRun {
    pub pass: SdkPass,
    pub calls: CallDelta,
}

pub fn run(runner: &Runner, options: &Options, shape: Shape) -> Result<SdkRun, String> {
    let simulator = SimulatorProcess::start(&shape, options.latency.0, options.server_quota)?;
    let robots: Vec<String> = (0..shape.robots).map(fleet::robot_id).collect();
    let before = runner.counters(&simulator)?;
    let cpu_before = cpu::waited_children();
    let output = Command::new(&options.python)
        .arg(SCRIPT)
        .env("SDK_ENDPOINT", simulator.endpoint())
        .env("SDK_PROJECT_ID", DEFAULT_PROJECT_ID)
        .env("SDK_AK", DEFAULT_ACCESS_KEY)
        .env("SDK_SK", DEFAULT_SECRET_KEY)
        .env("SDK_ROBOTS", robots.join(","))
        .env("SDK_DESIRED_DAYS", fleet::DESIRED_DAYS.to_string())
        .env("SDK_THREADS", options.sdk_threads.to_string())
        .env("SDK_RETRIES", SDK_RETRIES.to_string())
        .output()
        .map_err(|e| {
            format!(
                "cannot run {} (--python; scripts/test installs the SDK there): {e}",
                options.python.display()
            )
        })?;
    let cpu_secs = (cpu::waited_children() - cpu_before).as_secs_f64();
    let after = runner.counters(&simulator)?;
    if !output.status.success() {
        return Err(format!(
            "the SDK side failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut pass: SdkPass = serde_json::from_str(stdout.trim())
        .map_err(|e| format!("the SDK side printed `{stdout}`: {e}"))?;
    pass.cpu_secs = cpu_secs;
    Ok(SdkRun {
        pass,
        calls: CallDelta::between(&before, &after),
    })
}
