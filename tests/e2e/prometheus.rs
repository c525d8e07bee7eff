//! A real Prometheus (Debian's `prometheus` package, which
//! `scripts/install-prometheus` installs; `PROMETHEUS` names another
//! binary) on a free loopback port, scraping the operator under test every
//! second and evaluating a copy of the shipped rule file whose `for:`
//! durations are shortened from minutes to seconds. Its config and its
//! storage live in a temporary directory; the process is killed on drop.

use serde_json::{Value, json};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shipped rule file, whose selectors name this job.
pub const RULES: &str = "deploy/prometheus/metastudio-operator.rules.yaml";
pub const JOB: &str = "metastudio-operator-metrics";
/// How long Prometheus may take to answer /-/ready after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The rule file with every `for: <N>m` turned into `for: <N>s`: the
/// alerts behave as shipped, 60 times faster.
pub fn shortened_rules(text: &str) -> String {
    text.lines()
        .map(|line| {
            let indent = line.len() - line.trim_start().len();
            match line.trim_start().strip_prefix("for: ") {
                Some(minutes) if minutes.strip_suffix('m').is_some_and(is_number) => {
                    format!("{}for: {}s", &line[..indent], &minutes[..minutes.len() - 1])
                }
                _ => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

fn binary() -> PathBuf {
    std::env::var_os("PROMETHEUS").map_or_else(|| "prometheus".into(), PathBuf::from)
}

/// One active alert, as /api/v1/alerts lists it.
#[derive(Debug, Clone)]
pub struct Alert {
    pub name: String,
    pub labels: Value,
    pub annotations: Value,
    /// `pending` or `firing`.
    pub state: String,
}

/// A running Prometheus; killed when dropped.
pub struct PrometheusProcess {
    child: Child,
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl PrometheusProcess {
    /// Starts Prometheus scraping `target` (an operator's /metrics) as
    /// job [`JOB`], with the shortened copy of [`RULES`]. A port another
    /// process took between probing and binding is retried with another.
    pub async fn start(target: SocketAddr) -> Self {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), target);
        for _ in 0..3 {
            let addr = free_port();
            let mut child = spawn(dir.path(), addr);
            if wait_ready(&mut child, addr).await {
                return Self { child, addr, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("prometheus did not start:\n{}", log_of(dir.path()));
    }

    /// Its log so far (for failure messages).
    pub fn log(&self) -> String {
        log_of(self.dir.path())
    }

    /// GET `path` of the HTTP API; its `data`, or `None` on any failure.
    pub async fn api(&self, path: &str) -> Option<Value> {
        let (status, body) =
            crate::common::fake_api::get(&format!("http://{}{path}", self.addr)).await;
        let answer: Value = serde_json::from_str(&body).ok()?;
        (status == 200 && answer["status"] == "success").then(|| answer["data"].clone())
    }

    /// The active (pending or firing) alerts.
    pub async fn alerts(&self) -> Option<Vec<Alert>> {
        let data = self.api("/api/v1/alerts").await?;
        let alerts = data["alerts"].as_array()?.iter().map(|a| Alert {
            name: a["labels"]["alertname"].as_str().unwrap_or("").to_owned(),
            labels: a["labels"].clone(),
            annotations: a["annotations"].clone(),
            state: a["state"].as_str().unwrap_or("").to_owned(),
        });
        Some(alerts.collect())
    }

    /// The result of an instant query (an error answer is `None`).
    pub async fn query(&self, promql: &str) -> Option<Vec<Value>> {
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        self.api(&path).await?["result"].as_array().cloned()
    }
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, target: SocketAddr) {
    let rules = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(RULES))
        .unwrap_or_else(|e| panic!("read {RULES}: {e}"));
    std::fs::write(dir.join("rules.yaml"), shortened_rules(&rules)).unwrap();
    // JSON is YAML.
    let config = json!({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [dir.join("rules.yaml")],
        "scrape_configs": [{
            "job_name": JOB,
            "honor_labels": true,
            "static_configs": [{"targets": [target.to_string()]}],
        }],
    });
    std::fs::write(dir.join("prometheus.yml"), config.to_string()).unwrap();
}

fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
}

fn spawn(dir: &Path, addr: SocketAddr) -> Child {
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    Command::new(binary())
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "start {}: {e} (scripts/install-prometheus installs it)",
                binary().display()
            )
        })
}

/// Polls /-/ready until it answers 200 (true) or the process exits or the
/// deadline passes (false).
async fn wait_ready(child: &mut Child, addr: SocketAddr) -> bool {
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        let (status, _) = crate::common::fake_api::get(&format!("http://{addr}/-/ready")).await;
        if status == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
}

/// Percent-encodes a query parameter (everything but unreserved bytes).
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortens_every_for_from_minutes_to_seconds_and_nothing_else() {
        let text = "      - alert: A\n        expr: rate(x[5m]) > 0\n        for: 30m\n      - alert: B\n        for: 5m\n        for: 1h\n";
        assert_eq!(
            shortened_rules(text),
            "      - alert: A\n        expr: rate(x[5m]) > 0\n        for: 30s\n      - alert: B\n        for: 5s\n        for: 1h"
        );
        let shipped =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(RULES)).unwrap();
        let short = shortened_rules(&shipped);
        assert!(!short.contains("for: 5m") && short.contains("for: 5s"));
        assert!(short.contains(&format!("job=\"{JOB}\"")));
    }

    #[test]
    fn encodes_a_query() {
        assert_eq!(url_encode(r#"up{job="a b"}"#), "up%7Bjob%3D%22a%20b%22%7D");
    }
}
