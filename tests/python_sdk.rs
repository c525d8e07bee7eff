//! The official Huawei Cloud Python SDK as the oracle: it drives the
//! simulator (so the simulator checks signatures exactly as the SDK makes
//! them), and it regenerates the signer vectors, which must equal the
//! committed ones. `scripts/test` installs the SDK (tests/python/requirements.txt).

mod common;

use common::*;
use metastudio_operator::metastudio::Operation;
use metastudio_operator::simulator::{DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig};
use std::path::Path;
use std::process::Command;

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn require_sdk() {
    let status = Command::new(python())
        .args(["-c", "import huaweicloudsdkcore, huaweicloudsdkmetastudio"])
        .status()
        .expect("python3 runs");
    assert!(
        status.success(),
        "the official SDK is not installed for {}: run scripts/test, or pip install -r tests/python/requirements.txt",
        python()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdk_calls_the_simulator_and_wrong_keys_get_401() {
    require_sdk();
    let sim = simulator(robot_seed(3, 3), FaultConfig::default()).await;
    let output = tokio::process::Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/sdk_against_simulator.py"))
        .env("SIM_ENDPOINT", sim.endpoint())
        .env("SIM_PROJECT_ID", sim.project_id())
        .env("SIM_AK", DEFAULT_ACCESS_KEY)
        .env("SIM_SK", DEFAULT_SECRET_KEY)
        .env("SIM_ROBOT", ROBOT)
        .output()
        .await
        .expect("the SDK script runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let results: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(results["listed"], 3);
    assert_eq!(results["updated_valid_period"], 10);
    for op in ["list", "update", "reset", "once-code"] {
        assert_eq!(results["ok"][op], true, "{op}: {results}");
        assert_eq!(results["wrong_sk"][op], "401 APIGW.0301", "{op}: {results}");
    }
    let counters = sim.counters();
    assert_eq!(counters.calls_with(Operation::ResetActiveCode, "200"), 1);
    assert_eq!(counters.calls_with(Operation::ResetActiveCode, "401"), 1);
    assert_eq!(counters.calls_with(Operation::CreateOnceCode, "401"), 1);
}

#[test]
fn committed_signer_vectors_equal_what_the_official_sdk_writes_now() {
    require_sdk();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(python())
        .arg(root.join("scripts/signer_vectors.py"))
        .output()
        .expect("the vector script runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let committed = std::fs::read(root.join("tests/data/signer_vectors.json")).unwrap();
    assert!(
        output.stdout == committed,
        "tests/data/signer_vectors.json is stale: run python3 scripts/signer_vectors.py > tests/data/signer_vectors.json"
    );
}
