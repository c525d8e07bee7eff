//! The cluster under test: connecting, the server's version, installing the
//! CRD as this suite needs it, throwaway namespaces, ServiceAccount
//! kubeconfigs.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::Kubeconfig;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The field manager of everything the suite applies.
pub const SUITE_MANAGER: &str = "metastudio-operator-e2e";
/// A spec field that this binary does not know, as a newer release of the
/// CRD would add one (scenario i: version skew). The suite's CRD declares
/// it, so the API server stores it instead of pruning it.
pub const NEWER_FIELD: &str = "newerSetting";
/// Every namespace the suite creates carries this label.
pub const SUITE_LABEL: &str = "metastudio-operator-e2e";

pub struct Cluster {
    pub client: Client,
    /// The server's (major, minor) version.
    pub version: (u32, u32),
    /// This test's turn on the cluster: shared with the others, or alone.
    _turn: super::turn::Turn,
}

impl Cluster {
    /// Connects to the cluster `KUBECONFIG` names and installs the CRD. A
    /// missing cluster fails the test: the suite never skips.
    pub async fn connect() -> Self {
        let cluster = Self::connect_with(super::turn::Turn::shared()).await;
        cluster.install_crd().await;
        cluster
    }

    /// Connects with the cluster to this test alone (see [`super::turn`]),
    /// for a scenario that changes what every scenario shares: the CRDs
    /// (deleted, installed and upgraded by a Helm release). It installs
    /// nothing.
    pub async fn connect_alone() -> Self {
        Self::connect_with(super::turn::Turn::alone()).await
    }

    async fn connect_with(turn: super::turn::Turn) -> Self {
        assert!(
            std::env::var_os("KUBECONFIG").is_some(),
            "KUBECONFIG is not set: the end-to-end suite needs a cluster. Run it with `scripts/e2e` (which starts a throwaway control plane), or point KUBECONFIG at a disposable cluster (kind, k3d, ...)"
        );
        metastudio_operator::tls::install_crypto_provider();
        let client = Client::try_default()
            .await
            .unwrap_or_else(|e| panic!("KUBECONFIG names no usable cluster: {e}"));
        let info = client
            .apiserver_version()
            .await
            .unwrap_or_else(|e| panic!("the API server does not answer /version: {e}"));
        let version = parse_version(&info.major, &info.minor, &info.git_version);
        Self {
            client,
            version,
            _turn: turn,
        }
    }

    /// CEL validation rules (`x-kubernetes-validations`) arrived in 1.25.
    pub fn supports_cel(&self) -> bool {
        self.version >= (1, 25)
    }

    /// Applies the suite's CRDs (server-side, idempotent: every test does
    /// it) and waits until they are established.
    async fn install_crd(&self) {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        for crd in suite_crds(self.supports_cel()) {
            let name = crd["metadata"]["name"].as_str().unwrap().to_owned();
            crds.patch(
                &name,
                &PatchParams::apply(SUITE_MANAGER).force(),
                &Patch::Apply(&crd),
            )
            .await
            .unwrap_or_else(|e| panic!("install CRD {name} by server-side apply: {e}"));
            super::eventually(
                &format!("CRD {name} to be established"),
                Duration::from_secs(60),
                || {
                    let (crds, name) = (crds.clone(), name.clone());
                    async move {
                        let crd = crds.get(&name).await.ok()?;
                        crd.status?
                            .conditions?
                            .iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                            .then_some(())
                    }
                },
            )
            .await;
        }
    }

    /// A fresh namespace for one test, deleted when the guard drops.
    pub async fn namespace(&self, scenario: &str) -> TestNamespace {
        let name = format!(
            "e2e-{scenario}-{}-{:04x}",
            std::process::id(),
            rand::random::<u16>()
        );
        let api: Api<Namespace> = Api::all(self.client.clone());
        let namespace = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {SUITE_LABEL: "true"}}
        }))
        .unwrap();
        api.create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        TestNamespace { api, name }
    }

    /// A kubeconfig for the same cluster that authenticates as the
    /// ServiceAccount `namespace/name` (a token from the TokenRequest API),
    /// written to `dir`.
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        dir: &Path,
    ) -> PathBuf {
        let token = self.token_for(namespace, name, &[]).await;
        let path = dir.join(format!("{name}.kubeconfig"));
        std::fs::write(&path, kubeconfig_for_token(&token).to_string()).unwrap();
        path
    }

    /// A token for the ServiceAccount `namespace/name` from the
    /// TokenRequest API, for `audiences` (empty: the API server's own), as
    /// a projected token volume gets it.
    pub async fn token_for(&self, namespace: &str, name: &str, audiences: &[&str]) -> String {
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(3600),
                audiences: (!audiences.is_empty())
                    .then(|| audiences.iter().map(|a| (*a).to_owned()).collect()),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        super::eventually(
            "a token for the ServiceAccount",
            Duration::from_secs(30),
            || {
                let (accounts, request) = (accounts.clone(), request.clone());
                async move {
                    let issued = accounts
                        .create_token_request(name, &PostParams::default(), &request)
                        .await
                        .ok()?;
                    issued.status?.token
                }
            },
        )
        .await
    }
}

