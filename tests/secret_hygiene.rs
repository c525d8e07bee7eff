//! No credential, token, activation code or once-code in any log line (at
//! trace level, every crate) or error message, whatever the faults.

mod common;

use common::capture::{Captured, assert_clean, trace_subscriber};
use common::*;
use metastudio_operator::metastudio::{Credentials, Operation, Transport};
use metastudio_operator::secret::Secret;
use metastudio_operator::simulator::{
    DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig, Simulator, SimulatorConfig,
};

const SECURITY_TOKEN: &str = "TEMPORARY-SECURITY-TOKEN-abc123";
const IAM_TOKEN: &str = "STATIC-IAM-TOKEN-xyz789";

// current_thread: the subscriber set below sees every task, the simulator's
// and the HTTP stack's included.
#[tokio::test(flavor = "current_thread")]
async fn trace_logs_and_errors_never_hold_a_secret_under_faults() {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(trace_subscriber(&logs));

    let mut config = SimulatorConfig {
        seed: Some(robot_seed(30, 2)),
        faults: FaultConfig {
            server_error_rate: 0.1,
            throttle_rate: 0.1,
            retry_after_secs: 0,
            drop_rate: 0.1,
            lost_response_rate: 0.1,
            seed: 5,
            ..Default::default()
        },
        ..SimulatorConfig::default()
    };
    config.accepted.tokens.push(IAM_TOKEN.into());
    let sim = Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let transport = Transport::new(fast_options()).unwrap();
    let mut conn = connection(
        &sim.endpoint(),
        Credentials::AkSk {
            access_key: DEFAULT_ACCESS_KEY.into(),
            secret_key: DEFAULT_SECRET_KEY.into(),
            security_token: Some(SECURITY_TOKEN.into()),
        },
    );
    conn.app_user_id = Some("kiosk-7".into());
    let client = transport.client(conn);

    let mut errors = Vec::new();
    let mut once_codes: Vec<Secret> = Vec::new();
    let codes = loop {
        match client.list_all(ROBOT, None).await {
            Ok(codes) => break codes,
            Err(e) => errors.push(format!("{e} {e:?}")),
        }
    };
    for code in &codes {
        if let Err(e) = client.update(&code.active_code_id, 5).await {
            errors.push(format!("{e} {e:?}"));
        }
        match client.reset(&code.active_code_id, true).await {
            Ok(reply) => tracing::info!(reply = ?reply, "reset reply"),
            Err(e) => errors.push(format!("{e} {e:?}")),
        }
        match client.once_code().await {
            Ok(reply) => {
                tracing::info!(reply = ?reply, "once-code reply");
                once_codes.push(reply.value.once_code);
            }
            Err(e) => errors.push(format!("{e} {e:?}")),
        }
    }
    for credentials in [
        Credentials::ak_sk(DEFAULT_ACCESS_KEY, "wrong-secret"),
        Credentials::Token(IAM_TOKEN.into()),
    ] {
        match transport
            .client(connection(&sim.endpoint(), credentials))
            .show("missing")
            .await
        {
            Ok(_) => panic!("an unknown code cannot be shown"),
            Err(e) => errors.push(format!("{e} {e:?}")),
        }
    }

    let counters = sim.counters();
    assert!(
        counters.calls_with(Operation::ResetActiveCode, "lost") > 0,
        "faults were injected: {counters:?}"
    );
    assert!(!errors.is_empty());
    assert!(!once_codes.is_empty());

    let mut secrets: Vec<String> = vec![
        DEFAULT_ACCESS_KEY.into(),
        DEFAULT_SECRET_KEY.into(),
        SECURITY_TOKEN.into(),
        IAM_TOKEN.into(),
    ];
    secrets.extend(codes.iter().map(|c| c.active_code.expose().to_owned()));
    secrets.extend(
        sim.with_store(|s| s.all_codes())
            .iter()
            .map(|c| c.active_code.expose().to_owned()),
    );
    secrets.extend(once_codes.iter().map(|c| c.expose().to_owned()));

    let text = logs.text();
    assert!(
        text.contains("TRACE") || text.contains("DEBUG"),
        "logs were captured"
    );
    assert_clean(&text, &secrets);
    assert_clean(&errors.join("\n"), &secrets);
}

#[test]
fn the_binary_at_trace_level_prints_no_secret() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sim = rt.block_on(simulator(robot_seed(3, 2), FaultConfig::default()));
    let run = |sk: &str, args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_metastudio-operator"))
            .args(args)
            .args(["--log-level", "trace"])
            .env("METASTUDIO_ENDPOINT", sim.endpoint())
            .env("METASTUDIO_PROJECT_ID", sim.project_id())
            .env("CLOUD_SDK_AK", DEFAULT_ACCESS_KEY)
            .env("CLOUD_SDK_SK", sk)
            .env("CLOUD_SDK_SECURITY_TOKEN", SECURITY_TOKEN)
            .output()
            .unwrap()
    };
    let ok = run(DEFAULT_SECRET_KEY, &["codes", "list", "--robot-id", ROBOT]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let denied = run("wrong-secret", &["codes", "list", "--robot-id", ROBOT]);
    assert!(!denied.status.success());
    let denied_err = String::from_utf8_lossy(&denied.stderr);
    assert!(denied_err.contains("APIGW.0301"), "{denied_err}");

    let mut secrets: Vec<String> = vec![
        DEFAULT_ACCESS_KEY.into(),
        DEFAULT_SECRET_KEY.into(),
        "wrong-secret".into(),
        SECURITY_TOKEN.into(),
    ];
    secrets.extend(
        sim.with_store(|s| s.all_codes())
            .iter()
            .map(|c| c.active_code.expose().to_owned()),
    );
    // Without --show-codes even stdout holds no code value.
    for output in [&ok, &denied] {
        assert_clean(&String::from_utf8_lossy(&output.stderr), &secrets);
        assert_clean(&String::from_utf8_lossy(&output.stdout), &secrets);
    }
}
