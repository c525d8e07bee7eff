//! The simulator's wire contract, request by request: parameter validation
//! as the API pages state it, Huawei-style error bodies, `X-Request-Id` on
//! every answer, and the control endpoints tests and demos drive.

mod common;

use common::*;
use metastudio_operator::simulator::{FaultConfig, Simulator};
use serde_json::{Value, json};

const TOKEN: &str = "simulator-test-token";

async fn token_simulator() -> Simulator {
    simulator_accepting(robot_seed(3, 7), FaultConfig::default(), &[TOKEN]).await
}

struct Answer {
    status: u16,
    request_id: Option<String>,
    body: Value,
}

/// Sends a request authenticated with the accepted token.
async fn call(sim: &Simulator, method: &str, path_and_query: &str, body: Option<&str>) -> Answer {
    let url = format!(
        "{}/v1/{}/digital-human-chat/{path_and_query}",
        sim.endpoint(),
        sim.project_id()
    );
    let mut request = http()
        .request(method.parse().unwrap(), url)
        .header("X-Auth-Token", TOKEN)
        .header("Content-Type", "application/json");
    if let Some(body) = body {
        request = request.body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("X-Request-Id")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = response.text().await.unwrap();
    Answer {
        status,
        request_id,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

fn http() -> reqwest::Client {
    metastudio_operator::tls::install_crypto_provider();
    reqwest::Client::new()
}

async fn some_code_id(sim: &Simulator) -> String {
    sim.with_store(|s| s.all_codes())[0].active_code_id.clone()
}

/// Method, path and query, body, expected status, expected error body.
type Case = (
    &'static str,
    String,
    Option<&'static str>,
    u16,
    Option<Value>,
);

#[tokio::test]
async fn parameters_are_validated_as_the_api_pages_state() {
    let sim = token_simulator().await;
    let id = some_code_id(&sim).await;
    let invalid = json!({"error_code": "MSS.00000003", "error_msg": "Invalid parameter"});
    let cases: Vec<Case> = vec![
        // ListActiveCode: robot_id required; offset 0..2147483647; limit 1..100.
        (
            "GET",
            "active-code?offset=0&limit=10".into(),
            None,
            400,
            Some(invalid.clone()),
        ),
        (
            "GET",
            format!("active-code?robot_id={ROBOT}&limit=0"),
            None,
            400,
            Some(invalid.clone()),
        ),
        (
            "GET",
            format!("active-code?robot_id={ROBOT}&limit=101"),
            None,
            400,
            Some(invalid.clone()),
        ),
        (
            "GET",
            format!("active-code?robot_id={ROBOT}&offset=-1"),
            None,
            400,
            Some(invalid.clone()),
        ),
        (
            "GET",
            format!("active-code?robot_id={ROBOT}&offset=2147483648"),
            None,
            400,
            Some(invalid.clone()),
        ),
        (
            "GET",
            format!("active-code?robot_id={ROBOT}&limit=abc"),
            None,
            400,
            Some(invalid.clone()),
        ),
        (
            "GET",
            format!("active-code?robot_id={ROBOT}&offset=2147483647&limit=100"),
            None,
            200,
            None,
        ),
        (
            "GET",
            format!("active-code?robot_id={ROBOT}&limit=1"),
            None,
            200,
            None,
        ),
        // UpdateActiveCode: valid_period 0..65535.
        (
            "PUT",
            format!("active-code/{id}"),
            Some(r#"{"valid_period": 65536}"#),
            400,
            Some(invalid.clone()),
        ),
        (
            "PUT",
            format!("active-code/{id}"),
            Some(r#"{"valid_period": -1}"#),
            400,
            Some(invalid.clone()),
        ),
        (
            "PUT",
            format!("active-code/{id}"),
            Some(r#"{"valid_period": "7"}"#),
            400,
            Some(invalid.clone()),
        ),
        (
            "PUT",
            format!("active-code/{id}"),
            Some(r#"{"valid_period": 65535}"#),
            200,
            None,
        ),
        // Malformed and missing bodies.
        (
            "PUT",
            format!("active-code/{id}"),
            Some("{not json"),
            400,
            None,
        ),
        ("PUT", format!("active-code/{id}"), None, 400, None),
        ("PUT", format!("active-code/{id}"), Some("[1]"), 400, None),
        // ResetActiveCode: the body is optional; clean_auth_credential a boolean.
        (
            "PUT",
            format!("active-code/{id}/reset"),
            Some(r#"{"clean_auth_credential": "yes"}"#),
            400,
            Some(invalid.clone()),
        ),
        ("PUT", format!("active-code/{id}/reset"), None, 200, None),
        // Unknown ids get an MSS error code too.
        (
            "GET",
            "active-code/0000".into(),
            None,
            400,
            Some(
                json!({"error_code": "MSS.47010041", "error_msg": "The activation code does not exist"}),
            ),
        ),
        ("PUT", "active-code/0000/reset".into(), None, 400, None),
        // No such API.
        ("GET", "no-such-api".into(), None, 404, None),
    ];
    for (method, path, body, status, expected_body) in cases {
        let answer = call(&sim, method, &path, body).await;
        let what = format!("{method} {path} {body:?}");
        assert_eq!(answer.status, status, "{what}: {}", answer.body);
        assert!(
            answer
                .request_id
                .as_deref()
                .is_some_and(|id| id.len() == 32),
            "{what}: every answer carries X-Request-Id"
        );
        if status >= 400 {
            assert!(
                answer.body["error_code"].as_str().is_some()
                    && answer.body["error_msg"].as_str().is_some(),
                "{what}: Huawei-style error body, got {}",
                answer.body
            );
        }
        if let Some(expected) = expected_body {
            assert_eq!(answer.body, expected, "{what}");
        }
    }
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let sim = token_simulator().await;
    let id = some_code_id(&sim).await;
    let huge = format!(
        r#"{{"valid_period": 3, "pad": "{}"}}"#,
        "x".repeat(100 * 1024)
    );
    let answer = call(&sim, "PUT", &format!("active-code/{id}"), Some(&huge)).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["error_code"], "MSS.00000002");
    assert_eq!(sim.counters().total_updates(), 0, "nothing applied");
}

#[tokio::test]
async fn the_shapes_follow_the_api_pages() {
    let sim = token_simulator().await;
    let page = call(
        &sim,
        "GET",
        &format!("active-code?robot_id={ROBOT}&limit=2"),
        None,
    )
    .await;
    assert_eq!(page.status, 200);
    assert_eq!(
        (
            &page.body["count"],
            &page.body["offset"],
            &page.body["limit"]
        ),
        (&json!(3), &json!(0), &json!(2))
    );
    let first = &page.body["data"][0];
    for field in [
        "active_code_id",
        "active_code",
        "robot_id",
        "valid_period",
        "expire_time",
        "create_time",
        "update_time",
    ] {
        assert!(!first[field].is_null(), "{field} in {first}");
    }
    let id = first["active_code_id"].as_str().unwrap();

    // Update restarts the window now: expire_time = update_time + days.
    let updated = call(
        &sim,
        "PUT",
        &format!("active-code/{id}"),
        Some(r#"{"valid_period": 2}"#),
    )
    .await;
    let update_time: jiff::Timestamp = updated.body["update_time"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let expire_time: jiff::Timestamp = updated.body["expire_time"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(expire_time.duration_since(update_time).as_hours(), 48);
    // Permanent: no expire_time at all.
    let permanent = call(
        &sim,
        "PUT",
        &format!("active-code/{id}"),
        Some(r#"{"valid_period": 0}"#),
    )
    .await;
    assert!(
        permanent.body.get("expire_time").is_none_or(Value::is_null),
        "{}",
        permanent.body
    );

    // Reset keeps the id and mints a new value.
    let reset = call(&sim, "PUT", &format!("active-code/{id}/reset"), Some("{}")).await;
    assert_eq!(reset.body["active_code_id"], id);
    assert_ne!(reset.body["active_code"], first["active_code"]);

    // A once-code is single use.
    let once = call(&sim, "POST", "once-code", None).await;
    let value = once.body["once_code"].as_str().unwrap().to_owned();
    let control = |path: &str| format!("{}/_simulator/{path}", sim.endpoint());
    let http = http();
    for expected in ["accepted", "already_used"] {
        let used: Value = http
            .post(control("once-code/use"))
            .json(&json!({"once_code": value}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(used["result"], expected);
    }
}

#[tokio::test]
async fn moving_the_clock_ages_codes_but_signatures_still_pass() {
    let sim = simulator(robot_seed(1, 1), FaultConfig::default()).await;
    let http = http();
    let moved: Value = http
        .post(format!("{}/_simulator/clock", sim.endpoint()))
        .json(&json!({"advance": "25h"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(moved["now"].is_string(), "{moved}");
    // Signed with the real clock, as every client does: still accepted.
    let code = client(&sim, fast_options())
        .list_all(ROBOT, None)
        .await
        .unwrap()
        .remove(0);
    // The code's one-day window has passed on the simulator's clock.
    let now = sim.with_store(|s| s.now());
    assert!(code.expire_time.unwrap() < now, "{code:?} at {now}");
}
