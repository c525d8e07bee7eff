//! Figures from runs: the lower bounds, the ideal time, and the printed
//! report (per run, the median of the main fleet, the size series).

use super::fleet::{Calls, Shape};
use super::options::Options;
use super::runner::RunResult;
use super::sdk::SdkRun;
use super::simulator::CallDelta;

/// The time the calls need if nothing but latency and the quotas cost
/// anything: each resource makes its calls one round after another
/// (pages, then updates `--code-concurrency` at a time), and `--concurrency`
/// resources run at once. With `--code-concurrency 1` every round is one
/// call and this is calls x latency / concurrency; the quota bound, when
/// larger, takes its place.
pub fn ideal_secs(options: &Options, shape: &Shape, converging: bool) -> f64 {
    let latency = options.latency.0.as_secs_f64();
    let per_robot = shape.rounds_per_robot(options.code_concurrency, converging) as f64;
    let in_flight = f64::from(options.concurrency.min(shape.robots));
    let by_latency =
        (f64::from(shape.robots) * per_robot * latency / in_flight).max(per_robot * latency);
    let calls = if converging {
        shape.converge_bound()
    } else {
        shape.steady_bound()
    };
    by_latency.max(quota_bound_secs(options, &calls))
}

/// The quota bound: max(lists / read rate, writes (updates and creates) /
/// write rate), each rate the tighter of the client's budget and the
/// server's quota; 0 when neither limits.
pub fn quota_bound_secs(options: &Options, calls: &Calls) -> f64 {
    let budgets = options.pacing().budgets(options.region.as_deref());
    let server = options.server_quota;
    let rate = |client: f64, server: Option<f64>| {
        [(client > 0.0).then_some(client), server]
            .into_iter()
            .flatten()
            .reduce(f64::min)
    };
    let time = |count: u64, rate: Option<f64>| rate.map_or(0.0, |r| count as f64 / r);
    let reads = rate(budgets.reads.per_second, server.map(|q| q.reads));
    let writes = rate(budgets.writes.per_second, server.map(|q| q.writes));
    time(calls.list, reads).max(time(calls.writes(), writes))
}

/// The client's budgets and the server's quotas, for the header.
pub fn pacing_line(options: &Options) -> String {
    let budgets = options.pacing().budgets(options.region.as_deref());
    let rate = |r: f64| {
        if r > 0.0 {
            format!("{r}/s")
        } else {
            "off".to_owned()
        }
    };
    let server = options.server_quota.map_or("none".to_owned(), |q| {
        format!("{}/s reads, {}/s writes", q.reads, q.writes)
    });
    format!(
        "client reads {}, writes {} (burst {}); server quota {server}",
        rate(budgets.reads.per_second),
        rate(budgets.writes.per_second),
        options.rate_burst
    )
}

/// `measured / ideal`, or `n/a` when nothing bounds the time (no latency).
fn ratio(measured: f64, ideal: f64) -> String {
    if ideal > 0.0 {
        format!("{:.2}", measured / ideal)
    } else {
        "n/a".to_owned()
    }
}

/// The middle value (the lower middle of an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[(values.len() - 1) / 2]
}

/// `6000 = bound` or `6012 (bound 6000, +12)`.
fn against(made: u64, bound: u64) -> String {
    if made == bound {
        format!("{made} = bound")
    } else {
        format!("{made} (bound {bound}, {:+})", made as i64 - bound as i64)
    }
}

fn calls_line(delta: &CallDelta, bound: &Calls) -> String {
    let mut line = format!(
        "{} calls: ListActiveCode {}, UpdateActiveCode {}",
        delta.total(),
        against(delta.calls.list, bound.list),
        against(delta.calls.update, bound.update),
    );
    if bound.create > 0 || delta.calls.create > 0 {
        line.push_str(&format!(
            ", CreateActiveCode {}",
            against(delta.calls.create, bound.create)
        ));
    }
    if delta.other > 0 {
        line.push_str(&format!(", other operations {}", delta.other));
    }
    if delta.not_ok > 0 {
        line.push_str(&format!(
            ", {} answered other than 200 ({} x 429)",
            delta.not_ok, delta.throttled
        ));
    }
    let equal = delta.calls == *bound && delta.other == 0;
    line.push_str(if equal {
        " -> equal to the lower bound"
    } else {
        " -> NOT the lower bound"
    });
    line
}

pub fn header(options: &Options, shape: &Shape) -> String {
    if shape.scale_up {
        return format!(
            "converge: scale-up, {} robots x an empty room counting {} codes (spec.count) = {} creates; latency {}; concurrency {} resources x {} code(s) at once; {}\n",
            shape.robots,
            shape.codes_per_robot,
            shape.converge_bound().create,
            options.latency,
            options.concurrency,
            options.code_concurrency,
            pacing_line(options),
        );
    }
    format!(
        "converge: {} robots x {} codes = {} codes, {} drifted per robot ({} updates); latency {}; concurrency {} resources x {} code(s) at once; {}\n",
        shape.robots,
        shape.codes_per_robot,
        shape.codes(),
        shape.drifted_per_robot,
        shape.converge_bound().update,
        options.latency,
        options.concurrency,
        options.code_concurrency,
        pacing_line(options),
    )
}

