//! `cargo bench --bench status_size`: one ActivationCode with 10,000 and
//! then 30,000 codes (the most one resource manages), adopted and then rotated by a token in one
//! reconcile each, against the simulator in a separate process; then one
//! that creates its 10,000 codes (spec.count, from an empty room) and
//! rotates them. Prints, per size: the status as stored after adoption
//! (or the scale-up), the largest status write during the rotation (a
//! batch of intents and the ledger so far) and, for the scale-up, during
//! the creates, the status after it, the rotation's wall time and resets,
//! and this process's peak memory (the engine only: the simulator is
//! another process). It prints figures; it asserts nothing about time.
//!
//! Without `--bench` (nextest, `cargo test --all-targets`) it runs a smoke
//! of 1,000 codes, adopted and created, that fails unless every code is
//! created and reset exactly once and the largest write stays under 512
//! KiB.

#[path = "converge/fleet.rs"]
#[allow(dead_code)]
mod fleet;
#[path = "converge/memory.rs"]
#[allow(dead_code)]
mod memory;
#[path = "converge/simulator.rs"]
#[allow(dead_code)]
mod simulator;

use fleet::Shape;
use metastudio_operator::crd::{ActivationCode, ActivationCodeStatus};
use metastudio_operator::engine::host::{EngineEvent, Host, HostError, SecretSource};
use metastudio_operator::engine::limits::MAX_CODES_PER_RESOURCE;
use metastudio_operator::engine::{Engine, Mode, OperatorDefaults};
use metastudio_operator::metastudio::pacing::Pacing;
use metastudio_operator::metastudio::settings::ConnectionSettings;
use metastudio_operator::metastudio::{ActiveCode, ClientOptions, Credentials, Transport};
use metastudio_operator::offline::host::OfflineHost;
use metastudio_operator::secret::Secret;
use metastudio_operator::simulator::{DEFAULT_ACCESS_KEY, DEFAULT_PROJECT_ID, DEFAULT_SECRET_KEY};
use metastudio_operator::tenancy::{DefaultCredentialsScope, Directory};
use simulator::SimulatorProcess;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SMOKE_TEST: &str = "status_size_smoke";
const BOUND: usize = 512 * 1024;

/// An [`OfflineHost`] that remembers the largest status it was given.
struct Measuring {
    inner: OfflineHost,
    largest: Mutex<usize>,
}

impl SecretSource for Measuring {
    async fn secret_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Secret>>, HostError> {
        self.inner.secret_data(namespace, name).await
    }
}

impl Directory for Measuring {
    fn connection(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<metastudio_operator::crd::connection::MetaStudioConnectionSpec> {
        self.inner.connection(namespace, name)
    }
    fn cluster_connection(
        &self,
        name: &str,
    ) -> Option<metastudio_operator::crd::connection::ClusterMetaStudioConnectionSpec> {
        self.inner.cluster_connection(name)
    }
    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.inner.namespace_labels(namespace)
    }
}

impl Host for Measuring {
    fn current(&self, resource: &ActivationCode) -> ActivationCode {
        self.inner.current(resource)
    }
    fn same_robot(&self, resource: &ActivationCode) -> Vec<ActivationCode> {
        self.inner.same_robot(resource)
    }
    async fn save_status(
        &self,
        resource: &ActivationCode,
        status: &Arc<ActivationCodeStatus>,
    ) -> Result<(), HostError> {
        let size = serde_json::to_vec(&**status).map_or(0, |j| j.len());
        {
            let mut largest = self.largest.lock().expect("lock");
            *largest = (*largest).max(size);
        }
        self.inner.save_status(resource, status).await
    }
    async fn export(
        &self,
        resource: &ActivationCode,
        secret_name: &str,
        codes: &[ActiveCode],
    ) -> Result<(), HostError> {
        self.inner.export(resource, secret_name, codes).await
    }
    async fn event(&self, resource: &ActivationCode, event: &EngineEvent) {
        self.inner.event(resource, event).await;
    }
}

/// What one size measured.
struct Figures {
    codes: u32,
    /// The codes were created by the resource (spec.count).
    counted: bool,
    /// The largest write while creating them.
    largest_create_write: usize,
    adopted: usize,
    largest_write: usize,
    rotated: usize,
    resets: u64,
    exactly_once: bool,
    seconds: f64,
    peak_mib: f64,
}

