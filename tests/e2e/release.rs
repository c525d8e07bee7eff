//! The chart installed, upgraded and removed by Helm, as a user does it
//! (scenarios p to u): `helm install`, `helm upgrade`, `helm uninstall`,
//! waiting on what Kubernetes reports, and when a wait fails, what the
//! namespace shows (pods, their containers' states, events, logs).

use super::tools::{describe, helm, kubectl};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::Api;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a rollout (pods scheduled, started, Ready through their
/// probes) may take on the shared machine.
pub const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(180);

/// The chart as this checkout ships it.
pub fn shipped_chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/metastudio-operator")
}

/// One Helm release of the chart; uninstalled when dropped (also when a
/// test failed), unless the test uninstalled it.
pub struct Release {
    pub name: String,
    pub namespace: String,
    installed: bool,
}

impl Release {
    pub fn new(name: &str, namespace: &str) -> Self {
        Self {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            installed: false,
        }
    }

    /// The objects' full name (the release name plus the chart's, as
    /// `metastudio-operator.fullname` makes it).
    pub fn fullname(&self) -> String {
        if self.name.contains("metastudio-operator") {
            self.name.clone()
        } else {
            format!("{}-metastudio-operator", self.name)
        }
    }

    /// The label selector of the release's operator pods.
    pub fn pod_selector(&self) -> String {
        format!(
            "app.kubernetes.io/name=metastudio-operator,app.kubernetes.io/instance={}",
            self.name
        )
    }

    /// `helm install` of `chart` with `values` (`--set` arguments) and
    /// `flags`; fails with Helm's output and the namespace's state.
    pub fn install(&mut self, chart: &Path, values: &[String], flags: &[&str]) {
        self.installed = true;
        self.helm("install", chart, values, flags);
    }

    /// `helm upgrade` of the release to `chart` with `values` and `flags`.
    pub fn upgrade(&self, chart: &Path, values: &[String], flags: &[&str]) -> String {
        self.helm("upgrade", chart, values, flags)
    }

    /// `helm uninstall` (waiting for the deletions Helm asks for).
    pub fn uninstall(&mut self) -> String {
        self.installed = false;
        let output = helm()
            .args(["uninstall", &self.name, "--namespace", &self.namespace])
            .args(["--wait", "--timeout", "3m"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "helm uninstall {} failed: {}\n{}",
            self.name,
            describe(&output),
            namespace_state(&self.namespace)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn helm(&self, verb: &str, chart: &Path, values: &[String], flags: &[&str]) -> String {
        let mut command = helm();
        command
            .args([verb, &self.name])
            .arg(chart)
            .args(["--namespace", &self.namespace])
            .args(flags);
        for value in values {
            command.args(["--set", value]);
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "helm {verb} {} failed: {}\n{}",
            self.name,
            describe(&output),
            namespace_state(&self.namespace)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until the operator's Deployment has rolled out: every replica
    /// updated, Ready (through its readiness probe) and available.
    pub async fn rolled_out(&self, client: &Client) -> Deployment {
        rolled_out(client, &self.namespace, &self.fullname()).await
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.installed {
            let _ = helm()
                .args(["uninstall", &self.name, "--namespace", &self.namespace])
                .output();
        }
    }
}

/// Waits until Deployment `namespace/name` has rolled out its current
/// generation; fails with the namespace's state.
pub async fn rolled_out(client: &Client, namespace: &str, name: &str) -> Deployment {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deadline = std::time::Instant::now() + ROLLOUT_TIMEOUT;
    loop {
        if let Ok(deployment) = deployments.get(name).await
            && is_rolled_out(&deployment)
        {
            return deployment;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Deployment {namespace}/{name} did not roll out within {ROLLOUT_TIMEOUT:?}\n{}",
            namespace_state(namespace)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn is_rolled_out(deployment: &Deployment) -> bool {
    let (spec, Some(status)) = (&deployment.spec, &deployment.status) else {
        return false;
    };
    let wanted = spec.replicas.unwrap_or(1);
    status.observed_generation >= deployment.metadata.generation
        && status.updated_replicas == Some(wanted)
        && status.ready_replicas == Some(wanted)
        && status.available_replicas == Some(wanted)
        && status.replicas == Some(wanted)
}

/// What `kubectl` shows of a namespace: pods and their containers' states,
/// events, and the last lines of every container's log (previous runs
/// included), for a failure message.
pub fn namespace_state(namespace: &str) -> String {
    let run = |args: &[&str]| {
        let output = kubectl().args(args).output().unwrap();
        format!(
            "$ kubectl {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    };
    let mut state = vec![
        run(&[
            "get",
            "pods,deployments,services",
            "-n",
            namespace,
            "-o",
            "wide",
        ]),
        run(&["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"]),
    ];
    let pods = kubectl()
        .args(["get", "pods", "-n", namespace, "-o", "name"])
        .output()
        .unwrap();
    for pod in String::from_utf8_lossy(&pods.stdout).lines() {
        state.push(run(&["describe", "-n", namespace, pod]));
        state.push(run(&[
            "logs",
            "-n",
            namespace,
            pod,
            "--all-containers",
            "--tail=30",
        ]));
        state.push(run(&[
            "logs",
            "-n",
            namespace,
            pod,
            "--all-containers",
            "--previous",
            "--tail=30",
        ]));
    }
    state.join("\n")
}
