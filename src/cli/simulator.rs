//! `simulator`: serve the MetaStudio stand-in until interrupted.

use crate::duration::HumanDuration;
use crate::metastudio::Operation;
use crate::metastudio::pacing::Quotas;
use crate::metastudio::settings::{ENV_ACCESS_KEY, ENV_SECRET_KEY};
use crate::simulator::seed::SeedError;
use crate::simulator::{
    Accepted, DEFAULT_ACCESS_KEY, DEFAULT_PROJECT_ID, DEFAULT_SECRET_KEY, FaultConfig, Seed,
    Simulator, SimulatorConfig,
};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct SimulatorArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The project id the simulator serves.
    #[arg(long, env = "METASTUDIO_PROJECT_ID", default_value = DEFAULT_PROJECT_ID, value_parser = super::parsers::project_id)]
    pub project_id: String,
    /// YAML file of robots and codes to start with (kind: SimulatorSeed).
    #[arg(long)]
    pub seed: Option<PathBuf>,
    /// Also accept this static X-Auth-Token (repeatable).
    #[arg(long = "accept-token", hide_env_values = true)]
    pub tokens: Vec<String>,
    /// Seed of generated code ids and values.
    #[arg(long, default_value_t = 1)]
    pub random_seed: u64,
    /// Enforce a per-tenant quota on reads (list, show, once-code) per
    /// second, as the API gateway does: over it, 429 APIGW.0308 with
    /// Retry-After (0 = none; MetaStudio documents 20 in cn-north-4).
    #[arg(long, default_value_t = 0.0, value_parser = super::parsers::rate, allow_negative_numbers = true)]
    pub read_quota: f64,
    /// Enforce a per-tenant quota on writes (update, reset, create, delete)
    /// per second (0 = none; MetaStudio documents 5 in cn-north-4).
    #[arg(long, default_value_t = 0.0, value_parser = super::parsers::rate, allow_negative_numbers = true)]
    pub write_quota: f64,
    #[command(flatten)]
    pub faults: FaultArgs,
}

impl SimulatorArgs {
    /// The flow control the quota flags ask for; `None` when both are 0.
    fn quotas(&self) -> Option<Quotas> {
        let unlimited = |rate: f64| if rate == 0.0 { f64::INFINITY } else { rate };
        (self.read_quota > 0.0 || self.write_quota > 0.0).then(|| Quotas {
            reads: unlimited(self.read_quota),
            writes: unlimited(self.write_quota),
        })
    }
}

/// Fault injection flags.
#[derive(Debug, Clone, Args)]
pub struct FaultArgs {
    /// Latency added to every answer.
    #[arg(long, default_value = "0s", value_parser = super::parsers::duration, allow_hyphen_values = true)]
    pub latency: HumanDuration,
    /// Share of calls answered 500 (0..1).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub error_rate: f64,
    /// Share of calls answered 429 with Retry-After (0..1).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub throttle_rate: f64,
    /// Retry-After of injected 429s, in seconds.
    #[arg(long, default_value_t = 1)]
    pub retry_after: u64,
    /// Share of calls whose connection is dropped before they apply (0..1).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub drop_rate: f64,
    /// Share of calls applied whose answer is then lost (0..1).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub lost_response_rate: f64,
    /// Share of calls applied and answered 200 with a body cut in half (0..1).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub garbled_response_rate: f64,
    /// Share of calls slowed by --slow-delay (0..1).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub slow_rate: f64,
    /// Extra delay of slow calls.
    #[arg(long, default_value = "2s", value_parser = super::parsers::duration, allow_hyphen_values = true)]
    pub slow_delay: HumanDuration,
    /// Only these operations get faults, e.g. ResetActiveCode,UpdateActiveCode.
    #[arg(long, value_delimiter = ',', value_parser = parse_operation)]
    pub fault_operations: Vec<Operation>,
    /// Seed of the fault sequence.
    #[arg(long, default_value_t = 0)]
    pub fault_seed: u64,
}

