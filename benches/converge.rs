//! `cargo bench --bench converge [-- FLAGS]`: converges a fleet of
//! ActivationCodes through the engine, exactly as `reconcile -f` does,
//! against the simulator in a separate process, and prints wall time,
//! remote calls against their lower bound, calls per second, the operator's
//! peak memory, a steady-state pass and a size series. It prints figures;
//! it asserts nothing about time. BENCHMARKS.md has the figures and how to
//! read them.
//!
//! The binary has four modes:
//! - with `--bench` (what `cargo bench` passes): the full report;
//! - with `--list` (how nextest asks for tests): lists one test,
//!   `converge_smoke`;
//! - otherwise (`cargo test --all-targets`, `cargo nextest run
//!   --all-targets`): a smoke run of a tiny fleet that fails unless the
//!   calls equal the lower bound and the steady state writes nothing;
//! - with `--converge-worker SPEC`: one run's operator side, started by the
//!   modes above in a fresh process so its peak memory is its own.

#[path = "converge/cpu.rs"]
mod cpu;
#[path = "converge/fleet.rs"]
mod fleet;
#[path = "converge/memory.rs"]
mod memory;
#[path = "converge/options.rs"]
mod options;
#[path = "converge/report.rs"]
mod report;
#[path = "converge/runner.rs"]
mod runner;
#[path = "converge/sdk.rs"]
mod sdk;
#[path = "converge/simulator.rs"]
mod simulator;
#[path = "converge/worker.rs"]
mod worker;

use clap::Parser;
use fleet::Shape;
use options::Options;
use runner::{RunResult, Runner};
use std::process::ExitCode;

/// The one test nextest sees.
const SMOKE_TEST: &str = "converge_smoke";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let result = if has(worker::FLAG) {
        worker::main(&args)
    } else if has("--list") {
        // `--list --format terse [--ignored]`: nothing here is ignored.
        if !has("--ignored") {
            println!("{SMOKE_TEST}: test");
        }
        Ok(())
    } else if has("--bench") {
        bench(&Options::parse_from(&args))
    } else {
        smoke()
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("converge: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The full report.
fn bench(options: &Options) -> Result<(), String> {
    options.check()?;
    let runner = Runner::new()?;
    let shape = options.shape(options.robots);
    print!("{}", report::header(options, &shape));
    let mut runs = Vec::new();
    for index in 1..=options.runs as usize {
        let run = runner.run(options, shape)?;
        print!("{}", report::run(options, index, &run));
        if options.sdk {
            let sdk = sdk::run(&runner, options, shape)?;
            print!("{}", report::sdk(options, &shape, &run, &sdk));
        }
        runs.push(run);
    }
    print!("{}", report::summary(options, &runs));

    let mut points: Vec<RunResult> = Vec::new();
    for &robots in options.series_points() {
        let shape = options.shape(robots);
        eprintln!("series: {} codes ...", shape.codes());
        points.push(runner.run(options, shape)?);
    }
    if !points.is_empty() {
        print!("{}", report::series(options, &points));
    }
    Ok(())
}

/// The tiny runs of `cargo test` and nextest, a drifted fleet and a
/// scale-up: they check the counts, which do not depend on timing.
fn smoke() -> Result<(), String> {
    let mut problems = Vec::new();
    for scale_up in [false, true] {
        let options = Options {
            scale_up,
            ..Options::smoke()
        };
        let shape = options.shape(options.robots);
        let run = Runner::new()?.run(&options, shape)?;
        print!("{}", report::header(&options, &shape));
        print!("{}", report::run(&options, 1, &run));
        problems.extend(smoke_problems(&shape, &run));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// What a smoke run did other than the lower bound of calls and a steady
/// state that writes nothing.
fn smoke_problems(shape: &Shape, run: &RunResult) -> Vec<String> {
    let mut problems = Vec::new();
    if run.converge_calls.calls != shape.converge_bound() || run.converge_calls.other != 0 {
        problems.push(format!(
            "converging took {:?} plus {} other calls; the lower bound is {:?}",
            run.converge_calls.calls,
            run.converge_calls.other,
            shape.converge_bound()
        ));
    }
    if run.steady_calls.calls != shape.steady_bound() || run.steady_calls.writes != 0 {
        problems.push(format!(
            "the steady state took {:?} with {} writes; expected {:?} and none",
            run.steady_calls.calls,
            run.steady_calls.writes,
            shape.steady_bound()
        ));
    }
    for pass in [&run.converge, &run.steady] {
        if pass.converged != pass.resources || pass.writes_done != pass.writes_planned {
            problems.push(format!(
                "{} of {} resources converged, {} of {} writes done: {:?}",
                pass.converged,
                pass.resources,
                pass.writes_done,
                pass.writes_planned,
                pass.failures
            ));
        }
    }
    problems
}
