//! `once-code --broker`, as a workload runs it: the binary against a tiny
//! broker on port 0 that records each request and gives a canned answer.
//! The exact request (method, path, bearer token, no body), what is printed
//! for a grant and for each refusal, the token file's problems, refused
//! names and URLs, redirects, TLS with --broker-ca-file, and that neither
//! the token nor the code ever reaches stderr.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXNlcnZpY2UtYWNjb3VudA.c2lnbmF0dXJl";
const CODE: &str = "C0DE-7f3a9d";
const GRANT: &str =
    r#"{"onceCode":"C0DE-7f3a9d","expiresAt":"2026-12-01T10:05:00Z","requestId":"req-42"}"#;

/// One request as the broker saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    authorization: Option<String>,
    body: Vec<u8>,
}

/// The broker's canned answer; `None` status: close the connection unanswered.
#[derive(Clone)]
struct Answer {
    status: Option<u16>,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status: Some(status),
        headers: vec![("content-type", "application/json".into())],
        body: body.to_owned(),
    }
}

/// A broker on 127.0.0.1, port 0, plain or TLS, in its own runtime.
struct Broker {
    _rt: tokio::runtime::Runtime,
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Broker {
    fn start(answer: Answer) -> Self {
        Self::start_with(answer, None)
    }

    fn start_with(answer: Answer, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        rt.spawn(accept(listener, answer, tls, seen.clone()));
        Self {
            _rt: rt,
            port,
            seen,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn accept(
    listener: TcpListener,
    answer: Answer,
    tls: Option<tokio_rustls::TlsAcceptor>,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let (answer, tls, seen) = (answer.clone(), tls.clone(), seen.clone());
        tokio::spawn(async move {
            if answer.status.is_none() {
                return; // hang up
            }
            let service = service_fn(move |req| respond(req, answer.clone(), seen.clone()));
            let http = hyper::server::conn::http1::Builder::new();
            match tls {
                Some(tls) => {
                    if let Ok(stream) = tls.accept(stream).await {
                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                    }
                }
                None => {
                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                }
            }
        });
    }
}

async fn respond(
    req: Request<Incoming>,
    answer: Answer,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes().to_vec();
    seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        target: parts.uri.to_string(),
        authorization: parts
            .headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned()),
        body,
    });
    let mut response = Response::builder().status(answer.status.expect("answered"));
    for (name, value) in &answer.headers {
        response = response.header(*name, value);
    }
    Ok(response.body(Full::new(Bytes::from(answer.body))).unwrap())
}

/// A directory with a token file.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(token: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), token).unwrap();
        Self { dir }
    }

    fn token(&self) -> String {
        self.dir.path().join("token").display().to_string()
    }
}

/// Runs the binary; the direct-API environment is cleared so that it
/// cannot conflict with --broker.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_metastudio-operator"));
    command.arg("once-code").args(args);
    for var in [
        "METASTUDIO_ENDPOINT",
        "METASTUDIO_REGION",
        "METASTUDIO_PROJECT_ID",
        "METASTUDIO_AUTH_TOKEN",
        "METASTUDIO_APP_USER_ID",
        "METASTUDIO_INSECURE_HTTP",
        "RUST_LOG",
    ] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied()).output().unwrap()
}

/// `once-code --broker URL --connection retail --token-file F` and `extra`.
fn once_code(broker: &str, files: &Files, extra: &[&str]) -> Output {
    let token = files.token();
    let mut args = vec![
        "--broker",
        broker,
        "--connection",
        "retail",
        "--token-file",
        &token,
    ];
    args.extend(extra);
    run(&args, &[])
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Neither the token nor the code is on stderr; the token is not on stdout.
fn assert_no_secrets(out: &Output) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        !stderr.contains(TOKEN) && !stdout.contains(TOKEN),
        "token leaked: {}",
        describe(out)
    );
    assert!(!stderr.contains(CODE), "code on stderr: {}", describe(out));
    // Not even its signature part (a partial echo).
    assert!(
        !stderr.contains("c2lnbmF0dXJl"),
        "token part leaked: {}",
        describe(out)
    );
}

#[test]
fn a_grant_prints_the_bare_code_after_the_exact_request() {
    let broker = Broker::start(answer(200, GRANT));
    let files = Files::new(&format!("{TOKEN}\n"));
    let out = once_code(&broker.url(), &files, &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stdout), format!("{CODE}\n"));
    assert_no_secrets(&out);

    let seen = broker.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].target, "/v1/oncecodes/retail");
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert!(
        seen[0].body.is_empty(),
        "a body was sent: {:?}",
        seen[0].body
    );
}

