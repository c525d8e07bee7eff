//! Helpers for tests that run `metastudio-operator reconcile` as a process.

use metastudio_operator::simulator::{DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, Simulator};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
    let list: Vec<String> = (0..robots)
        .map(|i| {
            format!("{{robotId: robot-{i}, generate: {{count: {codes}, validPeriod: {days}}}}}")
        })
        .collect();
    metastudio_operator::simulator::Seed::from_yaml(&format!(
        "spec: {{robots: [{}]}}",
        list.join(", ")
    ))
    .unwrap()
}

pub fn reconcile_command(sim: &Simulator, args: &[&str]) -> Command {
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
        .args(["--rate-limit", "0", "--timeout", "5s"])
        .env("CLOUD_SDK_AK", DEFAULT_ACCESS_KEY)
        .env("CLOUD_SDK_SK", DEFAULT_SECRET_KEY)
        .env_remove("RUST_LOG");
    command
}

pub fn run_reconcile(sim: &Simulator, args: &[&str]) -> Output {
    reconcile_command(sim, args)
        .output()
        .expect("the binary runs")
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
