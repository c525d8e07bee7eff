//! Tenancy scenarios that issue 17 found open, under the real authorizer:
//! an ActivationCode author who may not read Secrets cannot have the
//! namespace's credentials (a token, or AK/SK) sent to an endpoint they
//! name, while a MetaStudioConnection (an administrator's choice) to that
//! very endpoint works; and an older resource of another namespace naming
//! the victim's robot and project without its credentials stops nobody.

use crate::e2e::{OperatorProcess, Scenario, eventually};
use crate::{READY_WAIT, tenant};
use kube::Api;
use kube::api::PostParams;
use metastudio_operator::crd::{ActivationCode, Condition};
use metastudio_operator::simulator::{DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const SINGLE: &[&str] = &["replicaCount=1", "leaderElection.enabled=false"];

/// A local endpoint in front of the simulator that counts the connections
/// it accepts and forwards each, byte for byte.
async fn counting_proxy(target: std::net::SocketAddr) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (endpoint, count)
}

fn secret(namespace: &str, name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
           "stringData": data})
}

fn activation_code(namespace: &str, name: &str, spec: Value) -> ActivationCode {
    serde_json::from_value(json!({
        "apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "ActivationCode",
        "metadata": {"name": name, "namespace": namespace}, "spec": spec,
    }))
    .unwrap()
}

/// Waits until `name`'s Ready condition has `reason`.
async fn ready_reason(api: &Api<ActivationCode>, name: &str, reason: &str) -> Condition {
    eventually(
        &format!("{name} to report Ready reason {reason}"),
        READY_WAIT,
        || async move {
            let ready = api
                .get(name)
                .await
                .ok()?
                .status?
                .condition("Ready")?
                .clone();
            (ready.reason == reason).then_some(ready)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l_an_endpoint_an_activation_code_names_gets_no_credentials_a_connection_to_it_works() {
    let s = Scenario::with_tenants(
        "endpoints",
        crate::common::offline::fleet_seed(3, 2, 7),
        FaultConfig::default(),
        SINGLE,
        &["t"],
    )
    .await;
    let ns = s.tenants[0].name.clone();
    let (proxy, reached) = counting_proxy(s.sim.addr()).await;
    // The namespace's credentials, which the tenant cannot read: a static
    // token (valid beyond MetaStudio), and AK/SK.
    for object in [
        secret(&ns, "token", json!({"authToken": "a-static-iam-token"})),
        secret(
            &ns,
            "aksk",
            json!({"accessKey": DEFAULT_ACCESS_KEY, "secretKey": DEFAULT_SECRET_KEY}),
        ),
    ] {
        crate::e2e::chart::apply_object(&s.cluster.client, &object).await;
    }
    let operator = OperatorProcess::start(&s.replica("endpoints-0"));
    let tenant = tenant(&s, &ns).await;
    let codes: Api<ActivationCode> = Api::namespaced(tenant, &ns);
    for (name, robot, secret) in [
        ("via-token", "robot-0", "token"),
        ("via-aksk", "robot-1", "aksk"),
    ] {
        let spec = json!({"robotId": robot, "validPeriod": 9,
            "connection": {"endpoint": proxy, "projectId": s.sim.project_id(),
                           "credentialsSecretRef": {"name": secret}}});
        codes
            .create(&PostParams::default(), &activation_code(&ns, name, spec))
            .await
            .unwrap_or_else(|e| panic!("the tenant creates {name}: {e}"));
    }
    for name in ["via-token", "via-aksk"] {
        let refused = ready_reason(&codes, name, "ConnectionNotAllowed").await;
        assert!(
            refused
                .message
                .starts_with("spec.connection.endpoint is not an official MetaStudio endpoint"),
            "{name}: {}",
            refused.message
        );
    }
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "no connection reached the endpoint the tenant named"
    );
    assert_eq!(s.sim.counters().total_calls(), 0, "no MetaStudio call");

    // The namespace's administrator names that endpoint in a connection.
    let connection = json!({"apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "MetaStudioConnection",
        "metadata": {"name": "gateway", "namespace": ns},
        "spec": {"endpoint": proxy, "projectId": s.sim.project_id(), "credentialsSecretRef": {"name": "aksk"}}});
    crate::e2e::chart::apply_object(&s.cluster.client, &connection).await;
    let spec =
        json!({"robotId": "robot-2", "validPeriod": 9, "connectionRef": {"name": "gateway"}});
    codes
        .create(
            &PostParams::default(),
            &activation_code(&ns, "via-connection", spec),
        )
        .await
        .unwrap();
    ready_reason(&codes, "via-connection", "Synced").await;
    assert!(
        reached.load(Ordering::SeqCst) > 0,
        "the connection's calls went through the endpoint"
    );
    // The refused ones still reached nothing: only robot-2 was called for.
    let robots: Vec<String> = s
        .sim
        .with_store(|store| store.all_codes())
        .into_iter()
        .filter(|c| c.valid_period == 9)
        .map(|c| c.robot_id)
        .collect();
    assert_eq!(
        robots,
        ["robot-2", "robot-2"],
        "only via-connection changed codes"
    );
    let mut hidden = s.secrets_to_hide();
    hidden.push("a-static-iam-token".to_owned());
    s.assert_clean_logs(&[&operator], &hidden);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l_an_older_squatter_without_the_credentials_stops_nobody() {
    let s = Scenario::with_tenants(
        "squatter",
        crate::common::robot_seed(2, 7),
        FaultConfig::default(),
        SINGLE,
        &["s"],
    )
    .await;
    let squatters: Api<ActivationCode> =
        Api::namespaced(s.cluster.client.clone(), &s.tenants[0].name);
    let operator = OperatorProcess::start(&s.replica("squatter-0"));
    // Older: the victim's robot and project, and a Secret that does not exist.
    let spec = json!({"robotId": crate::ROBOT, "validPeriod": 1,
        "connection": {"projectId": s.sim.project_id(), "credentialsSecretRef": {"name": "none"}}});
    let squatter = squatters
        .create(
            &PostParams::default(),
            &activation_code(&s.tenants[0].name, "squatter", spec),
        )
        .await
        .unwrap();
    ready_reason(&squatters, "squatter", "CredentialsNotFound").await;
    let created = squatter.metadata.creation_timestamp.unwrap().0;
    eventually(
        "a creation time later than the squatter's",
        Duration::from_secs(5),
        || async { (jiff::Timestamp::now().as_second() > created.as_second()).then_some(()) },
    )
    .await;
    s.apply(&s.manifest("victim", crate::ROBOT, json!({"validPeriod": 30})))
        .await;
    s.ready("victim").await;
    let periods: Vec<u16> = s
        .sim
        .with_store(|store| store.all_codes())
        .into_iter()
        .map(|c| c.valid_period)
        .collect();
    assert_eq!(periods, [30, 30], "the victim manages its codes");
    s.assert_clean_logs(&[&operator], &s.secrets_to_hide());
}
