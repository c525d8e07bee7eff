//! Command-line arguments, shared by the binary and its tests.

pub mod broker_args;
pub mod codes;
pub mod connection_args;
pub mod output;
pub mod parsers;
pub mod reconcile;
pub mod run;
pub mod simulator;

use crate::telemetry::LogFormat;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "metastudio-operator",
    version,
    about = "Keeps Huawei Cloud MetaStudio activation codes as ActivationCode resources declare",
    propagate_version = true
)]
pub struct Cli {
    /// Log level or filter (e.g. info, debug, metastudio_operator=trace); RUST_LOG wins.
    #[arg(long, global = true, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log format.
    #[arg(long, global = true, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the ActivationCode CustomResourceDefinition (YAML).
    Crd,
    /// Run the controller in a cluster (uses KUBECONFIG or the pod's service account).
    Run(Box<run::RunArgs>),
    /// Reconcile ActivationCode manifests on disk, without a cluster.
    Reconcile(reconcile::ReconcileArgs),
    /// Call the activation-code API directly.
    #[command(subcommand)]
    Codes(codes::CodesCommand),
    /// Create a one-off authentication code (single use, valid 5 minutes) and print it.
    OnceCode(codes::OnceCodeArgs),
    /// Serve a local, faithful MetaStudio stand-in.
    Simulator(simulator::SimulatorArgs),
}
