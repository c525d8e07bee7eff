//! The direct commands, as a user runs them: `codes list|show|update|reset`
//! and `once-code` against the simulator, their output formats, and what
//! they print when a call fails.

mod common;

use common::*;
use metastudio_operator::metastudio::Operation;
use metastudio_operator::simulator::{
    DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig, Simulator,
};
use serde_json::Value;
use std::process::Output;

struct Cli {
    rt: tokio::runtime::Runtime,
    sim: Simulator,
}

impl Cli {
    fn new(codes: u32) -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let sim = rt.block_on(simulator(robot_seed(codes, 3), FaultConfig::default()));
        Self { rt, sim }
    }

    fn run(&self, args: &[&str]) -> Output {
        let _guard = self.rt.enter();
        std::process::Command::new(env!("CARGO_BIN_EXE_metastudio-operator"))
            .args(args)
            .env("METASTUDIO_ENDPOINT", self.sim.endpoint())
            .env("METASTUDIO_PROJECT_ID", self.sim.project_id())
            .env("CLOUD_SDK_AK", DEFAULT_ACCESS_KEY)
            .env("CLOUD_SDK_SK", DEFAULT_SECRET_KEY)
            .env_remove("METASTUDIO_AUTH_TOKEN")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }

    /// Runs a command that must succeed and returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    fn first_id(&self) -> String {
        self.sim.with_store(|s| s.all_codes())[0]
            .active_code_id
            .clone()
    }

    fn value_of(&self, id: &str) -> String {
        self.sim
            .with_store(|s| s.show(id).unwrap())
            .active_code
            .expose()
            .to_owned()
    }
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn list_prints_a_table_json_or_yaml_and_hides_code_values() {
    let cli = Cli::new(3);
    let id = cli.first_id();
    let table = cli.ok(&["codes", "list", "--robot-id", ROBOT]);
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("ID"), "{table}");
    assert_eq!(lines.count(), 3, "{table}");
    assert!(table.contains(&id));
    assert!(
        !table.contains(&cli.value_of(&id)),
        "values only on request"
    );

    let list = cli.json(&["codes", "list", "--robot-id", ROBOT, "-o", "json"]);
    assert_eq!(list.as_array().unwrap().len(), 3);
    assert!(list[0].get("active_code").is_none());
    let yaml = cli.ok(&[
        "codes",
        "list",
        "--robot-id",
        ROBOT,
        "-o",
        "yaml",
        "--show-codes",
    ]);
    let parsed: Vec<Value> = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(parsed.len(), 3);
    assert!(
        parsed.iter().all(|c| c["active_code"].is_string()),
        "{yaml}"
    );
}

#[test]
fn show_update_and_reset_print_the_code_after_the_call() {
    let cli = Cli::new(1);
    let id = cli.first_id();
    let shown = cli.json(&["codes", "show", &id, "-o", "json"]);
    assert_eq!(
        shown["active_code_id"],
        id.as_str(),
        "one object, not a list"
    );

    let updated = cli.json(&["codes", "update", &id, "--valid-period", "10", "-o", "json"]);
    assert_eq!(updated["valid_period"], 10);
    assert!(updated["expire_time"].is_string());
    let permanent = cli.json(&["codes", "update", &id, "--valid-period", "0", "-o", "json"]);
    assert!(permanent.get("expire_time").is_none(), "{permanent}");

    let before = cli.value_of(&id);
    let reset = cli.json(&[
        "codes",
        "reset",
        &id,
        "--keep-auth-credential",
        "-o",
        "json",
        "--show-codes",
    ]);
    assert_eq!(reset["active_code_id"], id.as_str());
    assert_ne!(reset["active_code"], before.as_str(), "a new value");
    assert_eq!(reset["active_code"], cli.value_of(&id).as_str());
    assert_eq!(cli.sim.counters().resets_of(&id), 1);
}

#[test]
fn once_code_prints_a_single_use_code() {
    let cli = Cli::new(1);
    let code = cli.ok(&["once-code"]);
    let code = code.trim();
    assert_eq!(code.len(), 64, "{code}");
    let json = cli.json(&["once-code", "--json"]);
    assert_eq!(json["once_code"].as_str().unwrap().len(), 64);
    assert_eq!(cli.sim.counters().calls_of(Operation::CreateOnceCode), 2);
}

#[test]
fn a_failed_call_exits_non_zero_naming_operation_code_message_and_request_id() {
    let cli = Cli::new(1);
    let out = cli.run(&["codes", "show", "0000000000"]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for part in [
        "ShowActiveCode",
        "HTTP 400",
        "MSS.47010041",
        "does not exist",
        "X-Request-Id: ",
    ] {
        assert!(stderr.contains(part), "{part} missing from: {stderr}");
    }
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_or_ambiguous_settings_are_named_with_the_fix() {
    let cli = Cli::new(1);
    let _guard = cli.rt.enter();
    let bare = std::process::Command::new(env!("CARGO_BIN_EXE_metastudio-operator"))
        .args(["codes", "list", "--robot-id", ROBOT])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(bare.status.code(), Some(2), "bad input: nothing was sent");
    let stderr = String::from_utf8_lossy(&bare.stderr);
    assert!(
        stderr.contains("CLOUD_SDK_AK") && stderr.contains("--auth-token"),
        "{stderr}"
    );

    let both = cli.run(&["codes", "list", "--robot-id", ROBOT, "--auth-token", "tok"]);
    assert_eq!(both.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert!(stderr.contains("unset one"), "{stderr}");
    assert_eq!(cli.sim.counters().total_calls(), 0, "nothing was sent");
}
