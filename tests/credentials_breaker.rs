//! Repeated 401/403 trip a breaker: the operator stops calling with those
//! credentials, reports CredentialsRejected, and tries again only after the
//! pause or as soon as the credentials Secret changes.

mod common;

use common::*;
use metastudio_operator::crd::ActivationCode;
use metastudio_operator::engine::conditions::reason;
use metastudio_operator::engine::{Engine, Mode, Next, OperatorDefaults};
use metastudio_operator::metastudio::breaker::BreakerPolicy;
use metastudio_operator::metastudio::settings::ConnectionSettings;
use metastudio_operator::metastudio::{
    ApiErrorKind, ClientOptions, Credentials, Operation, Transport,
};
use metastudio_operator::offline::host::OfflineHost;
use metastudio_operator::secret::Secret;
use metastudio_operator::simulator::{DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

fn options(initial_open: Duration) -> ClientOptions {
    ClientOptions {
        breaker: BreakerPolicy {
            threshold: 3,
            initial_open,
            max_open: Duration::from_secs(600),
        },
        ..fast_options()
    }
}

fn wrong_credentials() -> Credentials {
    Credentials::ak_sk(DEFAULT_ACCESS_KEY, "not-the-secret-key")
}

fn list_calls(sim: &metastudio_operator::simulator::Simulator) -> u64 {
    sim.counters().calls_of(Operation::ListActiveCode)
}

#[tokio::test]
async fn rejected_credentials_pause_then_a_probe_goes_out() {
    let sim = simulator(robot_seed(2, 3), FaultConfig::default()).await;
    let transport = Transport::new(options(Duration::from_millis(200))).unwrap();
    let wrong = transport.client(connection(&sim.endpoint(), wrong_credentials()));

    for _ in 0..3 {
        let err = wrong.list_all(ROBOT, None).await.unwrap_err();
        assert_eq!(err.status(), Some(401));
    }
    assert_eq!(
        sim.counters().calls_with(Operation::ListActiveCode, "401"),
        3
    );

    // Open: nothing more reaches the API, and the error says why and what to do.
    for _ in 0..5 {
        let err = wrong.list_all(ROBOT, None).await.unwrap_err();
        assert!(
            matches!(err.kind, ApiErrorKind::CredentialsSuspended { .. }),
            "{err}"
        );
        assert!(err.is_auth_failure(), "reported as a rejection");
        assert!(err.request_id().is_some(), "names the last rejection");
        let text = err.to_string();
        assert!(
            text.contains("rejected 3 time(s)") && text.contains("fix the access key"),
            "{text}"
        );
        assert!(!text.contains("not-the-secret-key"), "{text}");
    }
    assert_eq!(list_calls(&sim), 3, "no call while the breaker is open");

    // Other credentials on the same transport are not held back.
    let right = transport.client(connection(&sim.endpoint(), good_credentials()));
    assert_eq!(right.list_all(ROBOT, None).await.unwrap().len(), 2);
    assert_eq!(list_calls(&sim), 4);

    // After the pause one probe goes out; rejected again, it pauses again.
    let deadline = Instant::now() + Duration::from_secs(20);
    while list_calls(&sim) == 4 {
        assert!(Instant::now() < deadline, "no probe after the pause");
        let _ = wrong.list_all(ROBOT, None).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(list_calls(&sim), 5);
    let err = wrong.list_all(ROBOT, None).await.unwrap_err();
    assert!(
        matches!(err.kind, ApiErrorKind::CredentialsSuspended { .. }),
        "{err}"
    );
    assert_eq!(list_calls(&sim), 5);
}

fn resource() -> ActivationCode {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "metastudio.huaweicloud.com/v1alpha1",
        "kind": "ActivationCode",
        "metadata": {"name": "kiosk", "namespace": "retail", "generation": 1},
        "spec": {
            "robotId": ROBOT,
            "validPeriod": 3,
            "connection": {"credentialsSecretRef": {"name": "creds"}},
        },
    }))
    .unwrap()
}

fn host(secret_key: &str) -> OfflineHost {
    let data: BTreeMap<String, Secret> = [
        ("accessKey".to_owned(), Secret::new(DEFAULT_ACCESS_KEY)),
        ("secretKey".to_owned(), Secret::new(secret_key)),
    ]
    .into();
    OfflineHost::new([("retail/creds".to_owned(), data)].into(), None, None).unwrap()
}

#[tokio::test]
async fn the_engine_reports_credentials_rejected_and_a_changed_secret_is_tried_at_once() {
    let sim = simulator(robot_seed(2, 3), FaultConfig::default()).await;
    let engine = Engine::new(
        Transport::new(options(Duration::from_secs(600))).unwrap(),
        OperatorDefaults {
            settings: ConnectionSettings {
                endpoint: Some(sim.endpoint()),
                project_id: Some(sim.project_id().to_owned()),
                ..Default::default()
            },
            ..OperatorDefaults::default()
        },
    );
    let mut ac = resource();
    let wrong = host("not-the-secret-key");
    for attempt in 1..=6 {
        let report = engine
            .reconcile(&ac, &wrong, Mode::Normal, jiff::Timestamp::now())
            .await;
        assert_eq!(report.reason, reason::CREDENTIALS_REJECTED, "{attempt}");
        let ready = report.status.condition("Ready").unwrap();
        assert_eq!(ready.status, "False");
        assert!(
            ready.message.contains("check the access key"),
            "{}",
            ready.message
        );
        assert!(
            report.status.condition("Stalled").is_some(),
            "a human must act"
        );
        if attempt > 3 {
            // The controller waits out the pause instead of its own backoff.
            let Next::Retry { at_least } = report.next else {
                panic!("{:?}", report.next)
            };
            assert!(at_least.unwrap() > Duration::from_secs(60), "{at_least:?}");
        }
        ac.status = Some((*report.status).clone());
    }
    assert_eq!(list_calls(&sim), 3, "three rejections, then no more calls");

    // The Secret is fixed: the new credentials are tried at once.
    let report = engine
        .reconcile(
            &ac,
            &host(DEFAULT_SECRET_KEY),
            Mode::Normal,
            jiff::Timestamp::now(),
        )
        .await;
    assert_eq!(report.reason, reason::SYNCED, "{:?}", report.status);
    assert!(report.status.condition("Stalled").is_none());
    assert_eq!(list_calls(&sim), 4);
    assert_eq!(
        sim.counters().calls_with(Operation::ListActiveCode, "200"),
        1
    );
}
