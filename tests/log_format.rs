//! `--log-format json` writes one JSON object a line to stderr (with the
//! level, the message, the event's fields and the reconcile span), and
//! `--log-format text` does not; neither leaks the keys.

mod common;

use common::offline::*;
use common::simulator;
use metastudio_operator::simulator::{DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig};
use serde_json::Value;

fn reconcile_with_logs(format: &str) -> (std::process::Output, String) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sim = rt.block_on(simulator(fleet_seed(1, 2, 3), FaultConfig::default()));
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    fleet_manifests(&manifests, 1, 5, None);
    let output = run_reconcile(
        &sim,
        &[
            "-f",
            &path_str(&manifests),
            "--status-file",
            &path_str(&status_file(dir.path())),
            "--log-format",
            format,
            "--log-level",
            "debug",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{}", text(&output));
    for key in [DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY] {
        assert!(!stderr.contains(key), "a key in the logs:\n{stderr}");
    }
    (output, stderr)
}

#[test]
fn json_logs_are_one_object_a_line_with_level_message_fields_and_span() {
    let (_, stderr) = reconcile_with_logs("json");
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(!lines.is_empty(), "no logs at debug level");
    for line in &lines {
        assert!(
            line["timestamp"].is_string()
                && line["level"].is_string()
                && line["message"].is_string(),
            "timestamp, level and message on every line: {line}"
        );
    }
    let response = lines
        .iter()
        .find(|l| l["message"] == "response")
        .unwrap_or_else(|| panic!("no debug line of a MetaStudio response in {lines:#?}"));
    assert_eq!(response["level"], "DEBUG");
    assert_eq!(
        response["status"], 200,
        "event fields are top-level: {response}"
    );
    assert!(
        response["spans"].as_array().is_some_and(|spans| spans
            .iter()
            .any(|s| s["name"] == "reconcile" && s["resource"] == "test/fleet-0")),
        "the reconcile span names the resource: {response}"
    );
}

#[test]
fn text_logs_are_not_json() {
    let (_, stderr) = reconcile_with_logs("text");
    let line = stderr
        .lines()
        .find(|l| l.contains("response"))
        .unwrap_or_else(|| panic!("no debug line of a MetaStudio response in:\n{stderr}"));
    assert!(serde_json::from_str::<Value>(line).is_err(), "{line}");
    assert!(
        line.contains(" DEBUG reconcile{resource=test/fleet-0}:"),
        "plain text (no colour codes in a file) with the span: {line:?}"
    );
}
