//! `reconcile -f` against the simulator: a drifted fleet converges, a second
//! run writes nothing, tokens reset each code once across runs, and a kill
//! -9 in the middle of a reset storm loses no reset and repeats none;
//! `--simulate` (the embedded simulator) reconciles examples/, and points
//! connection resources at itself as it does spec.connection; paced at the
//! region's documented quota, a run meets no 429 from a simulator that
//! enforces it.

mod common;

use common::offline::*;
use common::simulator;
use metastudio_operator::metastudio::Operation;
use metastudio_operator::metastudio::pacing::Quotas;
use metastudio_operator::offline::status_file::StatusFile;
use metastudio_operator::simulator::FaultConfig;
use std::time::Duration;

#[test]
fn a_drifted_fleet_converges_and_a_second_run_writes_nothing() {
    let rt = runtime();
    // 5 robots x 30 codes at 3 days; the manifests want 10.
    let sim = rt.block_on(simulator(fleet_seed(5, 30, 3), FaultConfig::default()));
    let dir = tempfile::tempdir().unwrap();
    fleet_manifests(dir.path(), 5, 10, None);
    let status = path_str(&status_file(dir.path()));
    let manifests = path_str(dir.path());

    let first = run_reconcile(&sim, &["-f", &manifests, "--status-file", &status]);
    assert!(first.status.success(), "{}", text(&first));
    assert!(String::from_utf8_lossy(&first.stdout).contains("5 resource(s): 5 converged"));
    let counters = sim.counters();
    assert_eq!(counters.total_updates(), 150, "one update per drifted code");
    assert_eq!(counters.total_resets(), 0);
    assert_eq!(
        counters.calls_of(Operation::ListActiveCode),
        5,
        "one page per robot"
    );
    assert!(sim.with_store(|s| s.all_codes().iter().all(|c| c.valid_period == 10)));

    let second = run_reconcile(&sim, &["-f", &manifests, "--status-file", &status]);
    assert!(second.status.success(), "{}", text(&second));
    let after = sim.counters();
    assert_eq!(
        after.total_updates(),
        150,
        "no remote write on the second run"
    );
    assert_eq!(after.calls_of(Operation::ListActiveCode), 10);
    assert!(String::from_utf8_lossy(&second.stdout).contains("no changes needed"));

    let file = StatusFile::load(&status_file(dir.path())).unwrap();
    let entry = &file.statuses["test/fleet-0"];
    assert_eq!(entry.managed_codes, 30);
    assert_eq!(entry.condition("Ready").unwrap().status, "True");
}

