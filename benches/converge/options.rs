//! The benchmark's flags (after `cargo bench --bench converge --`).

use clap::Parser;
use metastudio_operator::duration::HumanDuration;
use metastudio_operator::metastudio::pacing::{Pacing, Quotas};
use std::path::PathBuf;
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
    /// Region whose documented quotas the client paces at (cn-north-4:
    /// 20 reads and 5 writes a second). Without it, and without
    /// --read-rate and --write-rate, the client is not paced.
    #[arg(long)]
    pub region: Option<String>,
    /// Client reads per second (0 = off) [default: --region's quota, or off].
    #[arg(long)]
    pub read_rate: Option<f64>,
    /// Client writes per second (0 = off) [default: --region's quota, or off].
    #[arg(long)]
    pub write_rate: Option<f64>,
    /// Requests of a class the client lets through at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_burst: u32,
    /// The simulator enforces these per-tenant quotas, READS/WRITES per
    /// second (e.g. 20/5), answering 429 APIGW.0308 over them.
    #[arg(long, value_parser = parse_quota)]
    pub server_quota: Option<Quotas>,
    /// A scale-up instead of a drifted fleet: each resource counts an
    /// empty room (spec.count) up to --codes-per-robot codes, so
    /// converging is one create per code (--drift-share is unused).
    #[arg(long)]
    pub scale_up: bool,
    /// Also converge an identical fleet with the official Huawei Cloud
    /// Python SDK (--sdk-threads threads, its retries on) and print both.
    #[arg(long)]
    pub sdk: bool,
    /// Threads of the SDK side.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub sdk_threads: u32,
    /// The Python with the SDK installed (scripts/test makes this venv).
    #[arg(long, default_value = "target/python/bin/python")]
    pub python: PathBuf,
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
            region: None,
            read_rate: None,
            write_rate: None,
            rate_burst: 1,
            server_quota: None,
            scale_up: false,
            sdk: false,
            sdk_threads: 8,
            python: PathBuf::new(),
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
        for (flag, rate) in [
            ("--read-rate", self.read_rate),
            ("--write-rate", self.write_rate),
        ] {
            if rate.is_some_and(|r| !(r >= 0.0 && r.is_finite())) {
                return Err(format!(
                    "{flag} is {}; give requests per second, or 0 for no limit",
                    rate.unwrap_or_default()
                ));
            }
        }
        if self.scale_up && self.sdk {
            return Err(
                "--sdk converges a drifted fleet; drop it with --scale-up (the SDK side makes no creates)".into(),
            );
        }
        if self.series.contains(&0) {
            return Err("--series has a point with 0 robots; give robot counts above 0".into());
        }
        Ok(())
    }

    /// The client's pacing: the region's documented quotas, overridden
    /// per class by the rates; unpaced when nothing is given.
    pub fn pacing(&self) -> Pacing {
        let unset = self.region.is_none();
        Pacing {
            reads_per_second: self.read_rate.or(unset.then_some(0.0)),
            writes_per_second: self.write_rate.or(unset.then_some(0.0)),
            burst: Some(self.rate_burst),
            ..Pacing::default()
        }
    }

    /// The fleet of `robots` robots these options describe.
    pub fn shape(&self, robots: u32) -> super::fleet::Shape {
        if self.scale_up {
            super::fleet::Shape::scale_up(robots, self.codes_per_robot)
        } else {
            super::fleet::Shape::new(robots, self.codes_per_robot, self.drift_share)
        }
    }

    /// The series points to run.
    pub fn series_points(&self) -> &[u32] {
        if self.no_series { &[] } else { &self.series }
    }
}

/// `READS/WRITES`, e.g. `20/5`.
fn parse_quota(value: &str) -> Result<Quotas, String> {
    let fix = || format!("--server-quota is `{value}`; give reads/writes per second, e.g. 20/5");
    let (reads, writes) = value.split_once('/').ok_or_else(fix)?;
    let rate = |v: &str| {
        v.trim()
            .parse::<f64>()
            .ok()
            .filter(|r| *r > 0.0 && r.is_finite())
    };
    Ok(Quotas {
        reads: rate(reads).ok_or_else(fix)?,
        writes: rate(writes).ok_or_else(fix)?,
    })
}
