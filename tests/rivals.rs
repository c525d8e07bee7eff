//! Conflict detection keyed on who calls, through the engine's Host
//! contract with an in-memory host: an older resource that names the same
//! robot and codes is a rival only when it would call the same endpoint and
//! project with the same credentials. A squatter naming another tenant's
//! project with credentials that are missing, malformed or other, or whose
//! connection is refused, touches nothing and stops nobody.

mod common;

use common::{ROBOT, fast_options, robot_seed, simulator};
use metastudio_operator::crd::ActivationCode;
use metastudio_operator::engine::{Engine, Mode, OperatorDefaults};
use metastudio_operator::metastudio::Transport;
use metastudio_operator::metastudio::settings::ConnectionSettings;
use metastudio_operator::offline::host::OfflineHost;
use metastudio_operator::secret::Secret;
use metastudio_operator::simulator::{
    DEFAULT_ACCESS_KEY, DEFAULT_PROJECT_ID, DEFAULT_SECRET_KEY, FaultConfig, Simulator,
};
use metastudio_operator::tenancy::DefaultCredentialsScope;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// An ActivationCode of ROBOT in `namespace`, created at `created`, with
/// `connection` as its `spec.connection`.
fn resource(namespace: &str, name: &str, created: &str, connection: Value) -> ActivationCode {
    serde_json::from_value(json!({
        "apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "ActivationCode",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
        "spec": {"robotId": ROBOT, "validPeriod": 9, "connection": connection},
    }))
    .unwrap()
}

/// A Secret's data, decoded.
type SecretData = BTreeMap<String, Secret>;

fn keys(access_key: &str, secret_key: &str) -> SecretData {
    [
        ("accessKey".to_owned(), Secret::new(access_key)),
        ("secretKey".to_owned(), Secret::new(secret_key)),
    ]
    .into()
}

/// The cluster's rules: the simulator is the operator's endpoint and
/// project; resources bring their namespace's Secret.
fn engine(sim: &Simulator) -> Engine {
    let defaults = OperatorDefaults {
        settings: ConnectionSettings {
            endpoint: Some(sim.endpoint()),
            project_id: Some(sim.project_id().to_owned()),
            ..ConnectionSettings::default()
        },
        credentials_scope: DefaultCredentialsScope::Nobody,
        ..OperatorDefaults::default()
    };
    Engine::new(Transport::new(fast_options()).unwrap(), defaults)
}

/// The victim (retail/kiosk, its Secret `mine` holds the simulator's keys)
/// reconciled beside an older squatter in namespace `elsewhere` with
/// `connection`; `theirs` is the squatter's Secret `theirs`, if any. The
/// victim's Ready reason, and how many codes it changed.
async fn victim_beside(
    connection: Value,
    theirs: Option<BTreeMap<String, Secret>>,
) -> (String, u64) {
    let sim = simulator(robot_seed(2, 7), FaultConfig::default()).await;
    let mut secrets = BTreeMap::from([(
        "retail/mine".to_owned(),
        keys(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY),
    )]);
    if let Some(data) = theirs {
        secrets.insert("elsewhere/theirs".to_owned(), data);
    }
    let victim = resource(
        "retail",
        "kiosk",
        "2026-11-01T00:00:00Z",
        json!({"credentialsSecretRef": {"name": "mine"}}),
    );
    let squatter = resource("elsewhere", "squatter", "2020-01-01T00:00:00Z", connection);
    let host = OfflineHost::new(secrets, None, None).unwrap();
    host.hold_fleet([&victim, &squatter]);
    let report = engine(&sim)
        .reconcile(&victim, &host, Mode::Normal, jiff::Timestamp::now())
        .await;
    (report.reason.to_owned(), sim.counters().total_updates())
}

#[tokio::test]
async fn only_an_older_resource_calling_as_the_same_caller_is_a_rival() {
    let theirs =
        || json!({"projectId": DEFAULT_PROJECT_ID, "credentialsSecretRef": {"name": "theirs"}});
    let table: [(&str, Value, Option<SecretData>, &str, u64); 6] = [
        ("its Secret does not exist", theirs(), None, "Synced", 2),
        (
            "its Secret is malformed",
            theirs(),
            Some(BTreeMap::from([("accessKey".to_owned(), Secret::new("a"))])),
            "Synced",
            2,
        ),
        (
            "other credentials for the victim's project",
            theirs(),
            Some(keys("their-ak", "their-sk")),
            "Synced",
            2,
        ),
        (
            "its connection is refused (an endpoint of its own)",
            json!({"endpoint": "http://127.0.0.1:9", "projectId": DEFAULT_PROJECT_ID,
                   "credentialsSecretRef": {"name": "theirs"}}),
            Some(keys(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)),
            "Synced",
            2,
        ),
        (
            "the same credentials from another namespace",
            theirs(),
            Some(keys(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)),
            "Conflict",
            0,
        ),
        (
            "the same credentials for another project",
            json!({"projectId": "another-project", "credentialsSecretRef": {"name": "theirs"}}),
            Some(keys(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)),
            "Synced",
            2,
        ),
    ];
    for (case, connection, secret, reason, updates) in table {
        assert_eq!(
            victim_beside(connection, secret).await,
            (reason.to_owned(), updates),
            "{case}"
        );
    }
}
