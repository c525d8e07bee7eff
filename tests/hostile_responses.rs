//! Hostile remote answers: malformed JSON, wrong types, missing fields,
//! oversized error texts, huge, endless and slow bodies. Each gives a clear
//! `ApiError` (operation, status, request id, the field at fault) that
//! never quotes a code value, reading at most `max_response_bytes` and
//! never waiting past the timeout.

mod common;

use common::raw_http::{
    Stream, codes_page, counting_server, head, json_response, raw_server, redirect_response,
    streaming_server,
};
use common::{connection, fast_options, good_credentials};
use metastudio_operator::metastudio::listing::MAX_LISTED_CODES;
use metastudio_operator::metastudio::{
    ApiError, ApiErrorKind, ClientOptions, Credentials, MetaStudioClient, Operation, Transport,
};
use metastudio_operator::secret::Secret;
use std::time::Duration;

/// A code value that must never appear in an error.
const SECRET: &str = "SECRET-CODE-H7GW3T2E7";
/// A numeric code value, which serde would quote in its messages.
const NUMERIC_SECRET: &str = "987654321";

/// A valid `ActiveCodeInfo` whose `field` is replaced by `value` (raw JSON),
/// or removed when `value` is `None`.
fn code_with(field: &str, value: Option<&str>) -> String {
    let fields = [
        ("active_code_id", "\"c1\""),
        ("active_code", "\"SECRET-CODE-H7GW3T2E7\""),
        ("robot_id", "\"r\""),
        ("valid_period", "3"),
        ("create_time", "\"2023-09-01T06:34:21Z\""),
        ("update_time", "\"2023-09-01T06:34:21Z\""),
    ];
    let parts: Vec<String> = fields
        .iter()
        .filter_map(|(name, default)| {
            let v = if *name == field { value? } else { default };
            Some(format!("\"{name}\":{v}"))
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

fn page_of(code: &str) -> String {
    format!(r#"{{"offset":0,"limit":100,"count":1,"data":[{code}]}}"#)
}

#[derive(Debug, Clone, Copy)]
enum Call {
    List,
    Show,
    Update,
    Reset,
    OnceCode,
}

impl Call {
    fn operation(self) -> Operation {
        match self {
            Call::List => Operation::ListActiveCode,
            Call::Show => Operation::ShowActiveCode,
            Call::Update => Operation::UpdateActiveCode,
            Call::Reset => Operation::ResetActiveCode,
            Call::OnceCode => Operation::CreateOnceCode,
        }
    }

    async fn run(self, client: &MetaStudioClient) -> Result<(), ApiError> {
        match self {
            Call::List => client.list_page("r", 0, 100).await.map(drop),
            Call::Show => client.show("c1").await.map(drop),
            Call::Update => client.update("c1", 3).await.map(drop),
            Call::Reset => client.reset("c1", true).await.map(drop),
            Call::OnceCode => client.once_code().await.map(drop),
        }
    }
}

/// One hostile answer and what its error must say.
struct Case {
    name: &'static str,
    call: Call,
    status: &'static str,
    body: Vec<u8>,
    expect: &'static [&'static str],
}

fn case(
    name: &'static str,
    call: Call,
    status: &'static str,
    body: impl Into<Vec<u8>>,
    expect: &'static [&'static str],
) -> Case {
    Case {
        name,
        call,
        status,
        body: body.into(),
        expect,
    }
}

/// One line per case: adding a case is adding a line.
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    use Call::*;
    let ok = "200 OK";
    let deep = format!(
        r#"{{"offset":0,"limit":1,"count":1,"data":[{}{}]}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let ansi = r#"{"error_code":"MSS.00000003","error_msg":"bad\u001b[2J\r\nforged: log line"}"#;
    let long_message = format!(
        r#"{{"error_code":"MSS.00000003","error_msg":"{}"}}"#,
        "m".repeat(100_000)
    );
    vec![
        case("truncated JSON", List, ok, r#"{"offset":0,"limit":100,"#, &["unreadable body: EOF while parsing"]),
        case("HTML on 200", List, ok, "<html>oops</html>", &["expected value at line 1 column 1"]),
        case("empty body on 200", Show, ok, "", &["EOF while parsing"]),
        case("count is a string", List, ok, r#"{"offset":0,"limit":100,"count":"ten","data":[]}"#, &["count: invalid type: string"]),
        case("count missing", List, ok, r#"{"offset":0,"limit":100,"data":[]}"#, &["missing field `count`"]),
        case("negative count", List, ok, r#"{"offset":0,"limit":100,"count":-1,"data":[]}"#, &["count: invalid value"]),
        case("data is a map", List, ok, r#"{"offset":0,"limit":100,"count":1,"data":{}}"#, &["data: invalid type: map"]),
        case("code without id", List, ok, page_of(&code_with("active_code_id", None)), &["data[0]", "missing field `active_code_id`"]),
        case("validity out of range", List, ok, page_of(&code_with("valid_period", Some("70000"))), &["data[0].valid_period: invalid value"]),
        case("bad timestamp", List, ok, page_of(&code_with("create_time", Some("\"yesterday\""))), &["data[0].create_time"]),
        case("trailing garbage", Show, ok, code_with("robot_id", Some("\"r\"")) + "}{", &["trailing characters"]),
        case("nesting bomb", List, ok, deep, &["data[0][0]: invalid type: sequence"]),
        case("numeric code value", Show, ok, code_with("active_code", Some(NUMERIC_SECRET)), &["active_code: invalid type: integer `<hidden>`"]),
        case("code value in a wrong field", Show, ok, code_with("valid_period", Some("\"SECRET-CODE-H7GW3T2E7\"")), &["valid_period: invalid type: string \"<hidden>\""]),
        case("null body", Show, ok, "null", &["invalid type: null"]),
        case("array body", Update, ok, "[]", &["expected struct ActiveCode"]),
        case("validity as a string", Update, ok, code_with("valid_period", Some("\"3\"")), &["valid_period: invalid type: string"]),
        case("empty object", Reset, ok, "{}", &["missing field `active_code_id`"]),
        case("numeric once-code", OnceCode, ok, format!(r#"{{"once_code":{NUMERIC_SECRET}}}"#), &["once_code: invalid type: integer `<hidden>`"]),
        case("once-code missing", OnceCode, ok, "{}", &["missing field `once_code`"]),
        case("not UTF-8", Show, ok, b"{\"active_code_id\":\"\xff\xfe\"}".to_vec(), &["invalid unicode code point"]),
        case("byte order mark", Show, ok, format!("\u{feff}{}", code_with("robot_id", Some("\"r\""))), &["expected value at line 1 column 1"]),
        case("huge error message", Show, "400 Bad Request", long_message, &["HTTP 400 MSS.00000003: mmmm", "..."]),
        case("terminal escapes in an error", Reset, "400 Bad Request", ansi, &["HTTP 400 MSS.00000003: bad [2J  forged: log line"]),
        case("error body of the wrong shape", Reset, "403 Forbidden", r#"{"error_code":5}"#, &["HTTP 403: Forbidden"]),
        case("gateway HTML", Reset, "401 Unauthorized", "<html>401</html>", &["HTTP 401: Unauthorized"]),
        case("unknown status", Reset, "600 Weird", "{}", &["HTTP 600"]),
        case("id over the field bound", List, ok, page_of(&code_with("active_code_id", Some(&format!("\"{}\"", "i".repeat(129))))), &["data[0].active_code_id: 129 bytes, longer than the 128"]),
        case("code value over the field bound", Show, ok, code_with("active_code", Some(&format!("\"{SECRET}{}\"", "9".repeat(128)))), &["active_code: 149 bytes, longer than the 128"]),
    ]
}

fn client_for(endpoint: &str, options: ClientOptions) -> MetaStudioClient {
    Transport::new(options)
        .unwrap()
        .client(connection(endpoint, good_credentials()))
}

fn no_retries() -> ClientOptions {
    let mut options = fast_options();
    options.retry.max_attempts = 1;
    options
}

/// What every error must be: named, located, short, printable, secret-free.
fn assert_clear(name: &str, err: &ApiError, operation: Operation, request_id: &str) {
    let text = err.to_string();
    let debug = format!("{err:?}");
    assert_eq!(err.operation, operation, "{name}: {text}");
    assert!(text.starts_with(operation.name()), "{name}: {text}");
    assert!(
        text.contains(&format!("X-Request-Id: {request_id}")),
        "{name}: {text}"
    );
    for secret in [SECRET, NUMERIC_SECRET] {
        assert!(
            !text.contains(secret) && !debug.contains(secret),
            "{name} leaks a code: {debug}"
        );
    }
    assert!(text.len() < 2048, "{name}: {} bytes", text.len());
    assert!(!text.chars().any(char::is_control), "{name}: {text:?}");
}

#[tokio::test]
async fn malformed_answers_give_clear_errors_without_a_code_value() {
    let mut failures = Vec::new();
    for (i, case) in cases().into_iter().enumerate() {
        let request_id = format!("rid-{i}");
        let endpoint = raw_server(json_response(case.status, &request_id, &case.body)).await;
        let client = client_for(&endpoint, no_retries());
        let err = match case.call.run(&client).await {
            Ok(()) => {
                failures.push(format!("{}: succeeded", case.name));
                continue;
            }
            Err(err) => err,
        };
        assert_clear(case.name, &err, case.call.operation(), &request_id);
        let status = case.status.split(' ').next().unwrap();
        assert_eq!(err.status().map(|s| s.to_string()).as_deref(), Some(status));
        let text = err.to_string();
        for fragment in case.expect {
            if !text.contains(fragment) {
                failures.push(format!("{}: `{fragment}` missing from: {text}", case.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_huge_request_id_is_cut() {
    let id = "r".repeat(8000);
    let endpoint = raw_server(json_response("200 OK", &id, b"{}")).await;
    let err = client_for(&endpoint, no_retries())
        .show("c1")
        .await
        .unwrap_err();
    let shown = err.request_id().unwrap();
    assert!(shown.len() < 200 && shown.ends_with("..."), "{shown}");
}

/// Options that refuse bodies over 1 MiB and give up after 500 ms.
fn small_limit() -> ClientOptions {
    ClientOptions {
        max_response_bytes: 1024 * 1024,
        timeout: Duration::from_millis(500),
        ..no_retries()
    }
}

const HUNDRED_MIB: u64 = 100 * 1024 * 1024;
/// A client that buffered the whole body would have read all 100 MiB; one
/// that stops at the limit leaves the rest unsent (socket buffers on
/// loopback hold a few MiB at most).
const READ_BOUND: u64 = HUNDRED_MIB / 2;

/// Runs `call` against a server streaming `stream` after `head`; returns
/// the error and how many body bytes the server got out.
async fn against_stream(head: String, stream: Stream, call: Call) -> (ApiError, u64) {
    let server = streaming_server(head, stream).await;
    let client = client_for(&server.endpoint, small_limit());
    let err = tokio::time::timeout(Duration::from_secs(30), call.run(&client))
        .await
        .expect("the client gives up on its own")
        .unwrap_err();
    drop(client);
    assert!(
        server.wait_finished(Duration::from_secs(30)).await,
        "the server stops once the client hangs up"
    );
    (err, server.sent())
}

fn assert_too_large(err: &ApiError, sent: u64, what: &str) {
    assert!(
        matches!(err.kind, ApiErrorKind::Decode { .. }),
        "{what}: {err}"
    );
    assert!(
        err.to_string().contains("exceeds 1048576 bytes"),
        "{what}: {err}"
    );
    assert!(
        sent < READ_BOUND,
        "{what}: the client read {sent} bytes of a 100 MiB body"
    );
}

#[tokio::test]
async fn a_100_mib_body_is_refused_by_its_content_length_before_reading() {
    let head = head(
        "200 OK",
        "rid-cl",
        &[&format!("Content-Length: {HUNDRED_MIB}")],
    );
    let (err, sent) = against_stream(head, Stream::Raw { total: HUNDRED_MIB }, Call::List).await;
    assert_too_large(&err, sent, "content-length");
    assert_eq!(err.request_id(), Some("rid-cl"));
}

#[tokio::test]
async fn a_100_mib_chunked_body_is_read_only_to_the_limit() {
    let head = head("200 OK", "rid-ch", &["Transfer-Encoding: chunked"]);
    let (err, sent) =
        against_stream(head, Stream::Chunked { total: HUNDRED_MIB }, Call::Show).await;
    assert_too_large(&err, sent, "chunked");
}

#[tokio::test]
async fn a_100_mib_body_without_length_is_read_only_to_the_limit() {
    let head = head("200 OK", "rid-raw", &["Connection: close"]);
    let (err, sent) = against_stream(head, Stream::Raw { total: HUNDRED_MIB }, Call::Update).await;
    assert_too_large(&err, sent, "close-delimited");
}

#[tokio::test]
async fn an_endless_chunked_body_ends_at_the_limit() {
    let head = head("200 OK", "rid-endless", &["Transfer-Encoding: chunked"]);
    let (err, sent) = against_stream(head, Stream::Chunked { total: u64::MAX }, Call::List).await;
    assert_too_large(&err, sent, "endless");
}

#[tokio::test]
async fn a_huge_content_length_on_an_error_is_refused_too() {
    let head = head(
        "500 Internal Server Error",
        "rid-500",
        &["Content-Length: 1000000000000000"],
    );
    let (err, sent) = against_stream(head, Stream::Raw { total: 10 }, Call::Show).await;
    assert_too_large(&err, sent, "huge content-length");
    assert_eq!(err.status(), Some(500));
}

#[tokio::test]
async fn a_slow_loris_body_times_out_and_a_reset_is_not_repeated() {
    let head = head("200 OK", "rid-slow", &["Transfer-Encoding: chunked"]);
    let drip = Stream::Drip {
        every: Duration::from_millis(50),
    };
    let (err, _) = against_stream(head, drip, Call::Reset).await;
    assert!(matches!(err.kind, ApiErrorKind::Timeout { .. }), "{err}");
    assert!(
        err.outcome_unknown(),
        "a reset cut off mid-answer may have applied"
    );
    assert_eq!(err.attempts, 1);
    assert!(err.to_string().starts_with("ResetActiveCode"), "{err}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        // Hold the connection open, silent, until the test ends.
        std::future::pending::<()>().await;
        drop(socket);
    });
    let client = client_for(&endpoint, small_limit());
    let err = tokio::time::timeout(Duration::from_secs(30), client.list_page("r", 0, 100))
        .await
        .expect("the client gives up on its own")
        .unwrap_err();
    assert!(matches!(err.kind, ApiErrorKind::Timeout { .. }), "{err}");
    held.abort();
}

#[tokio::test]
async fn broken_http_is_a_lost_response_not_a_panic() {
    let header_bomb = {
        let mut text = "HTTP/1.1 200 OK\r\n".to_owned();
        for i in 0..2000 {
            text.push_str(&format!("X-Filler-{i}: {}\r\n", "f".repeat(1000)));
        }
        text + "\r\n"
    };
    let answers: [(&str, Vec<u8>); 4] = [
        ("closes at once", Vec::new()),
        ("not HTTP", b"hello there\r\n\r\n".to_vec()),
        (
            "bad content-length",
            b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n{}".to_vec(),
        ),
        ("2 MB of headers", header_bomb.into_bytes()),
    ];
    for (name, answer) in answers {
        let endpoint = raw_server(answer).await;
        let err = tokio::time::timeout(
            Duration::from_secs(30),
            client_for(&endpoint, small_limit()).reset("c1", true),
        )
        .await
        .expect("the client gives up on its own")
        .unwrap_err();
        assert!(
            matches!(err.kind, ApiErrorKind::ResponseLost { .. }),
            "{name}: {err}"
        );
        assert_eq!(err.attempts, 1, "{name}: a reset is not repeated blindly");
        assert!(
            err.to_string().contains("whether the server applied"),
            "{name}: {err}"
        );
    }
}

/// A server whose `count` promises more than it ever sends: the same page
/// again and again. Listing stops at the first page with nothing new,
/// instead of asking for tens of thousands of pages.
#[tokio::test]
async fn a_listing_that_never_ends_stops_at_the_first_page_with_nothing_new() {
    let robot = common::ROBOT;
    let page = format!(
        r#"{{"offset": 0, "limit": 100, "count": 90000, "data": [{{"active_code_id": "only", "active_code": "V", "robot_id": "{robot}", "valid_period": 1, "create_time": "2026-01-01T00:00:00Z", "update_time": "2026-01-01T00:00:00Z"}}]}}"#
    );
    let endpoint = raw_server(json_response("200 OK", "rid-page", page.as_bytes())).await;
    let codes = client_for(&endpoint, no_retries())
        .list_all(robot, None)
        .await
        .unwrap();
    assert_eq!(codes.len(), 1);
}

/// A list page of `n` codes valued [`SECRET`] that reports `count`.
fn page_of_codes(n: usize, count: u64) -> String {
    codes_page(common::ROBOT, n, count, SECRET)
}

/// reqwest would follow a 30x and carry `X-Auth-Token` and
/// `X-Security-Token` to wherever it points (it strips only Authorization
/// and Cookie across hosts). None is followed: the other listener sees no
/// connection, the error names the status and the Location, the call is
/// not repeated, and the metrics count the answer under its status.
#[tokio::test]
async fn a_redirect_is_not_followed_and_names_its_location() {
    let elsewhere = counting_server(json_response(
        "200 OK",
        "rid-elsewhere",
        page_of_codes(1, 1).as_bytes(),
    ))
    .await;
    let token = Credentials::Token(Secret::new("IAM-TOKEN"));
    let temporary = Credentials::AkSk {
        access_key: Secret::new("ak"),
        secret_key: Secret::new("sk"),
        security_token: Some(Secret::new("SECURITY-TOKEN")),
    };
    let statuses = [
        "301 Moved Permanently",
        "302 Found",
        "303 See Other",
        "307 Temporary Redirect",
        "308 Permanent Redirect",
    ];
    for (credentials, status) in [token, temporary]
        .iter()
        .flat_map(|c| statuses.map(|s| (c, s)))
    {
        let location = format!("{}/v1/p/digital-human-chat/active-code", elsewhere.endpoint);
        let endpoint = raw_server(redirect_response(status, "rid-30x", &location)).await;
        // Retries on: a redirect must not be repeated either.
        let transport = Transport::new(fast_options()).unwrap();
        let client = transport.client(connection(&endpoint, credentials.clone()));
        for call in [Call::List, Call::Reset] {
            let what = format!("{status}, {}, {call:?}", credentials.kind());
            let err = call.run(&client).await.unwrap_err();
            assert_clear(&what, &err, call.operation(), "rid-30x");
            let code = status.split(' ').next().unwrap();
            assert!(
                matches!(err.kind, ApiErrorKind::Redirected { .. }),
                "{what}: {err}"
            );
            let text = err.to_string();
            assert!(
                text.contains(&format!("HTTP {code} redirect to {location} not followed")),
                "{what}: {text}"
            );
            assert_eq!(err.attempts, 1, "{what}: a redirect is not retried");
            assert!(!err.is_transient(), "{what}");
            assert_eq!(
                transport.metrics().call_count(call.operation(), code),
                1,
                "{what}: counted under its status"
            );
        }
    }
    assert_eq!(elsewhere.connections(), 0, "a request followed a redirect");
}

/// The Location is server text: cut, and without control characters.
#[tokio::test]
async fn a_long_location_is_cut() {
    let location = format!("http://127.0.0.1:9/{}", "l".repeat(10_000));
    let endpoint = raw_server(redirect_response("302 Found", "rid-long", &location)).await;
    let err = client_for(&endpoint, no_retries())
        .show("c1")
        .await
        .unwrap_err();
    assert_clear("long location", &err, Operation::ShowActiveCode, "rid-long");
    let ApiErrorKind::Redirected {
        location: Some(shown),
        ..
    } = &err.kind
    else {
        panic!("not a redirect: {err}");
    };
    assert!(shown.len() < 300 && shown.ends_with("..."), "{shown}");
}

/// The API caps a page at the `limit` asked for; a page with more codes
/// breaks the contract and is refused with the figures, whatever its size
/// (a hostile endpoint's 20,000 codes included).
#[tokio::test]
async fn a_page_with_more_codes_than_asked_is_a_protocol_error() {
    for n in [101, 20_000] {
        let server = counting_server(json_response(
            "200 OK",
            "rid-big-page",
            page_of_codes(n, u64::from(u32::MAX)).as_bytes(),
        ))
        .await;
        let client = client_for(&server.endpoint, fast_options());
        let err = client.list_all(common::ROBOT, None).await.unwrap_err();
        assert_clear("big page", &err, Operation::ListActiveCode, "rid-big-page");
        assert!(
            matches!(err.kind, ApiErrorKind::Protocol { .. }),
            "{n}: {err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("the endpoint answered {n} codes for limit 100")),
            "{err}"
        );
        assert_eq!(server.request_lines().len(), 1, "{n}: asked once");
        let page_err = client.list_page(common::ROBOT, 0, 100).await.unwrap_err();
        assert!(
            matches!(page_err.kind, ApiErrorKind::Protocol { .. }),
            "{page_err}"
        );
    }
}

/// A `count` over what one listing reads ends the listing at the page that
/// reports it, before the rest is asked for: the page's own codes are all
/// there is in memory.
#[tokio::test]
async fn a_count_over_the_listing_cap_ends_the_listing_at_the_first_page() {
    for count in [u64::from(MAX_LISTED_CODES) + 1, u64::from(u32::MAX)] {
        let server = counting_server(json_response(
            "200 OK",
            "rid-count",
            page_of_codes(100, count).as_bytes(),
        ))
        .await;
        let err = client_for(&server.endpoint, fast_options())
            .listing(common::ROBOT)
            .await
            .unwrap_err();
        assert_clear("count", &err, Operation::ListActiveCode, "rid-count");
        assert!(
            matches!(err.kind, ApiErrorKind::TooManyCodes { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains(&format!(
                "the endpoint reports {count} codes for the robot, more than the 100000 one listing reads"
            )),
            "{err}"
        );
        assert_eq!(server.request_lines().len(), 1, "{count}: one page asked");
    }
}