#[test]
fn json_prints_the_brokers_whole_answer_below_a_base_path() {
    let broker = Broker::start(answer(200, GRANT));
    let files = Files::new(TOKEN);
    let out = once_code(&format!("{}/brokers/a/", broker.url()), &files, &["--json"]);
    assert!(out.status.success(), "{}", describe(&out));
    let printed = text(&out.stdout);
    assert_eq!(printed.lines().count(), 1, "{printed}");
    let printed: serde_json::Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(
        printed,
        serde_json::from_str::<serde_json::Value>(GRANT).unwrap()
    );
    assert_eq!(broker.seen()[0].target, "/brokers/a/v1/oncecodes/retail");
}

/// What deploy/broker-client/ runs: its output is the pod's log, so the
/// code never appears, only that one was received.
#[test]
fn redact_prints_a_receipt_and_never_the_code() {
    let broker = Broker::start(answer(200, GRANT));
    let files = Files::new(TOKEN);
    let out = once_code(&broker.url(), &files, &["--redact"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        text(&out.stdout),
        "once-code <redacted> from connection retail, valid until 2026-12-01T10:05:00Z, request id req-42\n"
    );
    assert!(!text(&out.stdout).contains(CODE), "{}", describe(&out));
    assert_no_secrets(&out);
}

#[test]
fn every_refusal_names_status_reason_and_message() {
    let cases: [(u16, &str, &str, Option<&str>, &str); 6] = [
        (
            401,
            "Unauthenticated",
            "the token's audience is not metastudio-operator",
            None,
            "audience",
        ),
        (
            403,
            "Forbidden",
            "retail/kiosk-backend may not create oncecodes retail",
            None,
            "deploy/broker-client/role.yaml",
        ),
        (
            404,
            "ConnectionNotFound",
            "no connection retail for namespace retail",
            None,
            "ClusterMetaStudioConnection",
        ),
        (
            429,
            "CallerRateLimited",
            "over 1 code per second",
            Some("7"),
            "(retry after 7 s)",
        ),
        (
            502,
            "MetaStudioFailed",
            "HTTP 403 APIGW.0301 (X-Request-Id: r-9)",
            None,
            "APIGW.0301",
        ),
        (503, "NotReady", "caches have not synced", None, "try again"),
    ];
    for (status, reason, message, retry_after, hint) in cases {
        let mut canned = answer(
            status,
            &serde_json::json!({"reason": reason, "message": message}).to_string(),
        );
        if let Some(seconds) = retry_after {
            canned.headers.push(("retry-after", seconds.into()));
        }
        let broker = Broker::start(canned);
        let files = Files::new(TOKEN);
        let out = once_code(&broker.url(), &files, &[]);
        assert_eq!(out.status.code(), Some(1), "{status}: {}", describe(&out));
        assert!(out.stdout.is_empty(), "{status}: {}", describe(&out));
        let stderr = text(&out.stderr);
        let want = format!("HTTP {status} {reason}: {message}");
        assert!(
            stderr.contains(&want),
            "{status}: wanted {want:?} in {stderr}"
        );
        assert!(
            stderr.contains(hint),
            "{status}: wanted {hint:?} in {stderr}"
        );
        assert!(stderr.contains("connection retail"), "{stderr}");
        assert_no_secrets(&out);
    }
}

#[test]
fn the_token_and_the_code_never_reach_stderr_even_at_trace_level() {
    let echo =
        serde_json::json!({"reason": "Unauthenticated", "message": format!("bad token {TOKEN}")});
    let bad_grant = format!(r#"{{"onceCode":"{CODE}","expiresAt":"{CODE}","requestId":"r"}}"#);
    for canned in [
        answer(401, &echo.to_string()),
        answer(200, &bad_grant),
        answer(200, GRANT),
    ] {
        let broker = Broker::start(canned);
        let files = Files::new(TOKEN);
        let token = files.token();
        let args = [
            "--broker",
            &broker.url(),
            "--connection",
            "retail",
            "--token-file",
            &token,
        ];
        let out = run(&args, &[("RUST_LOG", "trace"), ("LOG_LEVEL", "trace")]);
        assert_no_secrets(&out);
        if out.status.success() {
            assert_eq!(text(&out.stdout), format!("{CODE}\n"));
        } else {
            assert!(text(&out.stderr).contains("HTTP "), "{}", describe(&out));
        }
    }
}

#[test]
fn a_bad_token_file_is_named_with_the_fix_and_nothing_is_sent() {
    let broker = Broker::start(answer(200, GRANT));
    let empty = Files::new(" \n");
    let missing = empty.dir.path().join("absent").display().to_string();
    for (path, problem) in [(empty.token(), "is empty"), (missing, "No such file")] {
        let args = [
            "--broker",
            &broker.url(),
            "--connection",
            "retail",
            "--token-file",
            &path,
        ];
        let out = run(&args, &[]);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        let stderr = text(&out.stderr);
        for want in [
            "--token-file",
            path.as_str(),
            problem,
            "projected serviceAccountToken",
        ] {
            assert!(stderr.contains(want), "wanted {want:?} in {stderr}");
        }
    }
    assert!(broker.seen().is_empty(), "{:?}", broker.seen());
}

#[test]
fn names_urls_and_flags_that_cannot_work_are_refused_before_anything_is_sent() {
    let broker = Broker::start(answer(200, GRANT));
    let files = Files::new(TOKEN);
    let token = files.token();
    let url = broker.url();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--broker",
                &url,
                "--connection",
                "..",
                "--token-file",
                &token,
            ],
            "not a valid name",
        ),
        (
            vec![
                "--broker",
                &url,
                "--connection",
                "a/../b",
                "--token-file",
                &token,
            ],
            "not a valid name",
        ),
        (
            vec![
                "--broker",
                &url,
                "--connection",
                "%2e%2e",
                "--token-file",
                &token,
            ],
            "not a valid name",
        ),
        (
            vec![
                "--broker",
                "http://broker.example",
                "--connection",
                "retail",
            ],
            "unencrypted",
        ),
        (
            vec!["--broker", &url, "--token-file", &token],
            "--connection <NAME>",
        ),
        (
            vec!["--connection", "retail", "--token-file", &token],
            "--broker <URL>",
        ),
        (
            vec![
                "--broker",
                &url,
                "--connection",
                "retail",
                "--auth-token",
                "t",
            ],
            "cannot be used with",
        ),
    ];
    for (args, want) in cases {
        let out = run(&args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", describe(&out));
        assert!(
            text(&out.stderr).contains(want),
            "{args:?}: wanted {want:?}: {}",
            describe(&out)
        );
    }
    assert!(broker.seen().is_empty(), "{:?}", broker.seen());
}