fn parse_operation(name: &str) -> Result<Operation, String> {
    Operation::ALL
        .into_iter()
        .find(|op| op.name().eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            let names: Vec<_> = Operation::ALL.iter().map(|o| o.name()).collect();
            format!(
                "unknown operation `{name}`; use one of {}",
                names.join(", ")
            )
        })
}

#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    #[error("--{flag} is {value}; rates are shares between 0 and 1")]
    RateOutOfRange { flag: &'static str, value: f64 },
    #[error(
        "the fault rates add up to {0} (more than 1): lower --error-rate, --throttle-rate, --drop-rate, --lost-response-rate or --garbled-response-rate"
    )]
    RatesOverOne(f64),
    #[error(transparent)]
    Seed(#[from] SeedError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl FaultArgs {
    pub fn config(&self) -> Result<FaultConfig, SimulatorError> {
        let rates = [
            ("error-rate", self.error_rate),
            ("throttle-rate", self.throttle_rate),
            ("drop-rate", self.drop_rate),
            ("lost-response-rate", self.lost_response_rate),
            ("garbled-response-rate", self.garbled_response_rate),
            ("slow-rate", self.slow_rate),
        ];
        for (flag, value) in rates {
            if !(0.0..=1.0).contains(&value) {
                return Err(SimulatorError::RateOutOfRange { flag, value });
            }
        }
        // All but the slow rate exclude one another.
        let exclusive: f64 = rates[..5].iter().map(|(_, v)| v).sum();
        if exclusive > 1.0 + f64::EPSILON {
            return Err(SimulatorError::RatesOverOne(exclusive));
        }
        Ok(FaultConfig {
            latency: self.latency.0,
            server_error_rate: self.error_rate,
            throttle_rate: self.throttle_rate,
            retry_after_secs: self.retry_after,
            drop_rate: self.drop_rate,
            lost_response_rate: self.lost_response_rate,
            garbled_response_rate: self.garbled_response_rate,
            slow_rate: self.slow_rate,
            slow_delay: self.slow_delay.0,
            operations: self.fault_operations.iter().copied().collect(),
            seed: self.fault_seed,
        })
    }
}

/// Starts the simulator and prints how to reach it; returns the running
/// simulator and the banner.
pub async fn start(args: SimulatorArgs) -> Result<(Simulator, String), SimulatorError> {
    let seed = args.seed.as_deref().map(Seed::from_file).transpose()?;
    let env_keys = std::env::var(ENV_ACCESS_KEY)
        .ok()
        .zip(std::env::var(ENV_SECRET_KEY).ok())
        .filter(|(ak, sk)| !ak.is_empty() && !sk.is_empty());
    let from_env = env_keys.is_some();
    let (ak, sk) = env_keys.unwrap_or((DEFAULT_ACCESS_KEY.into(), DEFAULT_SECRET_KEY.into()));
    let config = SimulatorConfig {
        project_id: args.project_id.clone(),
        accepted: Accepted {
            keys: [(ak.clone(), sk)].into(),
            tokens: args.tokens.clone(),
        },
        faults: args.faults.config()?,
        seed,
        random_seed: args.random_seed,
        quotas: args.quotas(),
    };
    let simulator = Simulator::start(config, args.listen)
        .await
        .map_err(|source| SimulatorError::Listen {
            addr: args.listen,
            source,
        })?;
    let credentials = if from_env {
        format!("the AK/SK in {ENV_ACCESS_KEY} / {ENV_SECRET_KEY}")
    } else {
        format!(
            "{ENV_ACCESS_KEY}={DEFAULT_ACCESS_KEY} {ENV_SECRET_KEY}={DEFAULT_SECRET_KEY} (defaults; set {ENV_ACCESS_KEY}/{ENV_SECRET_KEY} to choose others)"
        )
    };
    let banner = format!(
        "MetaStudio simulator listening on {endpoint}\n  project id:  {project}\n  accepts:     {credentials}\n  codes:       {codes}\n  try:         METASTUDIO_ENDPOINT={endpoint} METASTUDIO_PROJECT_ID={project} metastudio-operator codes list --robot-id ROBOT\n",
        endpoint = simulator.endpoint(),
        project = args.project_id,
        codes = simulator.with_store(|s| s.code_count()),
    );
    Ok((simulator, banner))
}