/// One run, a few lines.
pub fn run(options: &Options, index: usize, run: &RunResult) -> String {
    let shape = &run.shape;
    let ideal = ideal_secs(options, shape, true);
    let steady_ideal = ideal_secs(options, shape, false);
    let mut text = format!(
        "run {index}: converge {:.2} s ({:.0} calls/s, ideal {:.2} s, ratio {}), {}/{} resources converged\n",
        run.converge.wall_secs,
        run.converge_calls.total() as f64 / run.converge.wall_secs,
        ideal,
        ratio(run.converge.wall_secs, ideal),
        run.converge.converged,
        run.converge.resources,
    );
    text.push_str(&format!(
        "  converge calls: {}\n",
        calls_line(&run.converge_calls, &shape.converge_bound())
    ));
    text.push_str(&format!(
        "  client CPU: {:.2} s, {} per call\n",
        run.converge.cpu_secs,
        per_call(run.converge.cpu_secs, run.converge_calls.total())
    ));
    text.push_str(&format!(
        "  steady state: {:.2} s (ideal {:.2} s, ratio {}), {} writes; {}\n",
        run.steady.wall_secs,
        steady_ideal,
        ratio(run.steady.wall_secs, steady_ideal),
        run.steady_calls.writes,
        calls_line(&run.steady_calls, &shape.steady_bound())
    ));
    text.push_str(&format!(
        "  memory: operator peak {:.1} MiB (after converging {:.1} MiB, before the fleet {:.1} MiB); simulator {}\n",
        run.steady.memory.peak_mib(),
        run.converge.memory.peak_mib(),
        run.baseline.peak_mib(),
        simulator_memory(run),
    ));
    for failure in run.converge.failures.iter().chain(&run.steady.failures) {
        text.push_str(&format!("  not converged: {failure}\n"));
    }
    text
}

/// The ideal time and what sets it: latency or the quota bound.
fn ideal_line(options: &Options, shape: &Shape, ideal: f64) -> String {
    let bound = shape.converge_bound();
    if ideal > 0.0 && ideal == quota_bound_secs(options, &bound) {
        return format!(
            "{ideal:.2} s (the quota bound: {} lists and {} writes at {})",
            bound.list,
            bound.writes(),
            pacing_line(options)
        );
    }
    format!(
        "{ideal:.2} s ({} calls x {} / {} in flight)",
        bound.total(),
        options.latency,
        options.concurrency.min(shape.robots)
    )
}

/// The official SDK's run beside it.
pub fn sdk(options: &Options, shape: &Shape, operator: &RunResult, run: &SdkRun) -> String {
    let bound = ideal_secs(options, shape, true);
    let operator_cpu = operator.converge.cpu_secs / operator.converge_calls.total().max(1) as f64;
    let sdk_cpu = run.pass.cpu_secs / run.calls.total().max(1) as f64;
    format!(
        "  official SDK ({} threads, retries on): converge {:.2} s (ideal {bound:.2} s, ratio {}), {} updates and {} robots failed\n    SDK calls: {}\n    SDK CPU: {:.2} s, {} per call ({} the operator's)\n",
        options.sdk_threads,
        run.pass.wall_secs,
        ratio(run.pass.wall_secs, bound),
        run.pass.failed_updates,
        run.pass.failed_robots,
        calls_line(&run.calls, &shape.converge_bound()),
        run.pass.cpu_secs,
        per_call(run.pass.cpu_secs, run.calls.total()),
        if operator_cpu > 0.0 {
            format!("{:.1}x", sdk_cpu / operator_cpu)
        } else {
            "n/a x".to_owned()
        },
    )
}

/// CPU seconds over calls, in milliseconds.
fn per_call(cpu_secs: f64, calls: u64) -> String {
    format!("{:.3} ms", cpu_secs * 1000.0 / calls.max(1) as f64)
}

fn simulator_memory(run: &RunResult) -> String {
    run.simulator.map_or("unknown".to_owned(), |m| {
        format!("RSS {:.1} MiB (peak {:.1} MiB)", m.rss_mib(), m.peak_mib())
    })
}

