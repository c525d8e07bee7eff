//! What the once-code broker scenarios need: a workload's ServiceAccount
//! with (or without) the Role that grants once-codes of a connection, the
//! broker's certificate, a client that trusts it, a replica serving the
//! broker, and the API server's own count of TokenReviews.

use super::{OperatorProcess, Scenario};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The audience the chart's broker expects.
pub const AUDIENCE: &str = "metastudio-operator";

/// A ServiceAccount `name` in the scenario's namespace; with `connection`,
/// a Role and RoleBinding that let it create `oncecodes` of that name only.
pub async fn workload(s: &Scenario, name: &str, connection: Option<&str>) {
    let ns = s.ns();
    let mut objects = vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns}}),
    ];
    if let Some(connection) = connection {
        objects.push(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name, "namespace": ns},
            "rules": [{"apiGroups": ["metastudio.huaweicloud.com"], "resources": ["oncecodes"],
                       "resourceNames": [connection], "verbs": ["create"]}]}),
        );
        objects.push(
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]}),
        );
    }
    for object in &objects {
        super::chart::apply_object(&s.cluster.client, object).await;
    }
}

/// A self-signed certificate for 127.0.0.1 in `dir`: (cert path, key path,
/// cert PEM).
pub fn certificate(dir: &Path) -> (PathBuf, PathBuf, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let (cert, key) = (dir.join("broker.crt"), dir.join("broker.key"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    (cert, key, generated.cert.pem())
}

/// An HTTPS client that trusts `cert_pem` only.
pub fn client_trusting(cert_pem: &str) -> reqwest::Client {
    metastudio_operator::tls::install_crypto_provider();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
        .build()
        .unwrap()
}

/// POSTs for a once-code with `token`: status, Retry-After, body.
pub async fn ask(client: &reqwest::Client, url: &str, token: &str) -> (u16, Option<String>, Value) {
    let response = client.post(url).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        retry_after,
        response.json().await.unwrap_or(Value::Null),
    )
}

/// A replica serving the broker over HTTPS for connection `kiosks` (the
/// simulator, the scenario's credentials), with the ServiceAccounts
/// `kiosk-backend` (granted) and `stranger` (not).
pub struct BrokerReplica {
    pub operator: OperatorProcess,
    /// `https://ADDR/v1/oncecodes/kiosks`.
    pub url: String,
    pub client: reqwest::Client,
    /// kiosk-backend's token for the broker's audience.
    pub token: String,
    pub cert: PathBuf,
    /// The first answer kiosk-backend got once the broker had synced.
    pub first: (u16, Option<String>, Value),
}

/// Starts one replica with `env` over the chart's environment and waits
/// until its broker answers kiosk-backend with something else than 503.
pub async fn serve(s: &Scenario, env: &[(&str, &str)]) -> BrokerReplica {
    let connection = json!({"apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "MetaStudioConnection",
        "metadata": {"name": "kiosks", "namespace": s.ns()},
        "spec": {"endpoint": s.sim.endpoint(), "projectId": s.sim.project_id(),
                 "credentialsSecretRef": {"name": super::scenario::CREDENTIALS}}});
    super::chart::apply_object(&s.cluster.client, &connection).await;
    workload(s, "kiosk-backend", Some("kiosks")).await;
    workload(s, "stranger", None).await;
    let (cert, key, cert_pem) = certificate(s.dir.path());
    let mut replica = s.replica("broker-0");
    replica.set("BROKER_ADDR", "127.0.0.1:0");
    replica.set("BROKER_TLS_CERT", cert.to_str().unwrap());
    replica.set("BROKER_TLS_KEY", key.to_str().unwrap());
    for (name, value) in env {
        replica.set(name, value);
    }
    let mut operator = OperatorProcess::start(&replica);
    let url = format!(
        "https://{}/v1/oncecodes/kiosks",
        operator.broker_addr().await
    );
    let client = client_trusting(&cert_pem);
    let token = s
        .cluster
        .token_for(s.ns(), "kiosk-backend", &[AUDIENCE])
        .await;
    let first = super::eventually(
        "the broker to sync its caches",
        Duration::from_secs(60),
        || {
            let (client, url, token) = (client.clone(), url.clone(), token.clone());
            async move {
                let answer = ask(&client, &url, &token).await;
                (answer.0 != 503).then_some(answer)
            }
        },
    )
    .await;
    BrokerReplica {
        operator,
        url,
        client,
        token,
        cert,
        first,
    }
}

/// The TokenReviews the API server has answered since it started, from
/// its own `apiserver_request_total` (read with the suite's admin
/// credentials).
pub async fn tokenreviews_served(cluster: &super::Cluster) -> f64 {
    let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = cluster
        .client
        .request_text(request)
        .await
        .expect("the API server's /metrics (the suite's user is an administrator)");
    text.lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter(|l| l.contains(r#"resource="tokenreviews""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
