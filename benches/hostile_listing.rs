//! `cargo bench --bench hostile_listing`: the peak memory and wall time of
//! `reconcile -f` (the built binary, as a user runs it) against a hostile
//! endpoint that answers every list page with 20,000 new codes and
//! `count: 4294967295` (issue 17), beside the same run against a
//! well-behaved endpoint (one page of 100 codes) and against the worst an
//! endpoint can do within the bounds (100,000 distinct codes, 100 a page,
//! every id and value 128 bytes long: the listing is read to its cap, then
//! the resource is refused for selecting more than 30,000 codes), and that
//! worst for `--resources` ActivationCodes (of as many robots) reconciled
//! at once (`reconcile -f --concurrency` as many): the listings the process
//! holds together, which the listing budget bounds. The peak is the
//! child's own `ru_maxrss` from `wait4`, so nothing of this process is in
//! it; each run starts from an empty status file and export directory and
//! reports whether it wrote a code anywhere. It prints figures (medians of
//! `--runs`); it asserts nothing about time or memory.
//!
//! Flags: `--runs N` [3], `--codes-per-page N` [20000], `--count N`
//! [4294967295], `--resources N` [4], `--deadline SECONDS` (a run still
//! going is killed and its peak so far reported) [60], `--binary PATH`
//! (another build, e.g. of an older commit, to compare) [this build's].
//!
//! Without `--bench` (nextest, `cargo test --all-targets`) it runs the
//! hostile case once and fails unless the run ended by itself with exit
//! code 1 and wrote no code.

#[path = "../tests/common/raw_http.rs"]
#[allow(dead_code)]
mod raw_http;

use metastudio_operator::metastudio::listing::MAX_LISTED_CODES;
use metastudio_operator::metastudio::models::MAX_FIELD_BYTES;
use metastudio_operator::simulator::DEFAULT_PROJECT_ID;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SMOKE_TEST: &str = "hostile_listing_smoke";
const ROBOT: &str = "4d54c0ffee446249aa00bb11cc226526";
/// The code value of every listed code: found in a file, it was written.
const VALUE: &str = "HOSTILE-CODE-VALUE";

struct Options {
    runs: usize,
    codes_per_page: u64,
    count: u64,
    resources: usize,
    deadline: Duration,
    binary: PathBuf,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut options = Options {
            runs: 3,
            codes_per_page: 20_000,
            count: u64::from(u32::MAX),
            resources: 4,
            deadline: Duration::from_secs(60),
            binary: PathBuf::from(env!("CARGO_BIN_EXE_metastudio-operator")),
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or(format!("{flag} needs a value"));
            let number = |v: &String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
            match flag.as_str() {
                "--runs" => options.runs = number(value()?)?.max(1) as usize,
                "--codes-per-page" => options.codes_per_page = number(value()?)?,
                "--count" => options.count = number(value()?)?,
                "--resources" => options.resources = number(value()?)?.clamp(1, 256) as usize,
                "--deadline" => options.deadline = Duration::from_secs(number(value()?)?),
                "--binary" => options.binary = PathBuf::from(value()?),
                "--bench" => {}
                other => return Err(format!("unknown flag {other}")),
            }
        }
        Ok(options)
    }
}

/// One `reconcile -f` run as measured.
struct Run {
    exit: Option<i32>,
    killed: bool,
    wall: Duration,
    peak_mib: f64,
    /// The Ready line of the report: the error a user sees.
    ready: String,
    /// Files below the export directory, and whether the status file or
    /// any of them holds a code value.
    exports: usize,
    wrote_a_code: bool,
}

