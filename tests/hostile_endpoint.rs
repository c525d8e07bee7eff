//! `reconcile -f` against an endpoint that answers out of bounds (a
//! redirect): the run ends at once with an error that says what happened,
//! exits non-zero, and writes nothing (the export and the status's codes
//! stay as the run before left them).

mod common;

use common::offline::{runtime, text};
use common::raw_http::{counting_server, json_response, redirect_response};
use metastudio_operator::simulator::DEFAULT_PROJECT_ID;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const ROBOT: &str = common::ROBOT;

/// One ActivationCode of `ROBOT` exporting its codes, in `roomId` `room`
/// when given; returns the manifest's path.
fn manifest(dir: &Path, room: Option<&str>) -> String {
    let room = room.map_or(String::new(), |r| format!("\n  roomId: {r}"));
    let path = dir.join("codes.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: metastudio.huaweicloud.com/v1alpha1\nkind: ActivationCode\nmetadata: {{name: kiosk, namespace: test}}\nspec:\n  robotId: {ROBOT}\n  validPeriod: 1{room}\n  exportSecretRef: {{name: kiosk-codes}}\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// `reconcile -f` of one resource against `endpoint` with a token, keeping
/// statuses and exports in `dir`.
fn reconcile_against(endpoint: &str, dir: &Path) -> Output {
    let manifests = manifest(dir, None);
    Command::new(env!("CARGO_BIN_EXE_metastudio-operator"))
        .args(["reconcile", "-f", &manifests])
        .args(["--endpoint", endpoint, "--project-id", DEFAULT_PROJECT_ID])
        .args(["--read-rate", "0", "--write-rate", "0", "--timeout", "5s"])
        .arg("--status-file")
        .arg(dir.join("status.json"))
        .arg("--export-dir")
        .arg(dir.join("exports"))
        .env("METASTUDIO_AUTH_TOKEN", "IAM-TOKEN")
        .env_remove("CLOUD_SDK_AK")
        .env_remove("CLOUD_SDK_SK")
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

/// What a run leaves on disk: the export files and the status file's
/// statuses without their conditions (a failed run records its error
/// there, and nothing else).
#[derive(Debug, PartialEq)]
struct Written {
    exports: BTreeMap<PathBuf, Vec<u8>>,
    statuses: serde_json::Value,
}

fn written(dir: &Path) -> Written {
    let mut exports = BTreeMap::new();
    let mut dirs = vec![dir.join("exports")];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                exports.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    let mut statuses = std::fs::read(dir.join("status.json"))
        .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap()["statuses"].take())
        .unwrap_or_default();
    for status in statuses
        .as_object_mut()
        .into_iter()
        .flat_map(|m| m.values_mut())
    {
        status.as_object_mut().unwrap().remove("conditions");
    }
    Written { exports, statuses }
}

/// A run that converged: it exported the resource's codes.
fn assert_converged(out: &Output, dir: &Path) -> Written {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    let before = written(dir);
    assert_eq!(before.exports.len(), 1, "{before:?}");
    before
}

/// A run that stopped before any change: it failed, and the export and the
/// status it left are those of the run before.
fn assert_nothing_written(out: &Output, dir: &Path, before: &Written) {
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    assert_eq!(&written(dir), before, "{}", text(out));
}

/// A page of `n` codes (ids `c0`, `c1`, ...) reporting `count` in all.
fn page(n: usize, count: u64) -> Vec<u8> {
    let codes: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"active_code_id":"c{i}","active_code":"V{i}","robot_id":"{ROBOT}","valid_period":1,"create_time":"2026-01-01T00:00:00Z","update_time":"2026-01-01T00:00:00Z"}}"#
            )
        })
        .collect();
    let body = format!(
        r#"{{"offset":0,"limit":100,"count":{count},"data":[{}]}}"#,
        codes.join(",")
    );
    json_response("200 OK", "rid-page", body.as_bytes())
}

/// A directory where one run against a well-behaved endpoint (one code)
/// exported the code and recorded its status; and what it wrote.
fn converged_once(rt: &tokio::runtime::Runtime) -> (tempfile::TempDir, Written) {
    let good = rt.block_on(counting_server(page(1, 1)));
    let dir = tempfile::tempdir().unwrap();
    let out = reconcile_against(&good.endpoint, dir.path());
    let before = assert_converged(&out, dir.path());
    (dir, before)
}

#[test]
fn a_redirect_fails_the_run_and_the_token_goes_nowhere_else() {
    let rt = runtime();
    let elsewhere = rt.block_on(counting_server(page(1, 1)));
    let location = format!(
        "{}/v1/{DEFAULT_PROJECT_ID}/digital-human-chat/active-code",
        elsewhere.endpoint
    );
    let endpoint = rt.block_on(counting_server(redirect_response(
        "307 Temporary Redirect",
        "rid-307",
        &location,
    )));
    let (dir, before) = converged_once(&rt);
    let out = reconcile_against(&endpoint.endpoint, dir.path());
    let shown = text(&out);
    assert!(
        shown.contains(&format!("HTTP 307 redirect to {location} not followed")),
        "{shown}"
    );
    assert!(shown.contains("RemoteError"), "{shown}");
    assert_nothing_written(&out, dir.path(), &before);
    assert_eq!(
        elsewhere.connections(),
        0,
        "the request followed the redirect"
    );
    assert_eq!(
        endpoint.request_lines().len(),
        1,
        "a redirect is not retried"
    );
}
