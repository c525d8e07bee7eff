//! The benchmark's flags (after `cargo bench --bench converge --`).

use clap::Parser;
use metastudio_operator::duration::HumanDuration;
use std::time::Duration;

/// Converges a fleet of ActivationCodes through the engine, as `reconcile -f`
/// does, against the simulator running in another process, and prints
/// time, remote calls and memory. See BENCHMARKS.md.
#[derive(Debug, Clone, Parser)]
#[command(name = "converge")]
pub struct Options {
    /// Robots in the main fleet; one ActivationCode manages each robot.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub robots: u32,
    /// Activation codes of each robot.
    #[arg(long, default_value_t = 10)]
    pub codes_per_robot: u32,
    /// Share of each robot's codes whose validPeriod differs from the
    /// spec (0..1); each costs one update.
    #[arg(long, default_value_t = 0.5)]
    pub drift_share: f64,
    /// Latency the simulator adds to every answer.
    #[arg(long, default_value = "20ms")]
    pub latency: HumanDuration,
    /// Resources reconciled at once (`reconcile --concurrency`).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// Codes of one resource changed at once (the engine's own
    /// concurrency). At 1, every resource has exactly one request in
    /// flight, so requests in flight equal --concurrency.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub code_concurrency: u32,
    /// Client-side rate limit in requests per second (0 = off).
    #[arg(long, default_value_t = 0.0)]
    pub rate_limit: f64,
    /// Requests the rate limit lets through at once before spacing them.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_burst: u32,
    /// Runs of the main fleet, each in a fresh simulator and process; the
    /// summary gives the median.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=99))]
    pub runs: u32,
    /// Robots at each point of the size series (each point is
    /// robots x --codes-per-robot codes).
    #[arg(long, value_delimiter = ',', default_value = "100,1000,10000")]
    pub series: Vec<u32>,
    /// Skip the size series.
    #[arg(long)]
    pub no_series: bool,
    /// Passed by `cargo bench`; without it the binary runs a smoke check.
    #[arg(long, hide = true)]
    pub bench: bool,
}

impl Options {
    /// What `cargo test` / `cargo nextest run --all-targets` run: a tiny
    /// fleet that still spans two list pages, checked for exact call counts.
    pub fn smoke() -> Self {
        Self {
            robots: 3,
            codes_per_robot: 150,
            drift_share: 0.5,
            latency: HumanDuration(Duration::from_millis(1)),
            concurrency: 2,
            code_concurrency: 1,
            rate_limit: 0.0,
            rate_burst: 10,
            runs: 1,
            series: Vec::new(),
            no_series: true,
            bench: false,
        }
    }

    /// Checks what clap cannot.
    pub fn check(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.drift_share) {
            return Err(format!(
                "--drift-share is {}; give a share between 0 and 1, e.g. 0.5",
                self.drift_share
            ));
        }
        if !(self.rate_limit >= 0.0 && self.rate_limit.is_finite()) {
            return Err(format!(
                "--rate-limit is {}; give requests per second, or 0 for no limit",
                self.rate_limit
            ));
        }
        if self.series.contains(&0) {
            return Err("--series has a point with 0 robots; give robot counts above 0".into());
        }
        Ok(())
    }

    /// The series points to run.
    pub fn series_points(&self) -> &[u32] {
        if self.no_series { &[] } else { &self.series }
    }
}
