//! One scenario's world: a fresh namespace with a credentials Secret, the
//! chart's ServiceAccount and RBAC installed there, a kubeconfig for that
//! ServiceAccount, and a simulator. The operator's defaults (its endpoint
//! and project, an administrator's choice) are the simulator; ActivationCodes
//! made here name the namespace's credentials Secret in `spec.connection`
//! (in a cluster they may name no endpoint of their own but an official
//! one).

use super::chart::{ClusterScoped, Rendered};
use super::operator::{OperatorProcess, Replica, assert_no_forbidden};
use super::{Cluster, TestNamespace, eventually};
use crate::common::capture::assert_clean;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use metastudio_operator::crd::ActivationCode;
use metastudio_operator::simulator::{
    DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig, Seed, Simulator,
};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

pub const CREDENTIALS: &str = "metastudio-credentials";
/// How long a resource may take to become Ready in a scenario.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

pub struct Scenario {
    pub cluster: Cluster,
    pub sim: Simulator,
    pub rendered: Rendered,
    /// Authenticates as the chart's ServiceAccount.
    pub kubeconfig: PathBuf,
    /// The chart's cluster-scoped RBAC, deleted on drop.
    _cluster_rbac: ClusterScoped,
    pub namespace: TestNamespace,
    /// More namespaces the operator watches (tenants), by the suffix given.
    pub tenants: Vec<TestNamespace>,
    /// Logs and kubeconfigs.
    pub dir: tempfile::TempDir,
}

impl Scenario {
    /// Sets up `name`'s world; `values` are `--set` arguments for the chart.
    pub async fn start(name: &str, seed: Seed, faults: FaultConfig, values: &[&str]) -> Self {
        Self::with_tenants(name, seed, faults, values, &[]).await
    }

    /// Like [`Scenario::start`], with more namespaces (one per suffix in
    /// `tenants`) that the operator watches too.
    pub async fn with_tenants(
        name: &str,
        seed: Seed,
        faults: FaultConfig,
        values: &[&str],
        tenants: &[&str],
    ) -> Self {
        let cluster = Cluster::connect().await;
        let namespace = cluster.namespace(name).await;
        let mut others = Vec::new();
        for tenant in tenants {
            others.push(cluster.namespace(&format!("{name}-{tenant}")).await);
        }
        let release = format!("op-{name}-{}", &namespace.name[namespace.name.len() - 4..]);
        let watched: Vec<String> = std::iter::once(&namespace)
            .chain(&others)
            .map(|n| n.name.clone())
            .collect();
        let rendered = Rendered::new(&release, &namespace.name, &watched, values);
        let cluster_rbac = rendered.apply_rbac(&cluster.client).await;
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = cluster
            .service_account_kubeconfig(&namespace.name, &rendered.service_account(), dir.path())
            .await;
        let sim = crate::common::simulator(seed, faults).await;
        let scenario = Self {
            cluster,
            sim,
            rendered,
            kubeconfig,
            _cluster_rbac: cluster_rbac,
            namespace,
            tenants: others,
            dir,
        };
        scenario.create_credentials().await;
        scenario
    }

    pub fn ns(&self) -> &str {
        &self.namespace.name
    }

    /// A replica of the chart's operator, with the given Lease identity.
    pub fn replica(&self, identity: &str) -> Replica {
        let mut replica = Replica::of_chart(
            &self.rendered,
            &self.kubeconfig,
            self.ns(),
            identity,
            self.dir.path(),
        );
        // As the chart's defaults.endpoint and defaults.projectId would.
        replica.set("METASTUDIO_ENDPOINT", &self.sim.endpoint());
        replica.set("METASTUDIO_PROJECT_ID", self.sim.project_id());
        replica
    }

    pub fn resources(&self) -> Api<ActivationCode> {
        Api::namespaced(self.cluster.client.clone(), self.ns())
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.cluster.client.clone(), self.ns())
    }

    async fn create_credentials(&self) {
        self.secrets()
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": CREDENTIALS},
                    "stringData": {"accessKey": DEFAULT_ACCESS_KEY, "secretKey": DEFAULT_SECRET_KEY}
                }))
                .unwrap(),
            )
            .await
            .expect("create the credentials Secret");
    }

    /// An ActivationCode manifest for `robot` with `spec` merged in, whose
    /// connection is the operator's endpoint and project (the simulator)
    /// with the namespace's credentials.
    pub fn manifest(&self, name: &str, robot: &str, spec: Value) -> Value {
        let mut full = json!({
            "robotId": robot,
            "validPeriod": 7,
            "connection": {"credentialsSecretRef": {"name": CREDENTIALS}},
        });
        merge(&mut full, spec);
        json!({
            "apiVersion": "metastudio.huaweicloud.com/v1alpha1",
            "kind": "ActivationCode",
            "metadata": {"name": name, "namespace": self.ns()},
            "spec": full,
        })
    }

    /// Applies a manifest server-side, as a user's `kubectl apply
    /// --server-side` would (field manager `kubectl`).
    pub async fn apply(&self, manifest: &Value) {
        let name = manifest["metadata"]["name"].as_str().unwrap();
        self.resources()
            .patch(
                name,
                &PatchParams::apply("kubectl"),
                &Patch::Apply(manifest),
            )
            .await
            .unwrap_or_else(|e| panic!("apply ActivationCode {name}: {e}"));
    }

    /// Waits until `name` is Ready=True for its current generation.
    pub async fn ready(&self, name: &str) -> ActivationCode {
        let resources = self.resources();
        eventually(&format!("{name} to be Ready"), READY_TIMEOUT, || {
            let resources = resources.clone();
            async move {
                let current = resources.get(name).await.ok()?;
                let status = current.status.as_ref()?;
                let ready = status.condition("Ready")?;
                (ready.status == "True"
                    && status.observed_generation == current.metadata.generation)
                    .then_some(current.clone())
            }
        })
        .await
    }

    /// Waits until `name`'s Ready condition has `reason`.
    pub async fn ready_reason(&self, name: &str, reason: &str) -> ActivationCode {
        let resources = self.resources();
        eventually(
            &format!("{name} to report Ready reason {reason}"),
            READY_TIMEOUT,
            || {
                let resources = resources.clone();
                async move {
                    let current = resources.get(name).await.ok()?;
                    let ready = current.status.as_ref()?.condition("Ready")?;
                    (ready.reason == reason).then_some(current.clone())
                }
            },
        )
        .await
    }

    /// The secrets that must never appear in a log: the keys and every
    /// code value the simulator ever held (current values only: earlier
    /// ones are gone, so callers collect them as they go).
    pub fn secrets_to_hide(&self) -> Vec<String> {
        let mut secrets = vec![DEFAULT_ACCESS_KEY.to_owned(), DEFAULT_SECRET_KEY.to_owned()];
        secrets.extend(
            self.sim
                .with_store(|s| s.all_codes())
                .iter()
                .map(|c| c.active_code.expose().to_owned()),
        );
        secrets
    }

    /// Every replica's log: no refusal by the authorizer, no secret.
    pub fn assert_clean_logs(&self, processes: &[&OperatorProcess], hidden: &[String]) {
        for process in processes {
            let log = std::fs::read_to_string(
                self.dir.path().join(format!("{}.log", process.identity())),
            )
            .unwrap_or_default();
            assert!(!log.is_empty(), "{} logged nothing", process.identity());
            assert_no_forbidden(&log, process.identity());
            assert_clean(&log, hidden);
        }
    }
}

/// Merges `patch` into `base` (objects key by key; anything else replaces).
fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, patch) => *base = patch,
    }
}