/// `resources` ActivationCodes, each of a robot of its own.
fn manifest(resources: usize) -> String {
    (0..resources)
        .map(|i| {
            let robot = format!("{}{i:02}", &ROBOT[..30]);
            format!(
                "apiVersion: metastudio.huaweicloud.com/v1alpha1\nkind: ActivationCode\nmetadata: {{name: kiosk-{i}, namespace: bench}}\nspec:\n  robotId: {robot}\n  validPeriod: 1\n  exportSecretRef: {{name: kiosk-{i}-codes}}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Runs `reconcile -f` of `resources` ActivationCodes, all at once, against
/// `endpoint` in a fresh directory, killing it after `deadline`.
fn reconcile(
    binary: &Path,
    endpoint: &str,
    deadline: Duration,
    resources: usize,
) -> Result<Run, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let manifest_path = dir.path().join("codes.yaml");
    std::fs::write(&manifest_path, manifest(resources)).map_err(|e| e.to_string())?;
    let report = dir.path().join("report.txt");
    let stdout = File::create(&report).map_err(|e| e.to_string())?;
    let (status_file, exports) = (dir.path().join("status.json"), dir.path().join("exports"));
    let started = Instant::now();
    let child = Command::new(binary)
        .arg("reconcile")
        .arg("-f")
        .arg(&manifest_path)
        .args(["--concurrency", &resources.to_string()])
        .args(["--endpoint", endpoint, "--project-id", DEFAULT_PROJECT_ID])
        .args(["--read-rate", "0", "--write-rate", "0"])
        .arg("--status-file")
        .arg(&status_file)
        .arg("--export-dir")
        .arg(&exports)
        .env("METASTUDIO_AUTH_TOKEN", "BENCH-TOKEN")
        .env_remove("CLOUD_SDK_AK")
        .env_remove("CLOUD_SDK_SK")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    let (status, peak_kib, killed) = wait_measured(child.id() as libc::pid_t, deadline)?;
    let wall = started.elapsed();
    let report = std::fs::read_to_string(&report).unwrap_or_default();
    let ready = report
        .lines()
        .find(|l| l.trim_start().starts_with("Ready="))
        .unwrap_or("(no Ready line)")
        .trim()
        .to_owned();
    let mut files = vec![status_file];
    files.extend(files_below(&exports));
    let wrote_a_code = files
        .iter()
        .any(|f| std::fs::read_to_string(f).is_ok_and(|t| t.contains(VALUE)));
    Ok(Run {
        exit: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        killed,
        wall,
        peak_mib: peak_kib as f64 / 1024.0,
        ready,
        exports: files.len() - 1,
        wrote_a_code,
    })
}

/// Waits for the child `pid` (killing it once `deadline` passes) and
/// returns its wait status, its peak resident memory in KiB, and whether
/// it was killed.
fn wait_measured(pid: libc::pid_t, deadline: Duration) -> Result<(i32, i64, bool), String> {
    let until = Instant::now() + deadline;
    let mut killed = false;
    loop {
        let mut status = 0;
        // SAFETY: wait4 writes only the status and the rusage it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let flags = if killed { 0 } else { libc::WNOHANG };
        match unsafe { libc::wait4(pid, &mut status, flags, &mut usage) } {
            0 => {}
            n if n == pid => return Ok((status, usage.ru_maxrss, killed)),
            _ => return Err(format!("wait4: {}", std::io::Error::last_os_error())),
        }
        if Instant::now() >= until {
            // SAFETY: the child is ours and not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// What the endpoint of one series answers: to each list request, the
/// page its `offset` asks for, `per_page` codes with ids from the offset
/// on (distinct across pages, so a listing never stops for lack of new
/// codes) of `count` in all.
#[derive(Clone, Copy)]
struct Endpoint {
    per_page: u64,
    count: u64,
    /// Every id and code value as long as an answer may make it
    /// ([`MAX_FIELD_BYTES`]), each code in a room of its own among ten.
    long_fields: bool,
}

impl Endpoint {
    /// The page at `offset` of `robot`'s codes.
    fn page(&self, robot: &str, offset: u64) -> String {
        let long = |prefix: &str, n: u64| {
            let width = MAX_FIELD_BYTES - prefix.len();
            format!("{prefix}{n:0>width$}")
        };
        let codes: Vec<String> = (offset..self.count.min(offset + self.per_page))
            .map(|i| {
                let (id, value, room) = if self.long_fields {
                    (long("id-", i), long(VALUE, i), long("room-", i % 10))
                } else {
                    (format!("c{i}"), VALUE.to_owned(), "hall".to_owned())
                };
                format!(
                    r#"{{"active_code_id":"{id}","active_code":"{value}","robot_id":"{robot}","room_id":"{room}","valid_period":1,"create_time":"2026-01-01T00:00:00Z","update_time":"2026-01-01T00:00:00Z"}}"#
                )
            })
            .collect();
        format!(
            r#"{{"offset":{offset},"limit":100,"count":{},"data":[{}]}}"#,
            self.count,
            codes.join(",")
        )
    }

    /// Serves on port 0; returns the address and the requests counter.
    async fn serve(self) -> (String, Arc<AtomicU64>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicU64::new(0));
        let counter = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]);
                    let parameter = |name: &str| {
                        head.split(['?', '&', ' '])
                            .find_map(|p| p.strip_prefix(name))
                            .map(str::to_owned)
                    };
                    let offset = parameter("offset=").and_then(|o| o.parse().ok());
                    let robot = parameter("robot_id=").unwrap_or_else(|| ROBOT.to_owned());
                    let page = self.page(&robot, offset.unwrap_or(0));
                    let answer = raw_http::json_response("200 OK", "rid-bench", page.as_bytes());
                    let _ = stream.write_all(&answer).await;
                });
            }
        });
        (address, requests)
    }
}

