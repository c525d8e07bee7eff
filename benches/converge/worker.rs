//! The operator side of one run, in a fresh process so its peak memory is
//! its own: builds the fleet, converges it through the engine exactly as
//! `reconcile -f` does (no status file), waits for the parent to read the
//! simulator's counters, then runs the steady-state pass.
//!
//! It talks to the parent in JSON lines on stdout; a line on stdin lets it
//! go on to the steady-state pass.

use super::cpu;
use super::fleet::Shape;
use super::memory::{self, Memory};
use metastudio_operator::engine::{ActionOutcome, Engine, Mode, OperatorDefaults};
use metastudio_operator::metastudio::pacing::Pacing;
use metastudio_operator::metastudio::settings::ConnectionSettings;
use metastudio_operator::metastudio::{ClientOptions, Credentials, Transport};
use metastudio_operator::offline::host::OfflineHost;
use metastudio_operator::offline::manifests::Loaded;
use metastudio_operator::offline::reconcile_all;
use metastudio_operator::plan::Action;
use metastudio_operator::simulator::{DEFAULT_ACCESS_KEY, DEFAULT_PROJECT_ID, DEFAULT_SECRET_KEY};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::Instant;

/// The argument that makes the bench binary a worker; the spec follows it.
pub const FLAG: &str = "--converge-worker";

/// What one worker runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub endpoint: String,
    pub shape: Shape,
    pub concurrency: u32,
    pub code_concurrency: u32,
    /// The client's pacing: per-class rates (`None`: the region's quota).
    pub read_rate: Option<f64>,
    pub write_rate: Option<f64>,
    pub rate_burst: u32,
    /// The region whose documented quotas the client paces at.
    pub region: Option<String>,
}

/// One line from the worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Message {
    /// The fleet is built; memory before it was.
    Ready { baseline: Memory },
    /// One pass over the fleet ended.
    Pass(PassResult),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PassResult {
    pub wall_secs: f64,
    /// CPU time (user + system) the worker spent in the pass.
    pub cpu_secs: f64,
    pub resources: usize,
    pub converged: usize,
    /// Writes (updates, or creates in a scale-up) planned and done.
    pub writes_planned: usize,
    pub writes_done: usize,
    /// The first few resources that did not converge, with why.
    pub failures: Vec<String>,
    /// This process after the pass (the peak covers every pass so far).
    pub memory: Memory,
}

/// Runs a worker: `args` holds [`FLAG`] followed by the spec as JSON.
pub fn main(args: &[String]) -> Result<(), String> {
    let spec = args
        .iter()
        .position(|a| a == FLAG)
        .and_then(|i| args.get(i + 1))
        .ok_or_else(|| format!("{FLAG} needs the run's spec (JSON) after it"))?;
    let spec: Spec =
        serde_json::from_str(spec).map_err(|e| format!("{FLAG}: the spec is not valid: {e}"))?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("no runtime: {e}"))?;
    runtime.block_on(run(spec))
}

async fn run(spec: Spec) -> Result<(), String> {
    let options = ClientOptions {
        pacing: Pacing {
            reads_per_second: spec.read_rate,
            writes_per_second: spec.write_rate,
            burst: Some(spec.rate_burst),
            ..Pacing::default()
        },
        ..ClientOptions::default()
    };
    let transport = Transport::new(options).map_err(|e| e.to_string())?;
    let defaults = OperatorDefaults {
        settings: ConnectionSettings {
            endpoint: Some(spec.endpoint.clone()),
            region: spec.region.clone(),
            project_id: Some(DEFAULT_PROJECT_ID.to_owned()),
            ..ConnectionSettings::default()
        },
        credentials: Some(Credentials::ak_sk(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)),
        credentials_scope: metastudio_operator::tenancy::DefaultCredentialsScope::Everyone,
        inline_endpoints: metastudio_operator::tenancy::InlineEndpoints::Any,
    };
    let engine = Engine::new(transport, defaults).with_concurrency(spec.code_concurrency as usize);
    let host = OfflineHost::new(BTreeMap::new(), None, None).map_err(|e| e.to_string())?;
    let baseline = memory::own().unwrap_or_default();
    let resources = spec.shape.resources();
    send(&Message::Ready { baseline })?;

    let converge = pass(&engine, &host, &resources, spec.concurrency).await;
    send(&Message::Pass(converge))?;
    // The parent reads the simulator's counters between the passes.
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    let steady = pass(&engine, &host, &resources, spec.concurrency).await;
    send(&Message::Pass(steady))
}

/// One `reconcile -f` over the fleet; statuses stay in the host between passes.
async fn pass(
    engine: &Engine,
    host: &OfflineHost,
    resources: &[Loaded],
    concurrency: u32,
) -> PassResult {
    let started = Instant::now();
    let cpu_before = cpu::own();
    let outcomes = reconcile_all(engine, host, resources, Mode::Normal, concurrency as usize).await;
    let wall_secs = started.elapsed().as_secs_f64();
    let cpu_secs = (cpu::own() - cpu_before).as_secs_f64();
    let is_write = |a: &Action| matches!(a, Action::Update { .. } | Action::Create { .. });
    PassResult {
        wall_secs,
        cpu_secs,
        resources: outcomes.len(),
        converged: outcomes.iter().filter(|o| o.report.converged).count(),
        writes_planned: outcomes
            .iter()
            .flat_map(|o| &o.report.planned)
            .filter(|a| is_write(a))
            .count(),
        writes_done: outcomes
            .iter()
            .flat_map(|o| &o.report.applied)
            .filter(|r| is_write(&r.action) && matches!(r.outcome, ActionOutcome::Done { .. }))
            .count(),
        failures: outcomes
            .iter()
            .filter(|o| !o.report.converged)
            .take(3)
            .map(|o| {
                let message = o
                    .report
                    .status
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "Ready")
                    .map(|c| c.message.clone())
                    .unwrap_or_default();
                format!("{}: {} ({message})", o.key, o.report.reason)
            })
            .collect(),
        memory: memory::own().unwrap_or_default(),
    }
}

fn send(message: &Message) -> Result<(), String> {
    let line = serde_json::to_string(message).expect("messages serialise");
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write to the parent: {e}"))
}
