//! One run: a fresh simulator seeded with the fleet, a fresh worker process
//! that converges it, the simulator's counters around each pass.

use super::fleet::Shape;
use super::memory::Memory;
use super::options::Options;
use super::simulator::{CallDelta, SimulatorProcess};
use super::worker::{self, Message, PassResult};
use metastudio_operator::simulator::Counters;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

/// What one run measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub shape: Shape,
    /// The worker before it built the fleet.
    pub baseline: Memory,
    pub converge: PassResult,
    pub converge_calls: CallDelta,
    pub steady: PassResult,
    pub steady_calls: CallDelta,
    /// The simulator process at the end.
    pub simulator: Option<Memory>,
}

/// Talks to the simulators: a small runtime and HTTP client of its own.
pub struct Runner {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
}

impl Runner {
    pub fn new() -> Result<Self, String> {
        metastudio_operator::tls::install_crypto_provider();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("no runtime: {e}"))?;
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| format!("no HTTP client: {e}"))?;
        Ok(Self { runtime, http })
    }

    /// Every call `simulator` has served so far.
    pub fn counters(&self, simulator: &SimulatorProcess) -> Result<Counters, String> {
        self.runtime.block_on(simulator.counters(&self.http))
    }

    /// Runs `shape` with the options' latency, concurrency and pacing.
    pub fn run(&self, options: &Options, shape: Shape) -> Result<RunResult, String> {
        let simulator = SimulatorProcess::start(&shape, options.latency.0, options.server_quota)?;
        let counters = || self.counters(&simulator);
        let spec = worker::Spec {
            endpoint: simulator.endpoint().to_owned(),
            shape,
            concurrency: options.concurrency,
            code_concurrency: options.code_concurrency,
            read_rate: options.pacing().reads_per_second,
            write_rate: options.pacing().writes_per_second,
            rate_burst: options.rate_burst,
            region: options.region.clone(),
        };
        let exe = std::env::current_exe().map_err(|e| format!("where am I? {e}"))?;
        let mut child = Command::new(exe)
            .arg(worker::FLAG)
            .arg(serde_json::to_string(&spec).expect("specs serialise"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start a worker: {e}"))?;
        let talked = converse(&mut child, counters);
        if talked.is_err() {
            let _ = child.kill();
        }
        let status = child
            .wait()
            .map_err(|e| format!("cannot wait for the worker: {e}"))?;
        let (baseline, [start, converged, end], converge, steady) = talked?;
        if !status.success() {
            return Err(format!("the worker failed: {status}"));
        }
        Ok(RunResult {
            shape,
            baseline,
            converge_calls: CallDelta::between(&start, &converged),
            steady_calls: CallDelta::between(&converged, &end),
            converge,
            steady,
            simulator: simulator.memory(),
        })
    }
}

type Conversation = (Memory, [Counters; 3], PassResult, PassResult);

/// Follows the worker through its passes, reading the simulator's counters
/// before, between and after them.
fn converse(
    child: &mut Child,
    counters: impl Fn() -> Result<Counters, String>,
) -> Result<Conversation, String> {
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let mut next = || -> Result<Message, String> {
        let line = lines
            .next()
            .ok_or("the worker ended early (see its error above)")?
            .map_err(|e| format!("cannot read the worker: {e}"))?;
        serde_json::from_str(&line).map_err(|e| format!("the worker said `{line}`: {e}"))
    };
    let start = counters()?;
    let Message::Ready { baseline } = next()? else {
        return Err("the worker did not start as expected".into());
    };
    let Message::Pass(converge) = next()? else {
        return Err("the worker sent no converge result".into());
    };
    let converged = counters()?;
    writeln!(stdin, "go").map_err(|e| format!("cannot write to the worker: {e}"))?;
    drop(stdin);
    let Message::Pass(steady) = next()? else {
        return Err("the worker sent no steady-state result".into());
    };
    let end = counters()?;
    Ok((baseline, [start, converged, end], converge, steady))
}