/// Runs `runs` times against `endpoint` with `resources` ActivationCodes;
/// prints each run and the medians.
fn measure(
    name: &str,
    endpoint: Endpoint,
    options: &Options,
    (runs, resources): (usize, usize),
) -> Result<Vec<Run>, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (address, requests) = runtime.block_on(endpoint.serve());
    let mut measured = Vec::new();
    for i in 1..=runs {
        let run = reconcile(&options.binary, &address, options.deadline, resources)?;
        println!(
            "| {name} | {i} | {} | {:.2} | {:.1} | {} | {} | {} |",
            match (run.killed, run.exit) {
                (true, _) => "killed".to_owned(),
                (false, Some(code)) => code.to_string(),
                (false, None) => "signal".to_owned(),
            },
            run.wall.as_secs_f64(),
            run.peak_mib,
            run.exports,
            if run.wrote_a_code { "yes" } else { "no" },
            run.ready
        );
        measured.push(run);
    }
    println!(
        "| {name} | **median** | | {:.2} | **{:.1}** | | | {} requests in all |",
        median(measured.iter().map(|r| r.wall.as_secs_f64()).collect()),
        median(measured.iter().map(|r| r.peak_mib).collect()),
        requests.load(Ordering::SeqCst)
    );
    Ok(measured)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    if has("--list") {
        if !has("--ignored") {
            println!("{SMOKE_TEST}: test");
        }
        return ExitCode::SUCCESS;
    }
    let smoke = !has("--bench");
    let options = if smoke {
        Options::parse(&[])
    } else {
        Options::parse(&args)
    };
    let options = match options {
        Ok(options) => options,
        Err(err) => {
            eprintln!("hostile_listing: {err}");
            return ExitCode::FAILURE;
        }
    };
    let hostile = Endpoint {
        per_page: options.codes_per_page,
        count: options.count,
        long_fields: false,
    };
    println!("binary: {}", options.binary.display());
    println!("| endpoint | run | exit | wall s | peak MiB | export files | code written | Ready |");
    println!("|---|---:|---:|---:|---:|---:|---|---|");
    let runs = if smoke { 1 } else { options.runs };
    let name = format!("{} codes a page, count {}", hostile.per_page, hostile.count);
    let result = measure(&name, hostile, &options, (runs, 1)).and_then(|hostile| {
        if !smoke {
            let good = Endpoint {
                per_page: 100,
                count: 100,
                long_fields: false,
            };
            measure("well-behaved: 100 codes", good, &options, (runs, 1))?;
            let count = u64::from(MAX_LISTED_CODES);
            let bounded = Endpoint {
                per_page: 100,
                count,
                long_fields: true,
            };
            let name = format!("within the bounds: {count} codes, 128-byte fields");
            measure(&name, bounded, &options, (runs, 1))?;
            let resources = options.resources;
            let name = format!("{resources} resources at once, each within the bounds");
            measure(&name, bounded, &options, (runs, resources))?;
        }
        Ok(hostile)
    });
    match result {
        Ok(hostile) if smoke => {
            let run = &hostile[0];
            if run.killed || run.exit != Some(1) || run.wrote_a_code || run.exports > 0 {
                eprintln!("{SMOKE_TEST}: FAILED");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("hostile_listing: {err}");
            ExitCode::FAILURE
        }
    }
}
