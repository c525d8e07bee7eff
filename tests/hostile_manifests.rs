//! Hostile input to the binary: malformed manifests and command lines. Each
//! must exit 2 with a message that names the file or document, the field
//! and the fix, must not panic, and must make no remote call: every run
//! points at an in-process simulator (through METASTUDIO_ENDPOINT, with
//! valid credentials) whose counters must stay at zero.
//!
//! The cases are a table, one line each: `Case::reconcile(name, yaml)` for
//! a manifest `a.yaml` run through `reconcile -f a.yaml`, or
//! `Case::command(name, args)` for a command line; then `.expect([..])` the
//! fragments stderr must hold.

mod common;

use common::offline::text;
use common::{robot_seed, simulator};
use metastudio_operator::simulator::{
    DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY, FaultConfig, Simulator,
};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The exit code of bad input (src/main.rs).
const BAD_INPUT: i32 = 2;

/// A valid ActivationCode whose spec is `spec` (YAML lines, indented by two).
fn ac(spec: &str) -> String {
    format!(
        "apiVersion: metastudio.huaweicloud.com/v1alpha1\nkind: ActivationCode\nmetadata: {{name: lobby}}\nspec:\n{}\n",
        spec.lines()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// A MetaStudioConnection (`cluster`: a ClusterMetaStudioConnection)
/// with `spec` (a YAML flow mapping's inside), beside a valid
/// ActivationCode so the file has one.
fn connection(cluster: bool, spec: &str) -> String {
    let kind = if cluster {
        "ClusterMetaStudioConnection"
    } else {
        "MetaStudioConnection"
    };
    format!(
        "{}---\napiVersion: metastudio.huaweicloud.com/v1alpha1\nkind: {kind}\nmetadata: {{name: shared}}\nspec: {{{spec}}}\n",
        valid("")
    )
}

/// A valid spec plus `extra` lines.
fn valid(extra: &str) -> String {
    ac(&format!("robotId: r1\nvalidPeriod: 3\n{extra}"))
}

struct Case {
    name: &'static str,
    /// Files to create in the run's directory: relative path and content.
    files: Vec<(String, Vec<u8>)>,
    /// Symbolic links to create: link and target.
    links: Vec<(&'static str, &'static str)>,
    args: Vec<String>,
    env: Vec<(&'static str, &'static str)>,
    expect: Vec<&'static str>,
    /// Text that must not appear on stderr (values of Secrets).
    absent: Vec<&'static str>,
}

impl Case {
    /// `reconcile -f a.yaml` over `a.yaml` holding `yaml`.
    fn reconcile(name: &'static str, yaml: impl Into<Vec<u8>>) -> Case {
        Case::command(name, &["reconcile", "-f", "a.yaml"]).file("a.yaml", yaml)
    }

    fn command(name: &'static str, args: &[&str]) -> Case {
        Case {
            name,
            files: Vec::new(),
            links: Vec::new(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            expect: Vec::new(),
            absent: Vec::new(),
        }
    }

    fn file(mut self, path: &str, content: impl Into<Vec<u8>>) -> Case {
        self.files.push((path.to_owned(), content.into()));
        self
    }

    fn link(mut self, link: &'static str, target: &'static str) -> Case {
        self.links.push((link, target));
        self
    }

    fn env(mut self, name: &'static str, value: &'static str) -> Case {
        self.env.push((name, value));
        self
    }

    fn expect<const N: usize>(mut self, fragments: [&'static str; N]) -> Case {
        self.expect.extend(fragments);
        self
    }

    fn absent<const N: usize>(mut self, fragments: [&'static str; N]) -> Case {
        self.absent.extend(fragments);
        self
    }
}

/// A billion-laughs document: nine aliases per level, nine levels.
fn alias_bomb() -> String {
    let mut text = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n".to_owned();
    for level in 1..9 {
        let prev = format!("*a{}", level - 1);
        let refs = [prev.as_str(); 9].join(", ");
        text.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
    }
    text
}

/// A seed that asks the embedded simulator for four billion codes.
const GREEDY_SEED: &str = "apiVersion: simulator.metastudio-operator.dev/v1alpha1\nkind: SimulatorSeed\nspec: {robots: [{robotId: r1, generate: {count: 4000000000, validPeriod: 3}}]}\n";

const SECRET_VALUE: &str = "918273645";

#[rustfmt::skip]
fn cases() -> Vec<Case> {
    let secret = format!("{}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: creds}}\nstringData: {{accessKey: ak, secretKey: {SECRET_VALUE}}}\n", valid(""));
    let long_id = ac(&format!("robotId: {}\nvalidPeriod: 3", "r".repeat(129)));
    let deep = format!("{}x{}", "[".repeat(200), "]".repeat(200));
    let doc_storm = "---\n".repeat(200_000);
    let huge = format!("# {}\n{}", "x".repeat(4 * 1024 * 1024), valid(""));
    let two_docs = format!("{}---\n{}", valid(""), ac("robotId: r2\nvalidPeriod: x"));
    vec![
        // validPeriod: wrong types and out of range
        Case::reconcile("validPeriod negative", ac("robotId: r1\nvalidPeriod: -1")).expect(["a.yaml: spec.validPeriod", "0 to 65535"]),
        Case::reconcile("validPeriod 65536", ac("robotId: r1\nvalidPeriod: 65536")).expect(["a.yaml: spec.validPeriod", "0 to 65535"]),
        Case::reconcile("validPeriod huge", ac("robotId: r1\nvalidPeriod: 99999999999999999999999")).expect(["spec.validPeriod", "whole number of days"]),
        Case::reconcile("validPeriod quoted", ac("robotId: r1\nvalidPeriod: \"3\"")).expect(["spec.validPeriod", "without quotes"]),
        Case::reconcile("validPeriod a word", ac("robotId: r1\nvalidPeriod: three")).expect(["spec.validPeriod", "0 to 65535"]),
        Case::reconcile("validPeriod a fraction", ac("robotId: r1\nvalidPeriod: 3.5")).expect(["spec.validPeriod", "whole number"]),
        // robotId
        Case::reconcile("robotId missing", ac("validPeriod: 3")).expect(["a.yaml: spec: missing field `robotId`", "set spec.robotId"]),
        Case::reconcile("robotId empty", ac("robotId: \"\"\nvalidPeriod: 3")).expect(["a.yaml: spec.robotId: is empty", "set the MetaStudio application"]),
        Case::reconcile("robotId a number", ac("robotId: 123\nvalidPeriod: 3")).expect(["spec.robotId", "quote the value"]),
        Case::reconcile("robotId too long", long_id).expect(["spec.robotId", "at most 128"]),
        // unknown fields
        Case::reconcile("unknown spec field", valid("validperiod: 4")).expect(["spec.validperiod: unknown field", "remove it or correct its spelling"]),
        Case::reconcile("unknown top-level field", format!("{}specs: {{}}\n", valid(""))).expect(["unknown top-level field `specs`", "apiVersion, kind, metadata and spec"]),
        Case::reconcile("unknown reset field", valid("reset: {token: t, when: now}")).expect(["spec.reset.when: unknown field", "`beforeExpiry`"]),
        Case::reconcile("unknown connection field", valid("connection: {regoin: cn-north-4}")).expect(["spec.connection.regoin: unknown field", "`region`"]),
        Case::reconcile("unknown Secret reference field", valid("connection: {credentialsSecretRef: {name: c, namespce: n}}")).expect(["spec.connection.credentialsSecretRef.namespce: unknown field `namespce`, expected `name`", "remove it or correct its spelling"]),
        Case::reconcile("unknown fields at two levels", valid("reset: {tokn: t}\nexportSecretRef: {name: e, format: json}")).expect(["spec.reset.tokn: unknown field", "spec.exportSecretRef.format: unknown field", "remove it or correct its spelling"]),
        Case::reconcile("unknown metadata field", valid("").replace("{name: lobby}", "{name: lobby, lables: {a: b}}")).expect(["metadata.lables: unknown field"]),
        // names
        Case::reconcile("name missing", valid("").replace("{name: lobby}", "{namespace: ns}")).expect(["metadata.name is missing"]),
        Case::reconcile("name not a DNS name", valid("").replace("lobby", "../../lobby")).expect(["metadata.name: `../../lobby` is not a valid name", "lower-case letters"]),
        Case::reconcile("namespace not a DNS label", valid("").replace("{name: lobby}", "{name: lobby, namespace: Team A}")).expect(["metadata.namespace", "lower-case letters"]),
        Case::reconcile("export Secret name", valid("exportSecretRef: {name: ../../etc/passwd}")).expect(["spec.exportSecretRef.name", "not a valid name"]),
        Case::command("same resource in two files", &["reconcile", "-f", "a.yaml", "-f", "b.yaml"]).file("a.yaml", valid("")).file("b.yaml", valid("")).expect(["b.yaml: ActivationCode default/lobby is also defined in a.yaml", "its own metadata.name"]),
        Case::reconcile("same key twice", valid("validPeriod: 4")).expect(["a.yaml: is not valid YAML at line 7", "duplicate mapping key `validPeriod`"]),
        // durations
        Case::reconcile("negative syncInterval", valid("syncInterval: -5m")).expect(["spec.syncInterval: `-5m` is not a duration: it is negative", "like 90s"]),
        Case::reconcile("syncInterval without unit", valid("syncInterval: 5")).expect(["spec.syncInterval", "like 90s"]),
        Case::reconcile("syncInterval too short", valid("syncInterval: 1s")).expect(["spec.syncInterval: 1s is too short", "at least 10s"]),
        Case::reconcile("syncInterval too long", valid("syncInterval: 100001d")).expect(["spec.syncInterval", "longer than 100000d"]),
        Case::reconcile("beforeExpiry in years", valid("reset: {beforeExpiry: 1y}")).expect(["spec.reset.beforeExpiry: `1y` is not a duration", "units are ms, s, m, h and d"]),
        Case::reconcile("beforeExpiry not shorter than validity", valid("reset: {beforeExpiry: 72h}")).expect(["spec.reset.beforeExpiry: 72h is not shorter than spec.validPeriod", "shorten beforeExpiry"]),
        Case::reconcile("beforeExpiry zero", valid("reset: {beforeExpiry: 0s}")).expect(["spec.reset.beforeExpiry: is 0"]),
        Case::reconcile("empty reset token", valid("reset: {token: \"\"}")).expect(["spec.reset.token: is empty"]),
        // enums, lists, connection
        Case::reconcile("managementPolicy lower-case", valid("managementPolicy: enforce")).expect(["spec.managementPolicy: unknown variant `enforce`", "Enforce or Observe"]),
        Case::reconcile("suspend not a boolean", valid("suspend: later")).expect(["spec.suspend", "true or false"]),
        Case::reconcile("empty code id list", valid("activeCodeIds: []")).expect(["spec.activeCodeIds: is an empty list"]),
        Case::reconcile("endpoint not http", valid("connection: {endpoint: ftp://x}")).expect(["spec.connection.endpoint", "http or https"]),
        Case::reconcile("non-ASCII app user id", valid("connection: {appUserId: 用户}")).expect(["spec.connection.appUserId", "printable ASCII"]),
        Case::reconcile("list for a mapping", valid("connection: [p1, cn-north-4]")).expect(["spec.connection: invalid type: sequence, expected a mapping", "{region: cn-north-4}"]),
        Case::reconcile("spec null", ac("").replace("spec:\n", "spec: null")).expect(["a.yaml: spec: invalid type: null", "robotId and validPeriod"]),
        // connection resources and spec.connectionRef
        Case::reconcile("connection field misspelt", connection(false, "region: cn-north-4, projectId: p, credentialsSecretRef: {name: c}, rgion: x")).expect(["a.yaml#2: spec.rgion: unknown field `rgion`, expected one of", "`region`", "remove it or correct its spelling"]),
        Case::reconcile("connection without region or endpoint", connection(false, "projectId: p, credentialsSecretRef: {name: c}")).expect(["a.yaml#2: spec.region: neither spec.region nor spec.endpoint is set"]),
        Case::reconcile("connection without credentials", connection(false, "region: cn-north-4, projectId: p")).expect(["a.yaml#2: spec: missing field `credentialsSecretRef`"]),
        Case::reconcile("connection endpoint not http", connection(false, "endpoint: ftp://x, projectId: p, credentialsSecretRef: {name: c}")).expect(["a.yaml#2: spec.endpoint", "http or https"]),
        Case::reconcile("connection budget negative", connection(false, "region: cn-north-4, projectId: p, credentialsSecretRef: {name: c}, budget: {writesPerSecond: -1}")).expect(["spec.budget.writesPerSecond: must be 0 (no limit) or from 0.1 to 1000 requests per second, not -1.0"]),
        Case::reconcile("connection budget share above one", connection(false, "region: cn-north-4, projectId: p, credentialsSecretRef: {name: c}, budget: {share: 2}")).expect(["spec.budget.share: must be from 0.01 to 1"]),
        Case::reconcile("cluster connection in a namespace", connection(true, "region: cn-north-4, projectId: p, credentialsSecretRef: {name: c, namespace: ops}").replace("{name: shared}", "{name: shared, namespace: retail}")).expect(["metadata.namespace: a ClusterMetaStudioConnection is cluster-wide"]),
        Case::reconcile("cluster connection Secret without namespace", connection(true, "region: cn-north-4, projectId: p, credentialsSecretRef: {name: c}")).expect(["spec.credentialsSecretRef: missing field `namespace`"]),
        Case::reconcile("cluster condition misspelt", connection(true, "region: cn-north-4, projectId: p, credentialsSecretRef: {name: c, namespace: ops}, conditions: [{namespaces: [a]}, {namspaces: [b]}]")).expect(["spec.conditions[1].namspaces: unknown field `namspaces`, expected one of `namespaceSelector`, `namespaces`, `robotIds`"]),
        Case::reconcile("connectionRef with connection", valid("connectionRef: {name: shared}\nconnection: {region: cn-north-4}")).expect(["spec.connectionRef: is set together with spec.connection"]),
        Case::reconcile("connectionRef of an unknown kind", valid("connectionRef: {kind: SecretStore, name: shared}")).expect(["spec.connectionRef.kind: unknown variant `SecretStore`", "`MetaStudioConnection`"]),
        Case::reconcile("connectionRef name not a DNS name", valid("connectionRef: {name: ../x}")).expect(["spec.connectionRef.name: `../x` is not a valid name"]),
        // apiVersion and kind
        Case::reconcile("wrong apiVersion", valid("").replace("v1alpha1", "v1")).expect(["apiVersion is `metastudio.huaweicloud.com/v1`", "apiVersion: metastudio.huaweicloud.com/v1alpha1"]),
        Case::reconcile("wrong kind", valid("").replace("kind: ActivationCode", "kind: ActivationCodes")).expect(["kind `ActivationCodes` does not exist", "kind: ActivationCode"]),
        Case::reconcile("kind in lower case", valid("").replace("kind: ActivationCode", "kind: activationcode")).expect(["kind is `activationcode`", "case-sensitive"]),
        Case::reconcile("kind not a string", valid("").replace("kind: ActivationCode", "kind: [ActivationCode]")).expect(["kind: must be a string"]),
        Case::reconcile("not a mapping", "- a\n- b\n").expect(["a.yaml: is not a Kubernetes object"]),
        // documents and files
        Case::reconcile("one bad document of two", two_docs).expect(["a.yaml#2: spec.validPeriod"]),
        Case::reconcile("tabs", valid("").replace("  robotId", "\trobotId")).expect(["a.yaml: is not valid YAML at line 5", "indent with spaces"]),
        Case::reconcile("not UTF-8 (Latin-1)", b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: caf\xe9}\n".to_vec()).expect(["a.yaml: is not UTF-8 (invalid byte at offset 51)", "save it as UTF-8"]),
        Case::reconcile("UTF-16", [0xff, 0xfe, b'a', 0, b':', 0]).expect(["a.yaml: is not UTF-8", "save it as UTF-8"]),
        Case::reconcile("alias bomb", alias_bomb()).expect(["a.yaml: is refused", "alias bomb", "write the values out"]),
        Case::reconcile("nesting bomb", deep).expect(["a.yaml: is refused", "nest deeper"]),
        Case::reconcile("document storm", doc_storm).expect(["a.yaml: is refused", "more than 100000 YAML documents", "split it"]),
        Case::reconcile("file over 4 MiB", huge).expect(["a.yaml: is 4194437 bytes, over the 4194304-byte limit", "split it"]),
        Case::reconcile("non-finite number", "{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"data\": 1e400}").expect(["a.yaml: is not valid YAML at line 1", "not a finite number"]),
        Case::reconcile("empty file", "").expect(["a.yaml: holds no ActivationCode", "*.yaml"]),
        Case::command("directory without manifests", &["reconcile", "-f", "empty"]).file("empty/README.md", "# nothing here").expect(["empty: holds no ActivationCode"]),
        Case::command("directory that links to itself", &["reconcile", "-f", "loop"]).file("loop/notes.txt", "").link("loop/self", ".").link("loop/up", "..").expect(["loop: holds no ActivationCode"]),
        Case::command("no such file", &["reconcile", "-f", "missing.yaml"]).expect(["missing.yaml: cannot read", "No such file"]),
        Case::command("a device without end", &["reconcile", "-f", "/dev/zero"]).expect(["/dev/zero: is over the 4194304-byte limit"]),
        Case::reconcile("Secret value of the wrong type", secret).expect(["a.yaml#2: is not a valid Secret: stringData.secretKey: invalid type: integer `<hidden>`"]).absent([SECRET_VALUE]),
        Case::reconcile("Secret data not base64", format!("{}---\napiVersion: v1\nkind: Secret\nmetadata: {{name: creds}}\ndata: {{secretKey: \"{SECRET_VALUE}!\"}}\n", valid(""))).expect(["a.yaml#2: is not a valid Secret: data.secretKey: is not base64", "stringData"]).absent([SECRET_VALUE]),
        Case::command("seed of four billion codes", &["reconcile", "--simulate", "-f", "a.yaml", "-f", "seed.yaml"]).file("a.yaml", valid("")).file("seed.yaml", GREEDY_SEED).expect(["seed.yaml: spec.robots: the seed asks for 4000000000 codes", "lower generate.count"]),
        // command lines
        Case::command("update to 70000 days", &["codes", "update", "ID", "--valid-period", "70000"]).expect(["'--valid-period <VALID_PERIOD>'", "0 to 65535"]),
        Case::command("update to -1 days", &["codes", "update", "ID", "--valid-period", "-1"]).expect(["invalid value '-1' for '--valid-period", "0 to 65535"]),
        Case::command("list without robot", &["codes", "list"]).expect(["--robot-id <ROBOT_ID>", "required"]),
        Case::command("list with an empty robot", &["codes", "list", "--robot-id", ""]).expect(["'--robot-id <ROBOT_ID>'", "it is empty"]),
        Case::command("show an empty id", &["codes", "show", ""]).expect(["it is empty: give the id"]),
        Case::command("non-ASCII X-App-UserId flag", &["codes", "list", "--robot-id", "r1", "--app-user-id", "用户"]).expect(["'--app-user-id <APP_USER_ID>'", "printable ASCII"]),
        Case::command("non-ASCII X-App-UserId variable", &["once-code"]).env("METASTUDIO_APP_USER_ID", "用户").expect(["--app-user-id", "printable ASCII"]),
        Case::command("endpoint not http", &["codes", "list", "--robot-id", "r1", "--endpoint", "ftp://x"]).expect(["'--endpoint <ENDPOINT>'", "http or https"]),
        Case::command("endpoint not a URL", &["once-code", "--endpoint", "not a url"]).expect(["'--endpoint <ENDPOINT>'", "give one like https://"]),
        Case::command("region with spaces", &["codes", "list", "--robot-id", "r1", "--region", "CN North", "--endpoint", "http://127.0.0.1:9"]).expect(["'--region <REGION>'", "e.g. cn-north-4"]),
        Case::command("project id with a path", &["codes", "show", "c1", "--project-id", "p/../x"]).expect(["'--project-id <PROJECT_ID>'", "letters, digits"]),
        Case::command("read rate too small", &["codes", "list", "--robot-id", "r1", "--read-rate", "1e-300"]).expect(["'--read-rate <READ_RATE>'", "0 (no limit)"]),
        Case::command("negative write rate", &["codes", "list", "--robot-id", "r1", "--write-rate", "-5"]).expect(["'--write-rate <WRITE_RATE>'", "0 (no limit)"]),
        Case::command("rate share above one", &["codes", "list", "--robot-id", "r1", "--rate-share", "1.5"]).expect(["'--rate-share <RATE_SHARE>'", "from 0.01 to 1, e.g. 0.8"]),
        Case::command("rate share zero", &["once-code", "--rate-share", "0"]).expect(["'--rate-share <RATE_SHARE>'", "from 0.01 to 1"]),
        Case::command("zero timeout", &["codes", "list", "--robot-id", "r1", "--timeout", "0s"]).expect(["'--timeout <TIMEOUT>'", "longer than 0s"]),
        Case::command("negative timeout", &["codes", "list", "--robot-id", "r1", "--timeout", "-1s"]).expect(["'--timeout <TIMEOUT>'", "it is negative"]),
        Case::command("zero attempts", &["codes", "list", "--robot-id", "r1", "--max-attempts", "0"]).expect(["'--max-attempts <MAX_ATTEMPTS>'", "1..=20"]),
        Case::command("unknown report format", &["reconcile", "-f", "a.yaml", "-o", "xml"]).file("a.yaml", valid("")).expect(["'xml' for '--output <OUTPUT>'", "table, json"]),
        Case::command("namespace not a DNS label", &["reconcile", "-f", "a.yaml", "-n", "Team A"]).file("a.yaml", valid("")).expect(["'--namespace <NAMESPACE>'", "lower-case letters"]),
        Case::command("no concurrency", &["reconcile", "-f", "a.yaml", "--concurrency", "0"]).file("a.yaml", valid("")).expect(["'--concurrency <CONCURRENCY>'", "1..=256"]),
        Case::command("simulator error rate 2", &["simulator", "--listen", "127.0.0.1:0", "--error-rate", "2"]).expect(["--error-rate is 2", "between 0 and 1"]),
        Case::command("simulator negative rate", &["simulator", "--listen", "127.0.0.1:0", "--drop-rate", "-0.5"]).expect(["--drop-rate is -0.5", "between 0 and 1"]),
        Case::command("simulator rates over one", &["simulator", "--listen", "127.0.0.1:0", "--error-rate", "0.6", "--drop-rate", "0.6"]).expect(["add up to", "lower --error-rate"]),
        Case::command("simulator negative latency", &["simulator", "--listen", "127.0.0.1:0", "--latency", "-1s"]).expect(["'--latency <LATENCY>'", "it is negative"]),
    ]
}

/// Runs the binary in `dir` against `sim`, killing it after `deadline`.
fn run(sim: &Simulator, dir: &Path, case: &Case, deadline: Duration) -> Result<Output, String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_metastudio-operator"));
    command
        .args(&case.args)
        .current_dir(dir)
        .env("METASTUDIO_ENDPOINT", sim.endpoint())
        .env("METASTUDIO_PROJECT_ID", sim.project_id())
        .env("CLOUD_SDK_AK", DEFAULT_ACCESS_KEY)
        .env("CLOUD_SDK_SK", DEFAULT_SECRET_KEY)
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LOG")
        .env_remove("METASTUDIO_APP_USER_ID")
        .env_remove("METASTUDIO_REGION")
        .envs(case.env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| e.to_string())?;
    // Drain both pipes while waiting, so a chatty child cannot block.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let started = Instant::now();
    let mut status = child.try_wait().map_err(|e| e.to_string())?;
    while status.is_none() && started.elapsed() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        status = child.try_wait().map_err(|e| e.to_string())?;
    }
    let timed_out = status.is_none();
    if timed_out {
        let _ = child.kill();
    }
    let output = Output {
        status: child.wait().map_err(|e| e.to_string())?,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    if timed_out {
        return Err(format!(
            "still running after {deadline:?}\n{}",
            text(&output)
        ));
    }
    Ok(output)
}

/// Everything wrong with one case's run; empty when it behaved.
fn check(sim: &Simulator, case: &Case) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in &case.files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    for (link, target) in &case.links {
        #[cfg(unix)]
        std::os::unix::fs::symlink(target, dir.path().join(link)).unwrap();
        #[cfg(not(unix))]
        let _ = (link, target);
    }
    let output = match run(sim, dir.path(), case, Duration::from_secs(60)) {
        Ok(output) => output,
        Err(why) => return vec![why],
    };
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut problems = Vec::new();
    if output.status.code() != Some(BAD_INPUT) {
        problems.push(format!("exit {:?}, not {BAD_INPUT}", output.status.code()));
    }
    if !output.stdout.is_empty() {
        problems.push("printed to stdout".into());
    }
    if stderr.contains("panicked") || stderr.contains("stack backtrace") {
        problems.push("panicked".into());
    }
    if stderr.len() > 4096 {
        problems.push(format!("stderr is {} bytes long", stderr.len()));
    }
    for fragment in &case.expect {
        if !stderr.contains(fragment) {
            problems.push(format!("stderr lacks `{fragment}`"));
        }
    }
    for fragment in &case.absent {
        if stderr.contains(fragment) {
            problems.push(format!("stderr shows `{fragment}`"));
        }
    }
    let calls = sim.counters().total_calls();
    if calls > 0 {
        problems.push(format!("{calls} remote call(s) were made"));
    }
    if problems.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "{}: {}\n{}",
            case.name,
            problems.join("; "),
            text(&output)
        )]
    }
}

#[test]
fn bad_manifests_and_flags_exit_2_with_the_field_and_the_fix_and_call_nothing() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sim = rt.block_on(simulator(robot_seed(2, 3), FaultConfig::default()));
    let cases = cases();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let failures: Vec<String> = cases.iter().flat_map(|case| check(&sim, case)).collect();
    assert!(
        failures.is_empty(),
        "{} of {} case(s) misbehaved:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

#[test]
fn a_valid_manifest_passes_the_same_harness() {
    // The harness itself must be able to see a remote call: a good
    // manifest reaches the simulator and exits 0.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let sim = rt.block_on(simulator(robot_seed(2, 3), FaultConfig::default()));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        ac(&format!("robotId: {}\nvalidPeriod: 3", common::ROBOT)),
    )
    .unwrap();
    let case = Case::reconcile("valid", "");
    let output = run(&sim, dir.path(), &case, Duration::from_secs(60)).unwrap();
    assert!(output.status.success(), "{}", text(&output));
    assert!(sim.counters().total_calls() > 0);
}
