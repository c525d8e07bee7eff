//! The command-line tools the suite drives as a user would: kubectl and
//! helm. `KUBECTL` and `HELM` name them explicitly; otherwise the `PATH`,
//! then the copies `scripts/chart-check` fetches into `target/tools/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn find(variable: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        return path.into();
    }
    let fetched = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/tools")
        .join(name);
    on_path(name)
        .or_else(|| fetched.is_file().then_some(fetched))
        .unwrap_or_else(|| {
            panic!(
                "{name} not found: put it on PATH, set {variable}, or run scripts/chart-check once (it fetches {name} into target/tools/)"
            )
        })
}

pub fn kubectl() -> Command {
    Command::new(find("KUBECTL", "kubectl"))
}

pub fn helm() -> Command {
    let mut command = Command::new(find("HELM", "helm"));
    // Keep helm's cache and config out of the home directory.
    let home = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tools/helm-home");
    command
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    command
}

/// Runs `command`, failing with its output unless it succeeds; returns
/// stdout.
pub fn succeed(command: &mut Command) -> String {
    let output = command.output().expect("the tool runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        describe(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
