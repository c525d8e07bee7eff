//! `reconcile -f` against an endpoint that answers out of bounds (a
//! redirect, a page with more codes than asked, a `count` past what one
//! listing reads) and against a robot with more codes than one resource
//! manages: the run ends at once with an error that says what happened and
//! what to do, exits non-zero, and writes nothing (no remote write, no
//! export file, no code in the status file).

mod common;

use common::offline::{reconcile_command, runtime, text};
use common::raw_http::{
    CountingServer, codes_page, counting_server, json_response, redirect_response,
};
use metastudio_operator::engine::limits::MAX_CODES_PER_RESOURCE;
use metastudio_operator::simulator::{DEFAULT_PROJECT_ID, FaultConfig, Seed};
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

/// Only reads reached the server.
fn assert_only_reads(server: &CountingServer) {
    let lines = server.request_lines();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|l| l.starts_with("GET ")), "{lines:?}");
}

/// A ListActiveCode answer of `n` codes reporting `count` in all.
fn page(n: usize, count: u64) -> Vec<u8> {
    let body = codes_page(ROBOT, n, count, "V");
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

/// The hostile listing of issue 17: every page 20,000 codes and a count of
/// 4294967295. Refused at the first page (BENCHMARKS.md has its memory).
#[test]
fn a_page_larger_than_asked_fails_the_run_at_the_first_page() {
    let rt = runtime();
    let server = rt.block_on(counting_server(page(20_000, u64::from(u32::MAX))));
    let (dir, before) = converged_once(&rt);
    let out = reconcile_against(&server.endpoint, dir.path());
    let shown = text(&out);
    assert!(
        shown.contains("the endpoint answered 20000 codes for limit 100"),
        "{shown}"
    );
    assert_nothing_written(&out, dir.path(), &before);
    assert_only_reads(&server);
    assert_eq!(server.request_lines().len(), 1, "one page asked");
}

#[test]
fn a_count_past_what_one_listing_reads_fails_the_run_at_the_first_page() {
    let rt = runtime();
    let server = rt.block_on(counting_server(page(100, u64::from(u32::MAX))));
    let (dir, before) = converged_once(&rt);
    let out = reconcile_against(&server.endpoint, dir.path());
    let shown = text(&out);
    assert!(shown.contains("Ready=False (TooManyCodes)"), "{shown}");
    assert!(
        shown.contains("the endpoint reports 4294967295 codes for the robot"),
        "{shown}"
    );
    assert_nothing_written(&out, dir.path(), &before);
    assert_eq!(server.request_lines().len(), 1, "one page asked");
}

/// A robot with one code more than a resource manages: a resource that
/// selects one room of them converges; widened to them all, it is refused,
/// told how to split, and keeps what it had.
#[test]
fn a_resource_over_the_code_cap_is_told_to_split_and_keeps_what_it_had() {
    let rt = runtime();
    let seed = Seed::from_yaml(&format!(
        "spec: {{robots: [{{robotId: {ROBOT}, generate: {{count: {MAX_CODES_PER_RESOURCE}, validPeriod: 1, roomId: hall}}, codes: [{{roomId: lobby, validPeriod: 1}}]}}]}}"
    ))
    .unwrap();
    let sim = rt.block_on(common::simulator(seed, FaultConfig::default()));
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("status.json").display().to_string();
    let exports = dir.path().join("exports").display().to_string();
    let run = |room: Option<&str>| {
        let manifests = manifest(dir.path(), room);
        reconcile_command(
            &sim,
            &[
                "-f",
                &manifests,
                "--status-file",
                &status,
                "--export-dir",
                &exports,
            ],
        )
        .output()
        .expect("the binary runs")
    };

    let split = run(Some("hall"));
    let before = assert_converged(&split, dir.path());

    // Widened to every code of the robot: one more than the cap.
    let whole = run(None);
    let shown = text(&whole);
    assert!(shown.contains("Ready=False (TooManyCodes)"), "{shown}");
    assert!(
        shown.contains(&format!(
            "selects {} codes of robot {ROBOT}, more than the {MAX_CODES_PER_RESOURCE}",
            MAX_CODES_PER_RESOURCE + 1
        )),
        "{shown}"
    );
    assert!(
        shown.contains("spec.roomId or spec.activeCodeIds"),
        "{shown}"
    );
    assert_nothing_written(&whole, dir.path(), &before);
    let counters = sim.counters();
    assert!(
        counters.resets.is_empty() && counters.updates.is_empty(),
        "{counters:?}"
    );
}
