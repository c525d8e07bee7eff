//! Tenancy against kube's mocked API service: which connection an
//! ActivationCode may use. Every refusal is a Stalled condition naming the
//! field, the connection and the rule, and is made before any remote call:
//! the simulator sees no request, and no credentials Secret is read. The
//! allowed paths read the Secret the connection names, where it is.

mod common;

use common::controller::*;
use common::kube_mock::{ApiServer, mock_client, not_found, secret};
use common::{ROBOT, robot_seed, simulator};
use kube::api::PartialObjectMeta;
use metastudio_operator::controller::directory::ClusterDirectory;
use metastudio_operator::crd::ActivationCode;
use metastudio_operator::crd::connection::{ClusterMetaStudioConnection, MetaStudioConnection};
use metastudio_operator::engine::OperatorDefaults;
use metastudio_operator::metastudio::Credentials;
use metastudio_operator::simulator::{
    DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig, Simulator,
};
use metastudio_operator::tenancy::DefaultCredentialsScope;
use serde_json::{Value, json};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const OPERATOR_NS: &str = "metastudio-system";

fn target(sim: &Simulator) -> Value {
    json!({"endpoint": sim.endpoint(), "projectId": sim.project_id()})
}

/// `team` in retail; `shared` (its Secret in metastudio-system) for
/// namespaces labelled tier=kiosk, robot ROBOT only; retail is labelled so.
fn directory(sim: &Simulator, shared_conditions: Value) -> ClusterDirectory {
    let mut team = target(sim);
    team["credentialsSecretRef"] = json!({"name": "team-credentials"});
    let team: MetaStudioConnection = serde_json::from_value(json!({
        "apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "MetaStudioConnection",
        "metadata": {"name": "team", "namespace": NS}, "spec": team,
    }))
    .unwrap();
    let retail: PartialObjectMeta<k8s_openapi::api::core::v1::Namespace> =
        serde_json::from_value(json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": NS, "labels": {"tier": "kiosk"}},
        }))
        .unwrap();
    ClusterDirectory::of(&[team], &[shared(sim, shared_conditions)], &[retail])
}

/// `shared`, its Secret in metastudio-system, for `conditions`.
fn shared(sim: &Simulator, conditions: Value) -> ClusterMetaStudioConnection {
    let mut shared = target(sim);
    shared["credentialsSecretRef"] =
        json!({"name": "shared-credentials", "namespace": OPERATOR_NS});
    shared["conditions"] = conditions;
    serde_json::from_value(json!({
        "apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "ClusterMetaStudioConnection",
        "metadata": {"name": "shared"}, "spec": shared,
    }))
    .unwrap()
}

fn kiosks_only() -> Value {
    json!([{"namespaceSelector": {"matchLabels": {"tier": "kiosk"}}, "robotIds": [ROBOT]}])
}

/// The operator's defaults with credentials of its own, for `scope`.
fn operator_with(sim: &Simulator, scope: DefaultCredentialsScope) -> OperatorDefaults {
    OperatorDefaults {
        credentials: Some(Credentials::ak_sk(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)),
        credentials_scope: scope,
        ..defaults(sim)
    }
}

fn keys() -> [(&'static str, &'static str); 2] {
    [
        ("accessKey", DEFAULT_ACCESS_KEY),
        ("secretKey", DEFAULT_SECRET_KEY),
    ]
}

/// A refusal: one Warning Event with the reason, then the status. Nothing
/// else: no Secret read, no MetaStudio call.
async fn expect_refusal(
    api: &mut ApiServer,
    r: &ActivationCode,
    reason: &str,
    task: tokio::task::JoinHandle<kube::runtime::controller::Action>,
    sim: &Simulator,
) -> String {
    let event = api.expect_event(NS, reason).await;
    let status = expect_status(api, r).await;
    api.finish(task).await;
    let ready = condition(&status, "Ready");
    assert_eq!(
        (ready["status"].as_str(), ready["reason"].as_str()),
        (Some("False"), Some(reason)),
        "{status}"
    );
    assert_eq!(
        condition(&status, "Stalled")["status"],
        "True",
        "a human must act: {status}"
    );
    assert_eq!(
        sim.counters().total_calls(),
        0,
        "no MetaStudio call for a refusal"
    );
    assert_eq!(event.body["note"], ready["message"]);
    ready["message"].as_str().unwrap().to_owned()
}