fn measure(codes: u32, counted: bool) -> Result<Figures, String> {
    let shape = if counted {
        Shape::scale_up(1, codes)
    } else {
        Shape::new(1, codes, 0.0)
    };
    let sim = SimulatorProcess::start(&shape, Duration::ZERO, None)?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let options = ClientOptions {
        pacing: Pacing::UNLIMITED,
        ..ClientOptions::default()
    };
    let engine = Engine::new(
        Transport::new(options).map_err(|e| e.to_string())?,
        OperatorDefaults {
            settings: ConnectionSettings {
                endpoint: Some(sim.endpoint().to_owned()),
                project_id: Some(DEFAULT_PROJECT_ID.to_owned()),
                ..ConnectionSettings::default()
            },
            credentials: Some(Credentials::ak_sk(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)),
            credentials_scope: DefaultCredentialsScope::Everyone,
            inline_endpoints: metastudio_operator::tenancy::InlineEndpoints::Any,
        },
    )
    .with_concurrency(16);
    let host = Measuring {
        inner: OfflineHost::new(BTreeMap::new(), None, None).map_err(|e| e.to_string())?,
        largest: Mutex::new(0),
    };
    let mut resource = shape.resources().remove(0).resource;
    let size = |status: &ActivationCodeStatus| serde_json::to_vec(status).map_or(0, |j| j.len());
    let http = reqwest::Client::new();
    runtime.block_on(async {
        let now = jiff::Timestamp::now;
        let adopted = engine
            .reconcile(&resource, &host, Mode::Normal, now())
            .await;
        resource.status = Some((*adopted.status).clone());
        resource.spec.reset =
            Some(serde_json::from_value(serde_json::json!({"token": "bench"})).unwrap());
        let largest_create_write = std::mem::take(&mut *host.largest.lock().expect("lock"));
        let before = sim.counters(&http).await?;
        let started = Instant::now();
        let rotated = engine
            .reconcile(&resource, &host, Mode::Normal, now())
            .await;
        let seconds = started.elapsed().as_secs_f64();
        let after = sim.counters(&http).await?;
        let resets = after.total_resets() - before.total_resets();
        let created_once = after.creates.len() == after.total_creates() as usize;
        Ok(Figures {
            codes,
            counted,
            largest_create_write,
            adopted: size(&adopted.status),
            largest_write: *host.largest.lock().expect("lock"),
            rotated: size(&rotated.status),
            resets,
            exactly_once: after.resets.len() == codes as usize
                && after.resets.values().all(|&n| n == 1)
                && created_once
                && after.total_creates() == if counted { u64::from(codes) } else { 0 },
            seconds,
            peak_mib: memory::own().unwrap_or_default().peak_mib(),
        })
    })
}

fn kib(bytes: usize) -> String {
    format!("{:.0} KiB", bytes as f64 / 1024.0)
}

fn print(f: &Figures) {
    let start = if f.counted {
        format!(
            "created by spec.count (largest write while creating {}), status then",
            kib(f.largest_create_write)
        )
    } else {
        "status adopted".to_owned()
    };
    println!(
        "{:>7} codes: {start} {}, largest write during the rotation {} ({:.0}% of 512 KiB), after {}; {} resets (each code once: {}) in {:.1} s; peak memory {:.1} MiB",
        f.codes,
        kib(f.adopted),
        kib(f.largest_write),
        100.0 * f.largest_write as f64 / BOUND as f64,
        kib(f.rotated),
        f.resets,
        f.exactly_once,
        f.seconds,
        f.peak_mib
    );
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if has("--list") {
        if !has("--ignored") {
            println!("{SMOKE_TEST}: test");
        }
        return ExitCode::SUCCESS;
    }
    let smoke = !has("--bench");
    let cap = MAX_CODES_PER_RESOURCE as u32;
    let sizes: &[(u32, bool)] = if smoke {
        &[(1_000, false), (1_000, true)]
    } else {
        &[(10_000, false), (cap, false), (10_000, true)]
    };
    for &(codes, counted) in sizes {
        // The sizes run smallest first, so each peak is that size's (the
        // counted one's is the process's so far).
        match measure(codes, counted) {
            Ok(figures) => {
                print(&figures);
                let largest = figures.largest_write.max(figures.largest_create_write);
                let passed = figures.exactly_once && largest < BOUND;
                if smoke && !passed {
                    eprintln!("{SMOKE_TEST}: FAILED");
                    return ExitCode::FAILURE;
                }
            }
            Err(err) => {
                eprintln!("status_size: {err}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
