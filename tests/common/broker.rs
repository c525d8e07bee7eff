//! A once-code broker against a mocked API server (TokenReview,
//! SubjectAccessReview, Secrets) and the simulator, served on port 0.

use super::fake_api::{self, Call, status};
use super::{fast_options, robot_seed, simulator};
use metastudio_operator::broker::issuer::Issuer;
use metastudio_operator::broker::limits::{Limits, ReviewBudget};
use metastudio_operator::broker::metrics::BrokerMetrics;
use metastudio_operator::broker::pipeline::Broker;
use metastudio_operator::broker::review::KubeReviewer;
use metastudio_operator::broker::review_cache::{CachedReviewer, ReviewTtl};
use metastudio_operator::broker::server::{LIMITS, Service};
use metastudio_operator::controller::cluster_host::ApiSecrets;
use metastudio_operator::controller::directory::ClusterDirectory;
use metastudio_operator::metastudio::pacing::Pacing;
use metastudio_operator::metastudio::rate_limit::RateLimit;
use metastudio_operator::metastudio::{ClientOptions, Transport};
use metastudio_operator::simulator::{
    DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig, Simulator,
};
use metastudio_operator::telemetry::connections::{ConnectionLimits, serve};
use serde_json::{Value, json};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

pub const AUDIENCE: &str = "metastudio-operator";

/// The ServiceAccount each test token belongs to, as the fake API server
/// authenticates it; `None`: not authenticated.
fn identity_of(token: &str) -> Option<(&'static str, Vec<&'static str>)> {
    let sa = |ns_name: &'static str| Some((ns_name, vec![AUDIENCE]));
    match token {
        "token-kiosk" => sa("system:serviceaccount:retail:kiosk"),
        "token-lonely" => sa("system:serviceaccount:retail:lonely"),
        "token-museum" => sa("system:serviceaccount:museum:guide"),
        "token-finance" => sa("system:serviceaccount:finance:app"),
        "token-squatter" => sa("system:serviceaccount:squat:app"),
        "token-user" => Some(("alice", vec![AUDIENCE])),
        "token-other-audience" => Some((
            "system:serviceaccount:retail:kiosk",
            vec!["https://kubernetes.default.svc"],
        )),
        _ => None,
    }
}

/// Who RBAC lets create `oncecodes` of which name.
fn allowed(user: &str, connection: &str) -> bool {
    matches!(
        (user, connection),
        ("system:serviceaccount:retail:kiosk", _)
            | ("system:serviceaccount:museum:guide", _)
            | ("system:serviceaccount:finance:app", _)
            | ("system:serviceaccount:squat:app", _)
    )
}

/// The fake API server's answers; every request is recorded.
fn api_answer(call: &Call, sim_ak_sk: (&str, &str)) -> Option<(u16, Value)> {
    match (call.method.as_str(), call.path.as_str()) {
        ("POST", "/apis/authentication.k8s.io/v1/tokenreviews") => {
            let token = call.body["spec"]["token"].as_str().unwrap_or_default();
            if token == "token-api-down" {
                return Some(status(500, "InternalError", "etcd is down"));
            }
            let requested = call.body["spec"]["audiences"].clone();
            let answer = match identity_of(token) {
                Some((user, audiences)) => {
                    let granted: Vec<&str> = audiences
                        .into_iter()
                        .filter(|a| requested.as_array().unwrap().iter().any(|r| r == a))
                        .collect();
                    json!({"authenticated": !granted.is_empty(), "audiences": granted,
                           "user": {"username": user, "uid": format!("uid-{user}"), "groups": ["system:serviceaccounts"]}})
                }
                None => json!({"authenticated": false, "error": "invalid bearer token"}),
            };
            Some((
                201,
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": call.body["spec"], "status": answer}),
            ))
        }
        ("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews") => {
            let spec = &call.body["spec"];
            let user = spec["user"].as_str().unwrap_or_default();
            let name = spec["resourceAttributes"]["name"]
                .as_str()
                .unwrap_or_default();
            Some((
                201,
                json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec,
                               "status": {"allowed": allowed(user, name)}}),
            ))
        }
        ("GET", "/api/v1/namespaces/squat/secrets/squat-credentials") => Some((
            200,
            fake_api::secret(
                "squat",
                "squat-credentials",
                &[("accessKey", "not-the-owners"), ("secretKey", "bogus")],
            ),
        )),
        ("GET", "/api/v1/namespaces/retail/secrets/retail-credentials")
        | ("GET", "/api/v1/namespaces/metastudio-system/secrets/shared-credentials") => {
            let name = call.path.rsplit('/').next().unwrap();
            let namespace = call.path.split('/').nth(4).unwrap();
            Some((
                200,
                fake_api::secret(
                    namespace,
                    name,
                    &[("accessKey", sim_ak_sk.0), ("secretKey", sim_ak_sk.1)],
                ),
            ))
        }
        _ => Some(status(404, "NotFound", "not found")),
    }
}

