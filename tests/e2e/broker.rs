//! What the once-code broker scenario needs: a workload's ServiceAccount
//! with (or without) the Role that grants once-codes of a connection, the
//! broker's certificate, and a client that trusts it.

use super::Scenario;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

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