#[test]
fn a_reset_token_resets_each_code_once_across_runs() {
    let rt = runtime();
    let sim = rt.block_on(simulator(fleet_seed(3, 4, 7), FaultConfig::default()));
    let dir = tempfile::tempdir().unwrap();
    let status = path_str(&status_file(dir.path()));
    let manifests = path_str(dir.path());

    fleet_manifests(dir.path(), 3, 7, Some("2026-11-22"));
    for run in 0..2 {
        let out = run_reconcile(
            &sim,
            &["-f", &manifests, "--status-file", &status, "-o", "json"],
        );
        assert!(out.status.success(), "{}", text(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for resource in report.as_array().unwrap() {
            let events = resource["events"].as_array().unwrap();
            if run == 1 {
                assert!(events.is_empty(), "nothing left to do: {events:?}");
                continue;
            }
            // One event for the resource's four resets, naming each.
            assert_eq!(events.len(), 1, "{events:?}");
            let note = events[0]["note"].as_str().unwrap();
            assert_eq!(events[0]["reason"], "CodeReset");
            assert!(
                note.starts_with("reset 4 code(s) for token \"2026-11-22\": "),
                "{note}"
            );
            assert_eq!(note.matches("X-Request-Id: ").count(), 4, "{note}");
            for action in resource["actions"].as_array().unwrap() {
                assert!(note.contains(action["codeId"].as_str().unwrap()), "{note}");
            }
        }
    }
    let counters = sim.counters();
    assert_eq!(counters.total_resets(), 12);
    assert!(
        counters.resets.values().all(|&n| n == 1),
        "{:?}",
        counters.resets
    );

    fleet_manifests(dir.path(), 3, 7, Some("2026-12-01"));
    for _ in 0..2 {
        let out = run_reconcile(&sim, &["-f", &manifests, "--status-file", &status]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let counters = sim.counters();
    assert!(
        counters.resets.values().all(|&n| n == 2),
        "once more per new token: {:?}",
        counters.resets
    );
}

#[test]
fn dry_run_writes_nothing_and_reports_the_plan() {
    let rt = runtime();
    let sim = rt.block_on(simulator(fleet_seed(2, 3, 1), FaultConfig::default()));
    let dir = tempfile::tempdir().unwrap();
    fleet_manifests(dir.path(), 2, 5, Some("t"));
    // A resource that stops early is not saved either.
    std::fs::write(
        dir.path().join("suspended.yaml"),
        "apiVersion: metastudio.huaweicloud.com/v1alpha1\nkind: ActivationCode\nmetadata: {name: paused, namespace: test}\nspec: {robotId: robot-9, validPeriod: 5, suspend: true}\n",
    )
    .unwrap();
    let status = status_file(dir.path());
    let out = run_reconcile(
        &sim,
        &[
            "-f",
            &path_str(dir.path()),
            "--status-file",
            &path_str(&status),
            "--dry-run",
            "-o",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "drift remains: {}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report.as_array().unwrap().len(), 3);
    assert_eq!(
        report[0]["actions"].as_array().unwrap().len(),
        6,
        "3 resets and 3 updates planned"
    );
    assert_eq!(report[0]["actions"][0]["result"], "not applied (dry run)");
    let counters = sim.counters();
    assert_eq!(counters.total_resets() + counters.total_updates(), 0);
    assert!(!status.exists(), "a dry run writes no status");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("status"))
        .collect();
    assert!(leftovers.is_empty(), "nor a lock file: {leftovers:?}");
}

#[test]
fn kill_9_in_a_reset_storm_then_rerun_resets_each_code_exactly_once() {
    let rt = runtime();
    let faults = FaultConfig {
        latency: Duration::from_millis(15),
        lost_response_rate: 0.3,
        operations: [Operation::ResetActiveCode].into(),
        seed: 9,
        ..Default::default()
    };
    let sim = rt.block_on(simulator(fleet_seed(4, 40, 7), faults));
    let dir = tempfile::tempdir().unwrap();
    fleet_manifests(dir.path(), 4, 7, Some("storm"));
    let status = path_str(&status_file(dir.path()));
    let manifests = path_str(dir.path());

    let mut child = reconcile_command(
        &sim,
        &[
            "-f",
            &manifests,
            "--status-file",
            &status,
            "--concurrency",
            "2",
        ],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let ended = kill_9_when(&mut child, Duration::from_secs(60), || {
        sim.counters().total_resets() >= 30
    });
    assert_eq!(ended, None, "finished before the kill");
    let at_kill = sim.counters().total_resets();
    assert!(at_kill < 160, "killed mid-storm ({at_kill} of 160 resets)");

    StatusFile::load(&status_file(dir.path())).expect("the status file parses after kill -9");
    // The resets the kill interrupted wait out the grace, then settle.
    let out = run_until_settled(&sim, &["-f", &manifests, "--status-file", &status]);
    assert!(out.status.success(), "{}", text(&out));
    let counters = sim.counters();
    assert!(
        counters.calls_with(Operation::ResetActiveCode, "lost") > 0,
        "responses were lost"
    );
    assert_eq!(counters.resets.len(), 160, "every code reset");
    assert!(
        counters.resets.values().all(|&n| n == 1),
        "no code twice: {:?}",
        counters.resets.values().filter(|&&n| n != 1).count()
    );
}

#[test]
fn bad_manifests_are_refused_before_any_remote_call() {
    let rt = runtime();
    let sim = rt.block_on(simulator(fleet_seed(1, 1, 1), FaultConfig::default()));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: metastudio.huaweicloud.com/v1alpha1\nkind: ActivationCode\nmetadata: {name: a}\nspec: {robotId: r, validPeriod: 70000}\n",
    )
    .unwrap();
    let out = run_reconcile(&sim, &["-f", &path_str(dir.path())]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("spec.validPeriod") && stderr.contains("0 to 65535"),
        "{stderr}"
    );
    assert_eq!(sim.counters().total_calls(), 0);
}

/// The README's main job: `reconcile -f examples/ --simulate`.
#[test]
fn the_examples_converge_against_the_embedded_simulator() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let out = run_simulated(&["-f", examples, "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let resources = report.as_array().unwrap();
    assert_eq!(resources.len(), 3, "{report:#}");
    for resource in resources {
        assert_eq!(resource["converged"], true, "{resource:#}");
    }
    let lobby = resources
        .iter()
        .find(|r| r["resource"] == "retail/lobby-kiosk")
        .expect("lobby-kiosk is reported");
    assert!(
        !lobby["actions"].as_array().unwrap().is_empty(),
        "lobby-kiosk changed its codes through its MetaStudioConnection: {lobby:#}"
    );
    let desk = resources
        .iter()
        .find(|r| r["resource"] == "retail/info-desk")
        .expect("info-desk is reported");
    let created = desk["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "create" && a["result"].as_str().unwrap().starts_with("done"))
        .count();
    assert_eq!(
        created, 2,
        "info-desk filled its room to spec.count: {desk:#}"
    );
    assert_eq!(desk["status"]["managedCodes"], 4, "{desk:#}");
}

/// Connection resources take no operator default, so `--simulate` names the
/// simulator in them: a MetaStudioConnection with a region and a
/// ClusterMetaStudioConnection with a remote endpoint both reach it, with
/// their own credentials.
#[test]
fn simulate_points_connection_resources_at_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("manifests.yaml"),
        r#"apiVersion: simulator.metastudio-operator.dev/v1alpha1
kind: SimulatorSeed
metadata: {name: seed}
spec:
  robots:
    - {robotId: robot-a, generate: {count: 2, validPeriod: 3}}
    - {robotId: robot-b, generate: {count: 3, validPeriod: 3}}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {tier: kiosk}}
---
apiVersion: v1
kind: Secret
metadata: {name: own, namespace: shop}
stringData: {accessKey: shop-access-key, secretKey: shop-secret-key}
---
apiVersion: v1
kind: Secret
metadata: {name: shared, namespace: ops}
stringData: {accessKey: ops-access-key, secretKey: ops-secret-key}
---
apiVersion: metastudio.huaweicloud.com/v1alpha1
kind: MetaStudioConnection
metadata: {name: own-account, namespace: shop}
spec:
  region: cn-north-4
  projectId: 70b76e1c2d3f4a253880af501cd1a2b3
  credentialsSecretRef: {name: own}
---
apiVersion: metastudio.huaweicloud.com/v1alpha1
kind: ClusterMetaStudioConnection
metadata: {name: shared}
spec:
  endpoint: https://metastudio.example.invalid
  projectId: another-project
  credentialsSecretRef: {name: shared, namespace: ops}
  conditions:
    - namespaceSelector: {matchLabels: {tier: kiosk}}
---
apiVersion: metastudio.huaweicloud.com/v1alpha1
kind: ActivationCode
metadata: {name: a, namespace: shop}
spec: {robotId: robot-a, validPeriod: 7, connectionRef: {name: own-account}}
---
apiVersion: metastudio.huaweicloud.com/v1alpha1
kind: ActivationCode
metadata: {name: b, namespace: shop}
spec:
  robotId: robot-b
  validPeriod: 7
  connectionRef: {kind: ClusterMetaStudioConnection, name: shared}
"#,
    )
    .unwrap();
    let out = run_simulated(&["-f", &path_str(dir.path()), "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let updates = |name: &str| {
        let resource = report
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == format!("shop/{name}"))
            .unwrap_or_else(|| panic!("{name} is reported: {report:#}"));
        assert_eq!(resource["converged"], true, "{resource:#}");
        resource["actions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["result"].as_str().is_some_and(|r| r.starts_with("done")))
            .count()
    };
    assert_eq!(updates("a"), 2, "{report:#}");
    assert_eq!(updates("b"), 3, "{report:#}");
}

#[test]
fn connection_resources_on_disk_serve_their_namespace_and_refusals_call_nothing() {
    let rt = runtime();
    let sim = rt.block_on(simulator(fleet_seed(2, 2, 7), FaultConfig::default()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (endpoint, project) = (sim.endpoint(), sim.project_id().to_owned());
    let elsewhere = format!("http://{}", listener.local_addr().unwrap());
    std::fs::write(
        dir.path().join("tenant.yaml"),
        format!(
            "apiVersion: metastudio.huaweicloud.com/v1alpha1
kind: MetaStudioConnection
metadata: {{name: team, namespace: retail}}
spec: {{endpoint: \"{endpoint}\", projectId: {project}, credentialsSecretRef: {{name: team-credentials}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: team-credentials, namespace: retail}}
stringData: {{accessKey: {}, secretKey: {}}}
---
apiVersion: metastudio.huaweicloud.com/v1alpha1
kind: ActivationCode
metadata: {{name: through-team, namespace: retail}}
spec: {{robotId: robot-0, validPeriod: 9, connectionRef: {{name: team}}}}
---
apiVersion: metastudio.huaweicloud.com/v1alpha1
kind: ActivationCode
metadata: {{name: elsewhere, namespace: retail}}
spec: {{robotId: robot-1, validPeriod: 9, connection: {{endpoint: \"{elsewhere}\"}}}}
",
            metastudio_operator::simulator::DEFAULT_ACCESS_KEY,
            metastudio_operator::simulator::DEFAULT_SECRET_KEY,
        ),
    )
    .unwrap();
    let status = path_str(&status_file(dir.path()));
    let out = run_reconcile(
        &sim,
        &["-f", &path_str(dir.path()), "--status-file", &status],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "one resource is refused: {}",
        text(&out)
    );
    let file = StatusFile::load(&status_file(dir.path())).unwrap();
    let through = file.statuses["retail/through-team"]
        .condition("Ready")
        .unwrap();
    assert_eq!(through.reason, "Synced", "{through:?}");
    assert_eq!(
        sim.counters().total_updates(),
        2,
        "robot-0's codes went to 9 days"
    );
    let refused = file.statuses["retail/elsewhere"]
        .condition("Ready")
        .unwrap();
    assert_eq!(refused.reason, "ConnectionNotAllowed", "{refused:?}");
    assert!(
        refused.message.starts_with(
            "spec.connection.endpoint is set without spec.connection.credentialsSecretRef"
        ),
        "{}",
        refused.message
    );
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "nothing reached the endpoint the resource chose"
    );
}

/// Two ActivationCodes whose export files used to collide: namespace `a-b`
/// with Secret `c`, namespace `a` with Secret `b-c`.
fn colliding_exports(dir: &std::path::Path) {
    let doc = |namespace: &str, robot: usize, secret: &str| {
        format!(
            "---\napiVersion: metastudio.huaweicloud.com/v1alpha1\nkind: ActivationCode\nmetadata: {{name: kiosk, namespace: {namespace}}}\nspec: {{robotId: robot-{robot}, validPeriod: 3, exportSecretRef: {{name: {secret}}}}}\n"
        )
    };
    let text = doc("a-b", 0, "c") + &doc("a", 1, "b-c");
    std::fs::write(dir.join("exports.yaml"), text).unwrap();
}

#[test]
fn export_dir_holds_one_directory_per_namespace_and_private_files() {
    let rt = runtime();
    let sim = rt.block_on(simulator(fleet_seed(2, 3, 3), FaultConfig::default()));
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    colliding_exports(&manifests);
    let out_dir = dir.path().join("out");
    let status = path_str(&status_file(dir.path()));
    let args = [
        "-f",
        &path_str(&manifests),
        "--status-file",
        &status,
        "--export-dir",
        &path_str(&out_dir),
    ];

    let out = run_reconcile(&sim, &args);
    assert!(out.status.success(), "{}", text(&out));
    let codes = sim.with_store(|s| s.all_codes());
    for (file, namespace, robot) in [
        ("a-b/c.yaml", "a-b", "robot-0"),
        ("a/b-c.yaml", "a", "robot-1"),
    ] {
        let path = out_dir.join(file);
        let secret: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(secret["metadata"]["namespace"], namespace, "{file}");
        let data = secret["stringData"].as_object().unwrap();
        let mine: Vec<_> = codes.iter().filter(|c| c.robot_id == robot).collect();
        assert_eq!(data.len(), mine.len(), "{file}");
        for code in mine {
            assert_eq!(
                data[&code.active_code_id],
                code.active_code.expose(),
                "{file}"
            );
            assert!(
                !text(&out).contains(code.active_code.expose()),
                "a code value in the output"
            );
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}");
        }
    }
}

#[cfg(unix)]
#[test]
fn a_symlinked_namespace_directory_is_export_failed_and_nothing_goes_through_it() {
    let rt = runtime();
    let sim = rt.block_on(simulator(fleet_seed(2, 3, 3), FaultConfig::default()));
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    colliding_exports(&manifests);
    let out_dir = dir.path().join("out");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out_dir.join("a")).unwrap();
    let status = path_str(&status_file(dir.path()));

    let out = run_reconcile(
        &sim,
        &[
            "-f",
            &path_str(&manifests),
            "--status-file",
            &status,
            "--export-dir",
            &path_str(&out_dir),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ExportFailed"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{} is a symbolic link: remove the symbolic link",
            out_dir.join("a").display()
        )),
        "{stdout}"
    );
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    assert!(
        out_dir.join("a-b/c.yaml").is_file(),
        "the other export is written"
    );
}

#[test]
fn paced_within_the_regions_documented_quota_a_run_meets_no_429() {
    let rt = runtime();
    // 2 robots x 5 codes at 3 days; the manifests want 10: 10 updates.
    let sim = rt.block_on(simulator(fleet_seed(2, 5, 3), FaultConfig::default()));
    // cn-north-4's documented quotas, enforced as the API gateway does.
    sim.set_quotas(Some(Quotas {
        reads: 20.0,
        writes: 5.0,
    }));
    let dir = tempfile::tempdir().unwrap();
    fleet_manifests(dir.path(), 2, 10, None);
    let manifests = path_str(dir.path());

    // The region beside the endpoint names the quotas the client paces at;
    // half of them leaves the room a tenant's other clients would need (and
    // keeps a stalled machine from bunching calls into a 429).
    let pacing = ["--region", "cn-north-4", "--rate-share", "0.5"];
    let status = path_str(&dir.path().join("status.json"));
    let args = ["-f", &manifests, "--status-file", &status];
    let out = paced_reconcile_command(&sim, &args, &pacing)
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 resource(s): 2 converged"));
    let counters = sim.counters();
    assert_eq!(counters.answered("429"), 0, "{:?}", counters.calls);
    assert_eq!(counters.total_updates(), 10);
    assert!(counters.updates.values().all(|n| *n == 1));
}