async fn refused(
    spec: Value,
    operator: impl FnOnce(&Simulator) -> OperatorDefaults,
    conditions: Value,
    reason: &str,
) -> String {
    let sim = simulator(robot_seed(2, 7), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let r = resource("kiosk", spec);
    let ctx = context_with(client, &[&r], operator(&sim), directory(&sim, conditions));
    let task = run_reconcile(&r, &ctx).await;
    expect_refusal(&mut api, &r, reason, task, &sim).await
}

#[tokio::test]
async fn a_connection_of_another_namespace_cannot_be_named() {
    // `team` exists in retail only; this resource is in retail, so a name
    // it does not have in its own namespace is refused.
    let message = refused(
        json!({"robotId": ROBOT, "validPeriod": 7, "connectionRef": {"name": "other-team"}}),
        defaults,
        kiosks_only(),
        "ConnectionNotFound",
    )
    .await;
    assert!(
        message.starts_with("spec.connectionRef: MetaStudioConnection retail/other-team does not exist: create it in namespace retail"),
        "{message}"
    );
}

#[tokio::test]
async fn a_cluster_connection_that_does_not_admit_the_namespace_refuses_it() {
    let message = refused(
        json!({"robotId": ROBOT, "validPeriod": 7,
               "connectionRef": {"kind": "ClusterMetaStudioConnection", "name": "shared"}}),
        defaults,
        json!([{"namespaces": ["museum"]}]),
        "ConnectionNotAllowed",
    )
    .await;
    assert!(
        message.starts_with(
            "spec.connectionRef: ClusterMetaStudioConnection shared does not admit namespace retail"
        ),
        "{message}"
    );
}

#[tokio::test]
async fn a_cluster_connection_refuses_a_robot_it_does_not_list() {
    let message = refused(
        json!({"robotId": "someone-elses-robot", "validPeriod": 7,
               "connectionRef": {"kind": "ClusterMetaStudioConnection", "name": "shared"}}),
        defaults,
        kiosks_only(),
        "ConnectionNotAllowed",
    )
    .await;
    assert!(
        message.starts_with("spec.robotId: ClusterMetaStudioConnection shared admits namespace retail only for other robots (spec.conditions[0].robotIds"),
        "{message}"
    );
}

/// Creates name the resource's robot, so a connection limited to robot ids
/// limits them too: refused before any call, so not one code is created.
#[tokio::test]
async fn a_cluster_connection_limited_to_robots_creates_no_code_for_another() {
    let message = refused(
        json!({"robotId": "someone-elses-robot", "validPeriod": 7, "roomId": "lobby", "count": 50,
               "connectionRef": {"kind": "ClusterMetaStudioConnection", "name": "shared"}}),
        defaults,
        kiosks_only(),
        "ConnectionNotAllowed",
    )
    .await;
    assert!(
        message.starts_with("spec.robotId: ClusterMetaStudioConnection shared admits namespace retail only for other robots"),
        "{message}"
    );
}

#[tokio::test]
async fn a_namespace_whose_labels_are_not_known_yet_is_admitted_by_no_selector_and_retried() {
    // A selector that a namespace without labels would pass: unknown labels
    // are not taken for none.
    let sim = simulator(robot_seed(2, 7), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let r = resource(
        "kiosk",
        json!({"robotId": ROBOT, "validPeriod": 7,
               "connectionRef": {"kind": "ClusterMetaStudioConnection", "name": "shared"}}),
    );
    let not_finance = json!([{"namespaceSelector": {"matchExpressions": [
        {"key": "team", "operator": "NotIn", "values": ["finance"]}]}}]);
    let unseen = ClusterDirectory::of(&[], &[shared(&sim, not_finance)], &[]);
    let ctx = context_with(client, &[&r], defaults(&sim), unseen);
    let task = run_reconcile(&r, &ctx).await;
    api.expect_event(NS, "NamespaceLabelsUnknown").await;
    let status = expect_status(&mut api, &r).await;
    let action = api.finish(task).await;
    let ready = condition(&status, "Ready");
    assert_eq!(ready["reason"], "NamespaceLabelsUnknown", "{status}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("the labels of namespace retail are not known yet"),
        "{status}"
    );
    assert_eq!(
        condition(&status, "Reconciling")["status"],
        "True",
        "retried, not stalled: {status}"
    );
    assert!(requeue_secs(&action).is_some(), "a retry is scheduled");
    assert_eq!(sim.counters().total_calls(), 0);
}

#[tokio::test]
async fn the_operators_credentials_are_not_for_namespaces_that_may_not_use_them() {
    let message = refused(
        json!({"robotId": ROBOT, "validPeriod": 7}),
        |sim| operator_with(sim, DefaultCredentialsScope::from_names(&["museum".into()])),
        kiosks_only(),
        "ConnectionNotAllowed",
    )
    .await;
    assert!(
        message.contains("namespace retail may not use the operator's own credentials (--default-credentials-namespaces allows: museum)"),
        "{message}"
    );
}

/// A listener that counts the connections made to it.
fn counting_listener() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stream.is_ok() {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (endpoint, count)
}

#[tokio::test]
async fn an_endpoint_of_the_resources_choosing_never_gets_the_operators_credentials() {
    let (endpoint, connections) = counting_listener();
    let message = refused(
        json!({"robotId": ROBOT, "validPeriod": 7, "connection": {"endpoint": endpoint}}),
        |sim| operator_with(sim, DefaultCredentialsScope::Everyone),
        kiosks_only(),
        "ConnectionNotAllowed",
    )
    .await;
    assert!(
        message.starts_with(
            "spec.connection.endpoint is set without spec.connection.credentialsSecretRef"
        ),
        "{message}"
    );
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "nothing reached the named endpoint"
    );
}

#[tokio::test]
async fn a_namespaced_connection_reads_its_secret_in_the_resources_namespace() {
    let sim = simulator(robot_seed(2, 7), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let r = resource(
        "kiosk",
        json!({"robotId": ROBOT, "validPeriod": 7, "connectionRef": {"name": "team"}}),
    );
    let ctx = context_with(
        client,
        &[&r],
        defaults(&sim),
        directory(&sim, kiosks_only()),
    );
    let task = run_reconcile(&r, &ctx).await;
    api.expect(
        "GET",
        &format!("/api/v1/namespaces/{NS}/secrets/team-credentials"),
        200,
        secret(NS, "team-credentials", &keys()),
    )
    .await;
    let status = expect_status(&mut api, &r).await;
    api.finish(task).await;
    assert_eq!(condition(&status, "Ready")["reason"], "Synced", "{status}");
    assert!(sim.counters().total_calls() > 0);
}

#[tokio::test]
async fn a_cluster_connection_reads_its_secret_where_it_names_it() {
    let sim = simulator(robot_seed(2, 7), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let r = resource(
        "kiosk",
        json!({"robotId": ROBOT, "validPeriod": 7,
               "connectionRef": {"kind": "ClusterMetaStudioConnection", "name": "shared"}}),
    );
    let ctx = context_with(
        client,
        &[&r],
        defaults(&sim),
        directory(&sim, kiosks_only()),
    );
    let task = run_reconcile(&r, &ctx).await;
    api.expect(
        "GET",
        &format!("/api/v1/namespaces/{OPERATOR_NS}/secrets/shared-credentials"),
        200,
        secret(OPERATOR_NS, "shared-credentials", &keys()),
    )
    .await;
    let status = expect_status(&mut api, &r).await;
    api.finish(task).await;
    assert_eq!(condition(&status, "Ready")["reason"], "Synced", "{status}");
}

#[tokio::test]
async fn a_token_never_goes_over_plain_http_to_another_host_unless_the_connection_allows_it() {
    let sim = simulator(robot_seed(2, 7), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let (endpoint, connections) = counting_listener();
    // Not loopback as far as the rule goes: the name is not localhost.
    let remote = endpoint.replace("127.0.0.1", "kiosk-gateway.internal");
    let gateway: MetaStudioConnection = serde_json::from_value(json!({
        "apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "MetaStudioConnection",
        "metadata": {"name": "gateway", "namespace": NS},
        "spec": {"endpoint": remote, "projectId": sim.project_id(), "credentialsSecretRef": {"name": CREDS}},
    }))
    .unwrap();
    let r = resource(
        "kiosk",
        json!({"robotId": ROBOT, "validPeriod": 7, "connectionRef": {"name": "gateway"}}),
    );
    let ctx = context_with(
        client,
        &[&r],
        defaults(&sim),
        ClusterDirectory::of(&[gateway], &[], &[]),
    );
    let task = run_reconcile(&r, &ctx).await;
    api.expect(
        "GET",
        &format!("/api/v1/namespaces/{NS}/secrets/{CREDS}"),
        200,
        secret(NS, CREDS, &[("authToken", "a-static-token")]),
    )
    .await;
    let message = expect_refusal(&mut api, &r, "ConnectionNotAllowed", task, &sim).await;
    assert!(message.starts_with("MetaStudioConnection retail/gateway: refusing to send a token (X-Auth-Token or X-Security-Token) over plain http to kiosk-gateway.internal"), "{message}");
    assert!(!message.contains("a-static-token"), "{message}");
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_endpoint_of_the_resources_choosing_never_gets_the_namespaces_credentials() {
    // Someone who may create ActivationCodes but not read Secrets names
    // their own server and the namespace's Secret (a token, or AK/SK): the
    // refusal comes before the Secret is read (expect_refusal: only the
    // Event and the status), and nothing connects to the server.
    let (endpoint, connections) = counting_listener();
    for operator in [defaults, |sim: &Simulator| {
        operator_with(sim, DefaultCredentialsScope::Everyone)
    }] {
        let message = refused(
            json!({"robotId": ROBOT, "validPeriod": 7,
                   "connection": {"endpoint": endpoint, "credentialsSecretRef": {"name": CREDS}}}),
            operator,
            kiosks_only(),
            "ConnectionNotAllowed",
        )
        .await;
        assert!(
            message.starts_with("spec.connection.endpoint is not an official MetaStudio endpoint")
                && message.contains("create a MetaStudioConnection with this endpoint"),
            "{message}"
        );
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "nothing reached the named endpoint"
    );
}

#[tokio::test]
async fn a_resource_of_another_project_naming_the_same_robot_is_no_conflict() {
    let sim = simulator(robot_seed(2, 7), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    // Older, of another tenant's project, claiming the same robot id.
    let mut squatter = resource(
        "squatter",
        json!({"robotId": ROBOT, "validPeriod": 7,
               "connection": {"projectId": "someone-elses-project", "credentialsSecretRef": {"name": "theirs"}}}),
    );
    squatter.metadata.namespace = Some("elsewhere".into());
    squatter.metadata.creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2020-01-01T00:00:00Z".parse().unwrap(),
        ));
    let r = resource(
        "kiosk",
        with_creds(json!({"robotId": ROBOT, "validPeriod": 7})),
    );
    let ctx = context_with(
        client,
        &[&r, &squatter],
        defaults(&sim),
        directory(&sim, kiosks_only()),
    );
    let task = run_reconcile(&r, &ctx).await;
    expect_creds(&mut api).await;
    let status = expect_status(&mut api, &r).await;
    api.finish(task).await;
    assert_eq!(condition(&status, "Ready")["reason"], "Synced", "{status}");
}

/// The Secret `elsewhere/theirs` of the squatter, as the API answers it.
enum Theirs {
    /// Not read: the squatter's connection is refused.
    NotRead,
    Missing,
    /// The API server fails the read.
    Unreadable,
    Keys(&'static str, &'static str),
}

/// An ActivationCode `name` of namespace `elsewhere`, older than any other,
/// naming the victim's robot and project with `valid_period`, its Secret
/// `theirs`, and `connection` merged into its `spec.connection`.
fn squatter(sim: &Simulator, name: &str, valid_period: u16, connection: Value) -> ActivationCode {
    let mut spec = json!({"robotId": ROBOT, "validPeriod": valid_period,
        "connection": {"projectId": sim.project_id(), "credentialsSecretRef": {"name": "theirs"}}});
    for (k, v) in connection.as_object().unwrap() {
        spec["connection"][k] = v.clone();
    }
    let mut squatter = resource(name, spec);
    squatter.metadata.namespace = Some("elsewhere".into());
    squatter.metadata.uid = Some(format!("uid-{name}"));
    squatter.metadata.creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2020-01-01T00:00:00Z".parse().unwrap(),
        ));
    squatter
}

/// The path of the Secret `theirs` of the squatters.
const THEIRS: &str = "/api/v1/namespaces/elsewhere/secrets/theirs";

/// One reconcile of `squatter`: its Secret read (answered `theirs`), what
/// it then does against the simulator, an Event when `event` is given,
/// its status written.
async fn reconcile_squatter(
    api: &mut ApiServer,
    ctx: &Arc<metastudio_operator::controller::Context>,
    squatter: &ActivationCode,
    theirs: (u16, Value),
    event: Option<&str>,
) {
    let task = run_reconcile(squatter, ctx).await;
    api.expect("GET", THEIRS, theirs.0, theirs.1).await;
    if let Some(reason) = event {
        api.expect_event("elsewhere", reason).await;
    }
    let name = squatter.metadata.name.clone().unwrap();
    let status = format!(
        "/apis/metastudio.huaweicloud.com/v1alpha1/namespaces/elsewhere/activationcodes/{name}/status"
    );
    api.expect(
        "PATCH",
        &status,
        200,
        serde_json::to_value(squatter).unwrap(),
    )
    .await;
    api.finish(task).await;
}

/// Squatters reconciled once are known by what they called as: the victim's
/// reconciles read none of their Secrets. Before, each squatter on the
/// target cost one Secret read on every victim reconcile, and any failed
/// read stopped the victim (ConflictUnchecked).
#[tokio::test]
async fn squatters_reconciled_once_cost_the_victim_no_secret_read() {
    let sim = simulator(robot_seed(2, 7), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let squatters: Vec<ActivationCode> = (0..3)
        .map(|i| squatter(&sim, &format!("squatter-{i}"), 30, json!({})))
        .collect();
    let r = resource(
        "kiosk",
        with_creds(json!({"robotId": ROBOT, "validPeriod": 7})),
    );
    let mut known: Vec<&ActivationCode> = squatters.iter().collect();
    known.push(&r);
    let ctx = context_with(
        client,
        &known,
        defaults(&sim),
        directory(&sim, kiosks_only()),
    );
    for squatter in &squatters {
        let missing = (404, not_found("secrets", "theirs"));
        reconcile_squatter(
            &mut api,
            &ctx,
            squatter,
            missing,
            Some("CredentialsNotFound"),
        )
        .await;
    }
    for _ in 0..2 {
        let task = run_reconcile(&r, &ctx).await;
        expect_creds(&mut api).await;
        let status = expect_status(&mut api, &r).await;
        api.finish(task).await;
        assert_eq!(condition(&status, "Ready")["reason"], "Synced", "{status}");
    }
}

/// A rival reconciled once is known too: the same credentials stop the
/// younger resource without reading the rival's Secret again.
#[tokio::test]
async fn a_rival_reconciled_once_stops_the_younger_without_a_secret_read() {
    let sim = simulator(robot_seed(2, 7), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let rival = squatter(&sim, "rival", 7, json!({}));
    let r = resource(
        "kiosk",
        with_creds(json!({"robotId": ROBOT, "validPeriod": 7})),
    );
    let ctx = context_with(
        client,
        &[&rival, &r],
        defaults(&sim),
        directory(&sim, kiosks_only()),
    );
    let keys = [
        ("accessKey", DEFAULT_ACCESS_KEY),
        ("secretKey", DEFAULT_SECRET_KEY),
    ];
    let same = (200, secret("elsewhere", "theirs", &keys));
    reconcile_squatter(&mut api, &ctx, &rival, same, None).await;
    let task = run_reconcile(&r, &ctx).await;
    expect_creds(&mut api).await;
    api.expect_event(NS, "Conflict").await;
    let status = expect_status(&mut api, &r).await;
    api.finish(task).await;
    let ready = condition(&status, "Ready");
    assert_eq!(ready["reason"], "Conflict", "{status}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .starts_with("ActivationCode elsewhere/rival"),
        "{status}"
    );
}

/// An older ActivationCode in namespace `elsewhere` names the victim's
/// robot, project and endpoint, with `connection` merged into its own
/// `spec.connection` (its Secret `theirs` answered as `theirs`); the
/// victim's reconcile ends with Ready reason `expected` (after a Warning
/// Event, unless Synced). The victim's status.
async fn squatted(connection: Value, theirs: Theirs, expected: &str) -> (Value, Simulator) {
    let sim = simulator(robot_seed(2, 7), FaultConfig::default()).await;
    let (client, mut api) = mock_client();
    let squatter = squatter(&sim, "squatter", 30, connection);
    let r = resource(
        "kiosk",
        with_creds(json!({"robotId": ROBOT, "validPeriod": 7})),
    );
    let ctx = context_with(
        client,
        &[&r, &squatter],
        defaults(&sim),
        directory(&sim, kiosks_only()),
    );
    let task = run_reconcile(&r, &ctx).await;
    expect_creds(&mut api).await;
    let path = "/api/v1/namespaces/elsewhere/secrets/theirs";
    match theirs {
        Theirs::NotRead => {}
        Theirs::Missing => {
            api.expect("GET", path, 404, not_found("secrets", "theirs"))
                .await;
        }
        Theirs::Unreadable => {
            let failure = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "message": "etcdserver: request timed out", "reason": "InternalError", "code": 500});
            api.expect("GET", path, 500, failure).await;
        }
        Theirs::Keys(ak, sk) => {
            let answer = secret(
                "elsewhere",
                "theirs",
                &[("accessKey", ak), ("secretKey", sk)],
            );
            api.expect("GET", path, 200, answer).await;
        }
    }
    if expected != "Synced" {
        api.expect_event(NS, expected).await;
    }
    let status = expect_status(&mut api, &r).await;
    api.finish(task).await;
    assert_eq!(condition(&status, "Ready")["reason"], expected, "{status}");
    (status, sim)
}

#[tokio::test]
async fn an_older_squatter_without_the_victims_credentials_stops_nothing() {
    for (case, connection, theirs) in [
        ("its Secret does not exist", json!({}), Theirs::Missing),
        (
            "other credentials",
            json!({}),
            Theirs::Keys("their-ak", "their-sk"),
        ),
        (
            "its connection is refused",
            json!({"endpoint": "http://127.0.0.1:9"}),
            Theirs::NotRead,
        ),
    ] {
        // The victim manages its codes.
        let (_, sim) = squatted(connection, theirs, "Synced").await;
        assert!(sim.counters().total_calls() > 0, "{case}");
    }
}

#[tokio::test]
async fn an_older_resource_with_the_same_credentials_in_another_namespace_is_a_rival() {
    let (_, sim) = squatted(
        json!({}),
        Theirs::Keys(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY),
        "Conflict",
    )
    .await;
    assert_eq!(
        sim.counters().total_updates(),
        0,
        "the younger writes nothing"
    );
}

#[tokio::test]
async fn a_rival_whose_secret_cannot_be_read_now_holds_the_resource_back_and_is_retried() {
    let (status, sim) = squatted(json!({}), Theirs::Unreadable, "ConflictUnchecked").await;
    let message = condition(&status, "Ready")["message"].as_str().unwrap();
    assert!(
        message.starts_with("ActivationCode elsewhere/squatter is older and selects some of the same codes, and whether it calls as this resource does cannot be told now (cannot read Secret elsewhere/theirs"),
        "{message}"
    );
    assert_eq!(
        condition(&status, "Reconciling")["status"],
        "True",
        "{status}"
    );
    assert_eq!(
        sim.counters().total_updates() + sim.counters().total_resets(),
        0
    );
}