/// "1", "20" (or "25+"), or failing those the git version "v1.20.2".
fn parse_version(major: &str, minor: &str, git_version: &str) -> (u32, u32) {
    let number = |s: &str| {
        s.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .ok()
    };
    if let (Some(major), Some(minor)) = (number(major), number(minor)) {
        return (major, minor);
    }
    let mut parts = git_version.trim_start_matches('v').split('.');
    match (parts.next().and_then(number), parts.next().and_then(number)) {
        (Some(major), Some(minor)) => (major, minor),
        _ => panic!("cannot tell the server's version from {major:?}.{minor:?} ({git_version:?})"),
    }
}

/// Every CRD of the product: the ActivationCode's as [`suite_crd`] makes
/// it, and the connection kinds' as they are (without CEL rules when the
/// server predates them).
pub fn suite_crds(with_cel: bool) -> Vec<Value> {
    metastudio_operator::crd::definitions()
        .into_iter()
        .map(|(_, crd)| {
            if crd.spec.names.kind == "ActivationCode" {
                return suite_crd(with_cel);
            }
            let mut crd = serde_json::to_value(crd).unwrap();
            if !with_cel {
                strip_key(&mut crd, "x-kubernetes-validations");
            }
            crd
        })
        .collect()
}

/// The product's CRD of `kind` as `crds/` holds it, without its CEL rules
/// when the server predates them (`with_cel` false).
pub fn product_crd(kind: &str, with_cel: bool) -> Value {
    let (_, crd) = metastudio_operator::crd::definitions()
        .into_iter()
        .find(|(_, crd)| crd.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD of kind {kind}"));
    let mut crd = serde_json::to_value(crd).unwrap();
    if !with_cel {
        strip_key(&mut crd, "x-kubernetes-validations");
    }
    crd
}

/// The product's CRD plus [`NEWER_FIELD`] (as a newer release would have
/// left it), without its CEL rules when the server predates them: the
/// product targets 1.25 and later, and a 1.20 server refuses to apply them.
pub fn suite_crd(with_cel: bool) -> Value {
    let mut crd = serde_json::to_value(metastudio_operator::crd::definition()).unwrap();
    let spec = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert!(
        spec.get(NEWER_FIELD).is_none(),
        "the CRD now has a field named {NEWER_FIELD}: pick another name for the version-skew test"
    );
    spec[NEWER_FIELD] = json!({
        "type": "string",
        "description": "Stands for a field a newer release adds (end-to-end suite only)."
    });
    if !with_cel {
        strip_key(&mut crd, "x-kubernetes-validations");
    }
    crd
}

fn strip_key(value: &mut Value, key: &str) {
    match value {
        Value::Object(map) => {
            map.remove(key);
            map.values_mut().for_each(|v| strip_key(v, key));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| strip_key(v, key)),
        _ => {}
    }
}

/// A kubeconfig (JSON is YAML) for the current context's cluster of the
/// suite's own kubeconfig, with `token` as the user.
fn kubeconfig_for_token(token: &str) -> Value {
    let config = Kubeconfig::read().expect("KUBECONFIG parses");
    let context_name = config
        .current_context
        .clone()
        .expect("KUBECONFIG has a current context");
    let cluster_name = config
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .expect("the current context exists");
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == cluster_name)
        .expect("the current context's cluster exists");
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": cluster_name, "user": "operator"}}],
        "current-context": "operator",
    })
}

/// A namespace of one test; deleted (with everything in it) on drop, also
/// when an assertion failed.
pub struct TestNamespace {
    api: Api<Namespace>,
    pub name: String,
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let (api, name) = (self.api.clone(), self.name.clone());
        let runtime = tokio::runtime::Handle::current();
        // The tests run on a multi-thread runtime, whose thread may block in
        // place to finish the deletion.
        tokio::task::block_in_place(move || {
            runtime.block_on(async move {
                if let Err(err) = api.delete(&name, &DeleteParams::background()).await {
                    eprintln!("could not delete test namespace {name}: {err}");
                }
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_numbers_or_the_git_version() {
        assert_eq!(parse_version("1", "20", "v1.20.2"), (1, 20));
        assert_eq!(parse_version("1", "27+", "v1.27.3-gke.100"), (1, 27));
        assert_eq!(parse_version("", "", "v1.20.2"), (1, 20));
    }

    #[test]
    fn the_suite_crd_drops_cel_only_for_old_servers() {
        let text = |with_cel| suite_crd(with_cel).to_string();
        assert!(text(true).contains("x-kubernetes-validations"));
        assert!(!text(false).contains("x-kubernetes-validations"));
        assert!(text(false).contains(NEWER_FIELD));
    }
}