#[test]
fn a_redirect_is_not_followed() {
    let elsewhere = Broker::start(answer(200, GRANT));
    let mut canned = answer(307, "");
    let location = format!("{}/v1/oncecodes/retail", elsewhere.url());
    canned.headers.push(("location", location));
    let broker = Broker::start(canned);
    let files = Files::new(TOKEN);
    let out = once_code(&broker.url(), &files, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(text(&out.stderr).contains("HTTP 307"), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("follows no redirect"),
        "{}",
        describe(&out)
    );
    assert_eq!(broker.seen().len(), 1);
    assert!(
        elsewhere.seen().is_empty(),
        "the token followed the redirect"
    );
    assert_no_secrets(&out);
}

#[test]
fn a_broker_that_hangs_up_is_named() {
    let broker = Broker::start(Answer {
        status: None,
        headers: vec![],
        body: String::new(),
    });
    let files = Files::new(TOKEN);
    let out = once_code(&broker.url(), &files, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot reach the broker at http://127.0.0.1:"),
        "{stderr}"
    );
    assert_no_secrets(&out);
}

/// A throwaway CA and a certificate it signs for localhost, as PEM files
/// in `dir`: ca.crt, tls.crt, tls.key.
fn write_tls_files(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "metastudio-operator test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
    std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
}

fn tls_acceptor(dir: &Path) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(dir.join("tls.crt"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("tls.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

#[test]
fn tls_is_verified_with_the_ca_file() {
    let files = Files::new(TOKEN);
    let tls = files.dir.path();
    write_tls_files(tls);
    let broker = Broker::start_with(answer(200, GRANT), Some(tls_acceptor(tls)));
    let url = format!("https://localhost:{}", broker.port);
    let ca = tls.join("ca.crt").display().to_string();
    let out = once_code(&url, &files, &["--broker-ca-file", &ca]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stdout), format!("{CODE}\n"));

    // The server's own certificate is no CA: nothing is sent.
    let leaf = tls.join("tls.crt").display().to_string();
    let out = once_code(&url, &files, &["--broker-ca-file", &leaf]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("cannot reach the broker"),
        "{}",
        describe(&out)
    );
    assert_no_secrets(&out);

    let garbage = tls.join("garbage.crt");
    std::fs::write(&garbage, "not a certificate").unwrap();
    let garbage = garbage.display().to_string();
    let out = once_code(&url, &files, &["--broker-ca-file", &garbage]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("holds no PEM certificate"),
        "{}",
        describe(&out)
    );
    assert_eq!(broker.seen().len(), 1, "only the verified call arrived");
}
