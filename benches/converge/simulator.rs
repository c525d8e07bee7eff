//! The simulator as a separate process (`metastudio-operator simulator`),
//! so its memory and CPU are not the operator's.

use super::fleet::{Calls, Shape};
use super::memory::{self, Memory};
use metastudio_operator::metastudio::Operation;
use metastudio_operator::metastudio::pacing::Quotas;
use metastudio_operator::simulator::Counters;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BANNER: &str = "MetaStudio simulator listening on ";

pub struct SimulatorProcess {
    child: Child,
    endpoint: String,
    /// Holds the seed file until the simulator has read it.
    _dir: tempfile::TempDir,
}

impl SimulatorProcess {
    /// Starts the simulator seeded with the fleet, answering after
    /// `latency`, enforcing `quotas` when given.
    pub fn start(shape: &Shape, latency: Duration, quotas: Option<Quotas>) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temp dir: {e}"))?;
        let seed = dir.path().join("seed.yaml");
        std::fs::write(&seed, shape.seed_yaml())
            .map_err(|e| format!("cannot write {}: {e}", seed.display()))?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_metastudio-operator"))
            .arg("simulator")
            .args(["--listen", "127.0.0.1:0", "--log-level", "warn"])
            .arg("--seed")
            .arg(&seed)
            .args(["--latency", &format!("{}ms", latency.as_millis())])
            .args(quotas.iter().flat_map(|q| {
                [
                    "--read-quota".to_owned(),
                    q.reads.to_string(),
                    "--write-quota".to_owned(),
                    q.writes.to_string(),
                ]
            }))
            .env_remove("CLOUD_SDK_AK")
            .env_remove("CLOUD_SDK_SK")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the simulator: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let endpoint = BufReader::new(stdout).lines().find_map(|line| {
            line.ok()?
                .strip_prefix(BANNER)
                .map(|rest| rest.trim().to_owned())
        });
        match endpoint {
            Some(endpoint) => Ok(Self {
                child,
                endpoint,
                _dir: dir,
            }),
            None => {
                let _ = child.kill();
                let status = child.wait();
                Err(format!(
                    "the simulator printed no endpoint (it ended with {status:?})"
                ))
            }
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The simulator's resident memory now and at its peak.
    pub fn memory(&self) -> Option<Memory> {
        memory::of_process(&format!("/proc/{}/status", self.child.id()))
    }

    /// Every call the simulator has served so far.
    pub async fn counters(&self, http: &reqwest::Client) -> Result<Counters, String> {
        let url = format!("{}/_simulator/counters", self.endpoint);
        let failed = |e: reqwest::Error| format!("GET {url}: {e}");
        http.get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(failed)?
            .json()
            .await
            .map_err(failed)
    }
}

impl Drop for SimulatorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls made between two counter snapshots.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallDelta {
    pub calls: Calls,
    /// Calls of any other operation (show, reset, delete, once-code).
    pub other: u64,
    /// Calls that change something remotely (update, reset, create, delete).
    pub writes: u64,
    /// Calls answered other than 200.
    pub not_ok: u64,
    /// Calls answered 429 (over the simulator's quota).
    pub throttled: u64,
}

impl CallDelta {
    pub fn between(before: &Counters, after: &Counters) -> Self {
        let made = |op: Operation| after.calls_of(op) - before.calls_of(op);
        let calls = Calls {
            list: made(Operation::ListActiveCode),
            update: made(Operation::UpdateActiveCode),
            create: made(Operation::CreateActiveCode),
        };
        let total = after.total_calls() - before.total_calls();
        let writes = [
            Operation::UpdateActiveCode,
            Operation::ResetActiveCode,
            Operation::CreateActiveCode,
            Operation::DeleteActiveCode,
        ]
        .into_iter()
        .map(made)
        .sum();
        Self {
            calls,
            throttled: after.answered("429") - before.answered("429"),
            other: total - calls.total(),
            writes,
            not_ok: total - (after.answered("200") - before.answered("200")),
        }
    }

    pub fn total(&self) -> u64 {
        self.calls.total() + self.other
    }
}