/// retail has connections `retail` (credentials present), `no-secret`
/// (its Secret missing) and `slow` (retail's credentials at the simulator
/// named `localhost`, so a pacer of their own, with the slowest budget
/// allowed: one call per 1000 s); `shared` admits museum and finance,
/// `robots-only` admits museum for one robot, `closed` admits nobody,
/// `by-label` admits namespaces labelled `tier: gold` (no namespace's
/// labels are known). squat's `squat` names the same endpoint and project
/// with credentials of its own, which MetaStudio refuses.
fn directory(sim: &Simulator) -> ClusterDirectory {
    let target = json!({"endpoint": sim.endpoint(), "projectId": sim.project_id()});
    let in_namespace = |namespace: &str, name: &str, secret: &str| {
        let mut spec = target.clone();
        spec["credentialsSecretRef"] = json!({"name": secret});
        serde_json::from_value(json!({"apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "MetaStudioConnection",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}))
        .unwrap()
    };
    let namespaced = |name: &str, secret: &str| in_namespace("retail", name, secret);
    let slow = serde_json::from_value(json!({"apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "MetaStudioConnection",
        "metadata": {"name": "slow", "namespace": "retail"}, "spec": {
            "endpoint": sim.endpoint().replace("127.0.0.1", "localhost"), "projectId": sim.project_id(),
            "credentialsSecretRef": {"name": "retail-credentials"},
            "budget": {"readsPerSecond": 0.1, "share": 0.01}}}))
    .unwrap();
    let cluster = |name: &str, conditions: Value| {
        let mut spec = target.clone();
        spec["credentialsSecretRef"] =
            json!({"name": "shared-credentials", "namespace": "metastudio-system"});
        spec["conditions"] = conditions;
        serde_json::from_value(json!({"apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "ClusterMetaStudioConnection",
            "metadata": {"name": name}, "spec": spec}))
        .unwrap()
    };
    ClusterDirectory::of(
        &[
            namespaced("retail", "retail-credentials"),
            namespaced("no-secret", "missing"),
            slow,
            in_namespace("squat", "squat", "squat-credentials"),
        ],
        &[
            cluster("shared", json!([{"namespaces": ["museum", "finance"]}])),
            cluster(
                "robots-only",
                json!([{"namespaces": ["museum"], "robotIds": ["r-1"]}]),
            ),
            cluster("closed", json!([])),
            cluster(
                "by-label",
                json!([{"namespaceSelector": {"matchLabels": {"tier": "gold"}}}]),
            ),
        ],
        &[],
    )
}

pub struct Fixture {
    pub sim: Simulator,
    pub calls: Arc<Mutex<Vec<Call>>>,
    pub ready: Arc<AtomicBool>,
    pub url: String,
    pub http: reqwest::Client,
}

/// Limits that no test reaches unless it means to.
pub const OPEN: RateLimit = RateLimit {
    per_second: 100.0,
    burst: 100,
};

/// How a fixture's broker is set up.
pub struct Setup {
    pub caller: RateLimit,
    pub quota: RateLimit,
    pub review: RateLimit,
    pub namespaces: Vec<String>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub connections: ConnectionLimits,
    /// The transport's pacing (connections without a budget of their own
    /// get it): none by default.
    pub pacing: Pacing,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            caller: OPEN,
            quota: OPEN,
            review: OPEN,
            namespaces: vec![],
            tls: None,
            connections: LIMITS,
            pacing: Pacing::UNLIMITED,
        }
    }
}

impl Fixture {
    pub async fn new(caller: RateLimit, quota: RateLimit, namespaces: &[&str]) -> Self {
        Self::with(Setup {
            caller,
            quota,
            namespaces: namespaces.iter().map(|n| (*n).to_owned()).collect(),
            ..Setup::default()
        })
        .await
    }

    /// As [`Fixture::open`], over TLS: the URL is `https://localhost:PORT`.
    pub async fn tls(acceptor: tokio_rustls::TlsAcceptor) -> Self {
        Self::with(Setup {
            tls: Some(acceptor),
            ..Setup::default()
        })
        .await
    }

    pub async fn with(setup: Setup) -> Self {
        metastudio_operator::tls::install_crypto_provider();
        let sim = simulator(robot_seed(1, 7), FaultConfig::default()).await;
        let calls = Arc::new(Mutex::new(Vec::new()));
        let client = {
            let calls = calls.clone();
            fake_api::recording_client(
                move |call| calls.lock().unwrap().push(call.clone()),
                move |call| match api_answer(call, (DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)) {
                    Some(answer) => fake_api::Reply::Now(answer),
                    None => fake_api::Reply::Hold,
                },
            )
        };
        let ready = Arc::new(AtomicBool::new(true));
        let service = Service {
            broker: Broker {
                reviewer: CachedReviewer::new(
                    KubeReviewer::new(client.clone(), AUDIENCE),
                    ReviewTtl::default(),
                    ReviewBudget::new(setup.review),
                ),
                issuer: Issuer {
                    directory: directory(&sim),
                    secrets: ApiSecrets(client),
                    transport: Transport::new(ClientOptions {
                        pacing: setup.pacing,
                        ..fast_options()
                    })
                    .unwrap(),
                },
                limits: Limits::new(setup.caller, setup.quota),
                ready: ready.clone(),
                namespaces: setup.namespaces,
            },
            metrics: BrokerMetrics::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = match setup.tls {
            Some(_) => format!("https://localhost:{port}"),
            None => format!("http://127.0.0.1:{port}"),
        };
        serve(
            listener,
            setup.connections,
            setup.tls,
            Arc::new(service),
            std::future::pending(),
        );
        Self {
            sim,
            calls,
            ready,
            url,
            http: reqwest::Client::new(),
        }
    }

    pub async fn open() -> Self {
        Self::with(Setup::default()).await
    }

    /// POST /v1/oncecodes/{connection} with `token`: status, headers, body.
    pub async fn ask(
        &self,
        connection: &str,
        token: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .http
            .post(format!("{}/v1/oncecodes/{connection}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        (
            status,
            headers,
            response.json().await.unwrap_or(Value::Null),
        )
    }

    pub fn calls_to(&self, path_part: &str) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.path.contains(path_part))
            .cloned()
            .collect()
    }

    /// Whether the simulator issued `code` and takes it (once).
    pub async fn simulator_accepts(&self, code: &str) -> bool {
        let answer: Value = self
            .http
            .post(format!("{}/_simulator/once-code/use", self.sim.endpoint()))
            .json(&json!({"once_code": code}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["result"] == "accepted"
    }
}