/// The main fleet over its runs: medians.
pub fn summary(options: &Options, runs: &[RunResult]) -> String {
    let first = &runs[0];
    let shape = &first.shape;
    let med = |f: &dyn Fn(&RunResult) -> f64| median(runs.iter().map(f).collect());
    let wall = med(&|r| r.converge.wall_secs);
    let ideal = ideal_secs(options, shape, true);
    let steady = med(&|r| r.steady.wall_secs);
    let steady_ideal = ideal_secs(options, shape, false);
    let bound = shape.converge_bound();
    let all_equal = runs
        .iter()
        .all(|r| r.converge_calls.calls == bound && r.converge_calls.other == 0);
    let steady_clean = runs.iter().all(|r| {
        r.steady_calls.calls == shape.steady_bound()
            && r.steady_calls.other == 0
            && r.steady_calls.writes == 0
    });
    let mut rows = vec![
        ("runs".to_owned(), runs.len().to_string()),
        ("converge wall time".into(), format!("{wall:.2} s")),
        (
            "remote calls (run 1)".into(),
            calls_line(&first.converge_calls, &bound),
        ),
        (
            "equal to the bound in every run".into(),
            if all_equal { "yes" } else { "NO" }.into(),
        ),
        (
            "calls per second".into(),
            format!(
                "{:.0}",
                med(&|r| r.converge_calls.total() as f64 / r.converge.wall_secs)
            ),
        ),
        (
            "client CPU per call".into(),
            format!(
                "{:.3} ms",
                med(&|r| r.converge.cpu_secs * 1000.0 / r.converge_calls.total().max(1) as f64)
            ),
        ),
        ("ideal time".into(), ideal_line(options, shape, ideal)),
        ("measured / ideal".into(), ratio(wall, ideal)),
        (
            "peak memory, operator".into(),
            format!(
                "{:.1} MiB (before the fleet {:.1} MiB)",
                med(&|r| r.steady.memory.peak_mib()),
                med(&|r| r.baseline.peak_mib())
            ),
        ),
        ("simulator memory (run 1)".into(), simulator_memory(first)),
        ("steady-state wall time".into(), format!("{steady:.2} s")),
        (
            "steady-state calls (run 1)".into(),
            format!(
                "{} list, {} writes{}",
                first.steady_calls.calls.list,
                first.steady_calls.writes,
                if steady_clean {
                    " (every run: list only, = bound, zero writes)"
                } else {
                    " (NOT list-only in every run)"
                }
            ),
        ),
        (
            "steady-state measured / ideal".into(),
            format!(
                "{} (ideal {steady_ideal:.2} s)",
                ratio(steady, steady_ideal)
            ),
        ),
    ];
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut text = format!("\nMain fleet, median of {} run(s)\n", runs.len());
    for (key, value) in rows.drain(..) {
        text.push_str(&format!("  {key:<width$}  {value}\n"));
    }
    text
}

/// The size series as a table, with memory per 1k codes.
pub fn series(options: &Options, points: &[RunResult]) -> String {
    let mut text = String::from("\nSize series (one run per point, each in a fresh process)\n");
    text.push_str("| robots | codes | calls (bound) | converge s | ideal s | ratio | calls/s | steady s | steady calls | writes | peak MiB | sim RSS MiB |\n");
    text.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for p in points {
        let ideal = ideal_secs(options, &p.shape, true);
        let bound = p.shape.converge_bound().total();
        let calls = p.converge_calls.total();
        text.push_str(&format!(
            "| {} | {} | {} ({}) | {:.2} | {:.2} | {} | {:.0} | {:.2} | {} | {} | {:.1} | {} |\n",
            p.shape.robots,
            p.shape.codes(),
            calls,
            if calls == bound && p.converge_calls.calls == p.shape.converge_bound() {
                "= bound".to_owned()
            } else {
                format!("bound {bound}")
            },
            p.converge.wall_secs,
            ideal,
            ratio(p.converge.wall_secs, ideal),
            calls as f64 / p.converge.wall_secs,
            p.steady.wall_secs,
            p.steady_calls.total(),
            p.steady_calls.writes,
            p.steady.memory.peak_mib(),
            p.simulator
                .map_or("?".to_owned(), |m| format!("{:.1}", m.rss_mib())),
        ));
    }
    if points.len() >= 2 {
        text.push_str(&memory_growth(points));
    }
    text
}

/// Peak memory against codes: the least-squares slope (MiB per 1k codes)
/// and the step between neighbouring points, to show whether it is linear.
fn memory_growth(points: &[RunResult]) -> String {
    let xs: Vec<f64> = points
        .iter()
        .map(|p| p.shape.codes() as f64 / 1000.0)
        .collect();
    let ys: Vec<f64> = points.iter().map(|p| p.steady.memory.peak_mib()).collect();
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let steps: Vec<String> = points
        .windows(2)
        .map(|w| {
            let dx = (w[1].shape.codes() as f64 - w[0].shape.codes() as f64) / 1000.0;
            let dy = w[1].steady.memory.peak_mib() - w[0].steady.memory.peak_mib();
            format!(
                "{}->{} codes: {:.3} MiB per 1k codes",
                w[0].shape.codes(),
                w[1].shape.codes(),
                dy / dx
            )
        })
        .collect();
    format!(
        "memory: peak = {intercept:.1} MiB + {slope:.3} MiB per 1k codes (least squares); steps: {}\n",
        steps.join("; ")
    )
}
