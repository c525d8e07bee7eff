//! `metastudio-operator run` as its own process, configured as the chart's
//! Deployment configures it and authenticated as the chart's
//! ServiceAccount, so the real authorizer judges every request it makes.
//! Its log (JSON lines) goes to a file the test reads.

use super::chart::Rendered;
use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How to start one replica.
#[derive(Clone)]
pub struct Replica {
    pub kubeconfig: PathBuf,
    /// The chart's environment, then the test's overrides.
    pub env: Vec<(String, String)>,
    /// Its identity in the Lease (the pod name, in a cluster).
    pub identity: String,
    pub namespace: String,
    pub log: PathBuf,
}

impl Replica {
    /// A replica of the rendered chart: its environment, with metrics on a
    /// free loopback port and text for the log file.
    pub fn of_chart(
        rendered: &Rendered,
        kubeconfig: &Path,
        namespace: &str,
        identity: &str,
        log_dir: &Path,
    ) -> Self {
        let mut replica = Self {
            kubeconfig: kubeconfig.to_owned(),
            env: rendered.operator_env(),
            identity: identity.to_owned(),
            namespace: namespace.to_owned(),
            log: log_dir.join(format!("{identity}.log")),
        };
        replica.set("METRICS_ADDR", "127.0.0.1:0");
        replica
    }

    /// Sets (or replaces) one environment variable.
    pub fn set(&mut self, name: &str, value: &str) -> &mut Self {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A running replica; killed when dropped.
pub struct OperatorProcess {
    replica: Replica,
    child: Child,
    /// Where this start's log begins in the (appended) log file.
    log_start: u64,
}

impl OperatorProcess {
    pub fn start(replica: &Replica) -> Self {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&replica.log)
            .unwrap();
        let log_start = log.metadata().unwrap().len();
        let mut command = Command::new(env!("CARGO_BIN_EXE_metastudio-operator"));
        command
            .arg("run")
            // Nothing from the test's environment (credentials, RUST_LOG)
            // reaches the operator; only what the chart sets.
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KUBECONFIG", &replica.kubeconfig)
            .env("POD_NAME", &replica.identity)
            .env("POD_NAMESPACE", &replica.namespace)
            .envs(replica.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        let child = command.spawn().expect("the operator binary starts");
        Self {
            replica: replica.clone(),
            child,
            log_start,
        }
    }

    pub fn identity(&self) -> &str {
        &self.replica.identity
    }

    /// SIGKILL, and reap.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The log of this start so far.
    pub fn log(&self) -> String {
        let text = std::fs::read(&self.replica.log).unwrap_or_default();
        let start = usize::try_from(self.log_start)
            .unwrap_or(usize::MAX)
            .min(text.len());
        String::from_utf8_lossy(&text[start..]).into_owned()
    }

    /// The address of /metrics, from the log line that announces it.
    pub async fn metrics_addr(&mut self) -> SocketAddr {
        self.announced_addr("serving /metrics").await
    }

    /// The address of the once-code broker, from the log line that
    /// announces it.
    pub async fn broker_addr(&mut self) -> SocketAddr {
        self.announced_addr("serving the once-code broker").await
    }

    /// The `addr` of the first log line whose message starts with `message`.
    async fn announced_addr(&mut self, message: &str) -> SocketAddr {
        super::eventually(
            &format!("the operator to log \"{message}\""),
            Duration::from_secs(30),
            || {
                let found = if self.running() {
                    self.log()
                        .lines()
                        .find_map(|l| announced_addr_of(l, message))
                } else {
                    panic!("the operator exited:\n{}", self.log())
                };
                async move { found }
            },
        )
        .await
    }

    /// The sum of every series of `name` on /metrics (0 when absent).
    pub async fn metric(&mut self, name: &str) -> f64 {
        let addr = self.metrics_addr().await;
        let (_, text) = crate::common::fake_api::get(&format!("http://{addr}/metrics")).await;
        sum_of(&text, name)
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// `{"message":"serving /metrics, ...","addr":"127.0.0.1:4321",...}`.
fn announced_addr_of(line: &str, message: &str) -> Option<SocketAddr> {
    let entry: serde_json::Value = serde_json::from_str(line).ok()?;
    entry["message"]
        .as_str()?
        .starts_with(message)
        .then(|| entry["addr"].as_str()?.parse().ok())?
}

/// The sum of the samples of `name` (any labels) in Prometheus text.
pub fn sum_of(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Fails when the log shows a request the authorizer refused: the chart's
/// RBAC must cover everything the operator does.
pub fn assert_no_forbidden(log: &str, who: &str) {
    if let Some(line) = log
        .lines()
        .find(|l| l.contains("Forbidden") || l.contains("forbidden") || l.contains("code: 403"))
    {
        panic!(
            "{who} was refused by the API server's authorizer (the chart's RBAC lacks a rule): {line}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_metrics_address_and_sums_series() {
        let line = r#"{"timestamp":"t","level":"INFO","message":"serving /metrics, /healthz and /readyz","addr":"127.0.0.1:4321"}"#;
        assert_eq!(
            announced_addr_of(line, "serving /metrics"),
            Some("127.0.0.1:4321".parse().unwrap())
        );
        let text = "# HELP x\nmetastudio_api_calls_total{operation=\"a\",status=\"200\"} 3\nmetastudio_api_calls_total{operation=\"b\",status=\"200\"} 2\nmetastudio_api_calls_total_other 9\n";
        assert_eq!(sum_of(text, "metastudio_api_calls_total"), 5.0);
        assert_eq!(sum_of(text, "metastudio_leader"), 0.0);
    }
}
