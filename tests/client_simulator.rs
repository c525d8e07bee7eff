//! The MetaStudio client against the simulator: pagination, every error
//! class, recovery from injected faults, and no blind retry of a reset.

mod common;

use common::raw_http::raw_server;
use common::*;
use metastudio_operator::metastudio::metrics::ClassLabels;
use metastudio_operator::metastudio::pacing::{Pacing, Quotas};
use metastudio_operator::metastudio::retry::RetryPolicy;
use metastudio_operator::metastudio::{
    ApiErrorKind, ClientOptions, Credentials, MetaStudioClient, Operation, Transport,
};
use metastudio_operator::simulator::counters::{DROPPED, LOST};
use metastudio_operator::simulator::{FaultConfig, Simulator, SimulatorConfig};
use std::collections::HashSet;
use std::time::Duration;

#[tokio::test]
async fn lists_every_page_of_250_codes() {
    let sim = simulator(robot_seed(250, 3), FaultConfig::default()).await;
    let codes = client(&sim, fast_options())
        .list_all(ROBOT, None)
        .await
        .unwrap();
    assert_eq!(codes.len(), 250);
    let ids: HashSet<_> = codes.iter().map(|c| c.active_code_id.clone()).collect();
    assert_eq!(ids.len(), 250, "no code twice");
    // 100 + 100 + 50: three pages, the lower bound.
    assert_eq!(
        sim.counters().calls_with(Operation::ListActiveCode, "200"),
        3
    );
}

#[tokio::test]
async fn room_filter_keeps_only_that_rooms_codes() {
    let sim = simulator(
        seed_yaml(&format!(
            "spec: {{robots: [{{robotId: {ROBOT}, codes: [{{roomId: lobby, validPeriod: 1}}, {{roomId: hall, validPeriod: 1}}, {{validPeriod: 1}}]}}]}}"
        )),
        FaultConfig::default(),
    )
    .await;
    let codes = client(&sim, fast_options())
        .list_all(ROBOT, Some("lobby"))
        .await
        .unwrap();
    assert_eq!(codes.len(), 1);
    assert_eq!(codes[0].room_id.as_deref(), Some("lobby"));
}

#[tokio::test]
async fn update_reset_show_create_delete_and_once_code_round_trip() {
    let sim = simulator(robot_seed(1, 3), FaultConfig::default()).await;
    let client = client(&sim, fast_options());
    let code = client.list_all(ROBOT, None).await.unwrap().remove(0);
    let id = code.active_code_id.clone();

    let updated = client.update(&id, 10).await.unwrap();
    assert_eq!(updated.value.valid_period, 10);
    assert!(
        updated.request_id.is_some(),
        "every answer carries X-Request-Id"
    );
    let expected_expiry = updated.value.update_time + jiff::SignedDuration::from_hours(240);
    assert_eq!(updated.value.expire_time, Some(expected_expiry));

    let reset = client.reset(&id, true).await.unwrap().value;
    assert_ne!(
        reset.active_code, code.active_code,
        "a reset mints a new code"
    );
    assert_eq!(client.show(&id).await.unwrap().value, reset);

    let created = client
        .create(
            &metastudio_operator::metastudio::models::CreateActiveCodeBody {
                robot_id: ROBOT.into(),
                room_id: Some("hall".into()),
                valid_period: Some(0),
            },
            None,
        )
        .await
        .unwrap()
        .value;
    assert_eq!(created.expire_time, None, "0 days = permanent, no expiry");
    client
        .delete(std::slice::from_ref(&created.active_code_id), None)
        .await
        .unwrap();
    assert_eq!(client.list_all(ROBOT, None).await.unwrap().len(), 1);

    let once = client.once_code().await.unwrap().value;
    assert_eq!(once.once_code.expose().len(), 64);
}

#[tokio::test]
async fn unknown_code_is_a_400_with_an_mss_code_and_request_id() {
    let sim = simulator(robot_seed(1, 3), FaultConfig::default()).await;
    let err = client(&sim, fast_options())
        .show("no-such-code")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.error_code(), Some("MSS.47010041"));
    assert!(err.request_id().is_some());
    assert_eq!(err.attempts, 1, "a 400 is not retried");
    let text = err.to_string();
    assert!(
        text.contains("ShowActiveCode")
            && text.contains("MSS.47010041")
            && text.contains("X-Request-Id"),
        "{text}"
    );
}

#[tokio::test]
async fn wrong_secret_key_is_401_apigw_0301_and_not_retried() {
    let sim = simulator(robot_seed(1, 3), FaultConfig::default()).await;
    let client = Transport::new(fast_options()).unwrap().client(connection(
        &sim.endpoint(),
        Credentials::ak_sk(metastudio_operator::simulator::DEFAULT_ACCESS_KEY, "wrong"),
    ));
    let err = client.list_all(ROBOT, None).await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.error_code(), Some("APIGW.0301"));
    assert!(err.is_auth_failure());
    assert_eq!(err.attempts, 1);
}

#[tokio::test]
async fn token_and_temporary_credentials_are_accepted() {
    let sim = simulator_accepting(
        robot_seed(2, 1),
        FaultConfig::default(),
        &["static-iam-token"],
    )
    .await;
    let transport = Transport::new(fast_options()).unwrap();
    let token = transport.client(connection(
        &sim.endpoint(),
        Credentials::Token("static-iam-token".into()),
    ));
    assert_eq!(token.list_all(ROBOT, None).await.unwrap().len(), 2);
    let temporary = transport.client(connection(
        &sim.endpoint(),
        Credentials::AkSk {
            access_key: metastudio_operator::simulator::DEFAULT_ACCESS_KEY.into(),
            secret_key: metastudio_operator::simulator::DEFAULT_SECRET_KEY.into(),
            security_token: Some("temporary-security-token".into()),
        },
    ));
    assert_eq!(temporary.list_all(ROBOT, None).await.unwrap().len(), 2);
    let bad_token = transport.client(connection(
        &sim.endpoint(),
        Credentials::Token("nope".into()),
    ));
    assert_eq!(
        bad_token.list_all(ROBOT, None).await.unwrap_err().status(),
        Some(401)
    );
}

#[tokio::test]
async fn app_user_id_is_signed_and_accepted() {
    let sim = simulator(robot_seed(1, 1), FaultConfig::default()).await;
    let mut conn = connection(&sim.endpoint(), good_credentials());
    conn.app_user_id = Some("kiosk-42".into());
    let client = Transport::new(fast_options()).unwrap().client(conn);
    assert_eq!(client.list_all(ROBOT, None).await.unwrap().len(), 1);
}

#[tokio::test]
async fn wrong_project_is_refused() {
    let sim = simulator(robot_seed(1, 1), FaultConfig::default()).await;
    let conn = metastudio_operator::metastudio::Connection::new(
        metastudio_operator::metastudio::connection::parse_endpoint(&sim.endpoint()).unwrap(),
        "another-project",
        good_credentials(),
        None,
    )
    .unwrap();
    let err = Transport::new(fast_options())
        .unwrap()
        .client(conn)
        .list_all(ROBOT, None)
        .await
        .unwrap_err();
    assert_eq!(err.error_code(), Some("MSS.00010009"));
}

#[tokio::test]
async fn refused_connection_is_retried_even_for_a_reset_then_reported() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut options = fast_options();
    options.retry.max_attempts = 3;
    let client = Transport::new(options).unwrap().client(connection(
        &format!("http://127.0.0.1:{port}"),
        good_credentials(),
    ));
    let err = client.reset("any", true).await.unwrap_err();
    assert!(matches!(err.kind, ApiErrorKind::Connect { .. }), "{err}");
    assert_eq!(
        err.attempts, 3,
        "the request never arrived, so retrying is safe"
    );
    assert!(!err.outcome_unknown());
}

#[tokio::test]
async fn recovers_from_injected_429_and_5xx() {
    let sim = simulator(
        robot_seed(120, 3),
        FaultConfig {
            server_error_rate: 0.3,
            throttle_rate: 0.3,
            retry_after_secs: 0,
            seed: 11,
            ..Default::default()
        },
    )
    .await;
    let client = client(&sim, fast_options());
    let codes = client.list_all(ROBOT, None).await.unwrap();
    assert_eq!(codes.len(), 120);
    for code in codes.iter().take(20) {
        client.update(&code.active_code_id, 9).await.unwrap();
    }
    let counters = sim.counters();
    assert!(
        counters.calls_with(Operation::UpdateActiveCode, "500") > 0,
        "{counters:?}"
    );
    assert!(
        counters.calls_with(Operation::UpdateActiveCode, "429") > 0,
        "{counters:?}"
    );
    assert_eq!(counters.total_updates(), 20, "each update applied once");
}

#[tokio::test]
async fn reset_is_retried_after_429_but_not_after_5xx() {
    let sim = simulator(robot_seed(1, 3), FaultConfig::default()).await;
    let client = client(&sim, fast_options());
    let id = client.list_all(ROBOT, None).await.unwrap()[0]
        .active_code_id
        .clone();

    sim.set_faults(FaultConfig {
        throttle_rate: 0.6,
        retry_after_secs: 0,
        operations: [Operation::ResetActiveCode].into(),
        seed: 3,
        ..Default::default()
    });
    client.reset(&id, true).await.unwrap();
    let counters = sim.counters();
    assert!(counters.calls_with(Operation::ResetActiveCode, "429") > 0);
    assert_eq!(
        counters.resets_of(&id),
        1,
        "a refused reset changes nothing"
    );

    sim.set_faults(FaultConfig {
        server_error_rate: 1.0,
        operations: [Operation::ResetActiveCode].into(),
        ..Default::default()
    });
    let err = client.reset(&id, true).await.unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert_eq!(
        err.attempts, 1,
        "a 5xx may hide a partial change: no blind retry"
    );

    sim.set_faults(FaultConfig {
        server_error_rate: 1.0,
        operations: [Operation::UpdateActiveCode].into(),
        ..Default::default()
    });
    let err = client.update(&id, 1).await.unwrap_err();
    assert_eq!(
        err.attempts, 8,
        "an idempotent update is retried to the limit"
    );
}

#[tokio::test]
async fn a_reset_whose_response_was_lost_is_not_retried() {
    let sim = simulator(robot_seed(1, 3), FaultConfig::default()).await;
    let client = client(&sim, fast_options());
    let id = client.list_all(ROBOT, None).await.unwrap()[0]
        .active_code_id
        .clone();
    sim.set_faults(FaultConfig {
        lost_response_rate: 1.0,
        operations: [Operation::ResetActiveCode].into(),
        ..Default::default()
    });
    let err = client.reset(&id, true).await.unwrap_err();
    assert!(err.outcome_unknown(), "{err}");
    assert_eq!(err.attempts, 1);
    let counters = sim.counters();
    assert_eq!(counters.resets_of(&id), 1, "applied once, never twice");
    assert_eq!(counters.calls_with(Operation::ResetActiveCode, LOST), 1);
}

#[tokio::test]
async fn a_dropped_reset_is_reported_as_unknown_and_not_retried() {
    let sim = simulator(robot_seed(1, 3), FaultConfig::default()).await;
    let client = client(&sim, fast_options());
    let id = client.list_all(ROBOT, None).await.unwrap()[0]
        .active_code_id
        .clone();
    sim.set_faults(FaultConfig {
        drop_rate: 1.0,
        operations: [Operation::ResetActiveCode].into(),
        ..Default::default()
    });
    let err = client.reset(&id, true).await.unwrap_err();
    assert!(err.outcome_unknown());
    assert_eq!(err.attempts, 1);
    assert_eq!(
        sim.counters()
            .calls_with(Operation::ResetActiveCode, DROPPED),
        1
    );
    assert_eq!(sim.counters().resets_of(&id), 0);
}

#[tokio::test]
async fn a_timed_out_reset_is_not_retried_and_an_update_is() {
    let sim = simulator(robot_seed(1, 3), FaultConfig::default()).await;
    let options = ClientOptions {
        timeout: Duration::from_millis(100),
        retry: RetryPolicy {
            max_attempts: 3,
            ..fast_options().retry
        },
        ..fast_options()
    };
    let client = client(&sim, options);
    let id = client.list_all(ROBOT, None).await.unwrap()[0]
        .active_code_id
        .clone();
    sim.set_faults(FaultConfig {
        latency: Duration::from_millis(400),
        operations: [Operation::ResetActiveCode, Operation::UpdateActiveCode].into(),
        ..Default::default()
    });
    let err = client.reset(&id, true).await.unwrap_err();
    assert!(matches!(err.kind, ApiErrorKind::Timeout { .. }), "{err}");
    assert_eq!(err.attempts, 1);
    let err = client.update(&id, 2).await.unwrap_err();
    assert_eq!(err.attempts, 3);
}

#[tokio::test]
async fn malformed_and_oversized_bodies_are_clear_decode_errors() {
    let bad_json = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Request-Id: r-1\r\nContent-Length: 21\r\nConnection: close\r\n\r\n{\"offset\": \"zero\"...}".to_vec();
    let endpoint = raw_server(bad_json).await;
    let client = Transport::new(fast_options())
        .unwrap()
        .client(connection(&endpoint, good_credentials()));
    let err = client.list_page(ROBOT, 0, 100).await.unwrap_err();
    assert!(matches!(err.kind, ApiErrorKind::Decode { .. }), "{err}");
    assert_eq!(err.request_id(), Some("r-1"));

    let mut options = fast_options();
    options.max_response_bytes = 1024;
    let huge = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        4096,
        "x".repeat(4096)
    );
    let endpoint = raw_server(huge.into_bytes()).await;
    let client = Transport::new(options)
        .unwrap()
        .client(connection(&endpoint, good_credentials()));
    let err = client.show("id").await.unwrap_err();
    assert!(err.to_string().contains("exceeds 1024 bytes"), "{err}");
}

#[tokio::test]
async fn a_gateway_error_page_that_is_not_json_keeps_the_status() {
    let html = b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: 13\r\nConnection: close\r\n\r\n<html></html>".to_vec();
    let endpoint = raw_server(html).await;
    let mut options = fast_options();
    options.retry.max_attempts = 2;
    let client = Transport::new(options)
        .unwrap()
        .client(connection(&endpoint, good_credentials()));
    let err = client.show("id").await.unwrap_err();
    assert_eq!(err.status(), Some(502));
    assert_eq!(err.attempts, 2);
    assert!(err.to_string().contains("Bad Gateway"), "{err}");
}

#[tokio::test]
async fn a_429_is_retried_no_sooner_than_its_retry_after() {
    let sim = simulator(
        robot_seed(1, 3),
        FaultConfig {
            throttle_rate: 1.0,
            retry_after_secs: 1,
            ..FaultConfig::default()
        },
    )
    .await;
    let client = client(&sim, fast_options());
    let started = std::time::Instant::now();
    let call = tokio::spawn(async move { client.list_all(ROBOT, None).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while sim.counters().calls_with(Operation::ListActiveCode, "429") == 0 {
        assert!(std::time::Instant::now() < deadline, "no 429 answered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sim.set_faults(FaultConfig::default());
    let codes = call.await.unwrap().unwrap();
    assert_eq!(codes.len(), 1);
    let throttled = sim.counters().calls_with(Operation::ListActiveCode, "429");
    // Each 429 asked for a second; the fast backoff alone would be ms.
    assert!(
        started.elapsed() >= Duration::from_secs(throttled),
        "retried before Retry-After: {throttled} 429(s) in {:?}",
        started.elapsed()
    );
}

/// A simulator enforcing cn-north-4's documented quotas, as the gateway
/// does: 20 reads and 5 writes a second, 429 `APIGW.0308` over them.
async fn quota_simulator(seed: metastudio_operator::simulator::Seed) -> Simulator {
    let config = SimulatorConfig {
        seed: Some(seed),
        quotas: Some(Quotas {
            reads: 20.0,
            writes: 5.0,
        }),
        ..SimulatorConfig::default()
    };
    Simulator::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// Updates every code of the robot at once; returns how many succeeded.
async fn update_all(client: &MetaStudioClient, days: u16) -> usize {
    let codes = client.list_all(ROBOT, None).await.unwrap();
    let updates = codes.iter().map(|c| client.update(&c.active_code_id, days));
    futures::future::join_all(updates)
        .await
        .iter()
        .filter(|r| r.is_ok())
        .count()
}

fn throttled(sim: &Simulator) -> u64 {
    sim.counters().answered("429")
}

#[tokio::test]
async fn paced_within_the_regions_quota_no_call_is_throttled() {
    let sim = quota_simulator(robot_seed(8, 3)).await;
    let mut conn = connection(&sim.endpoint(), good_credentials());
    // The region beside the endpoint names the quotas: 20 reads, 5 writes;
    // half of them leaves room, as a tenant's other clients would need.
    conn.options.region = Some("cn-north-4".into());
    conn.options.pacing = Pacing {
        share: Some(0.5),
        ..Pacing::default()
    };
    let options = ClientOptions {
        pacing: Pacing::default(),
        ..fast_options()
    };
    let client = Transport::new(options).unwrap().client(conn);
    assert_eq!(client.current_rates(), (10.0, 2.5));

    assert_eq!(update_all(&client, 30).await, 8);
    assert_eq!(throttled(&sim), 0, "{:?}", sim.counters().calls);
    assert!(sim.counters().updates.values().all(|n| *n == 1));
}

#[tokio::test]
async fn a_budget_above_the_servers_quota_is_cut_by_its_429s_and_still_converges() {
    let sim = quota_simulator(robot_seed(20, 3)).await;
    let options = ClientOptions {
        pacing: Pacing {
            reads_per_second: Some(20.0),
            // Four times the write quota, as a wrong configuration would be.
            writes_per_second: Some(20.0),
            ..Pacing::default()
        },
        retry: RetryPolicy {
            max_attempts: 8,
            ..RetryPolicy::default()
        },
        ..fast_options()
    };
    let transport = Transport::new(options).unwrap();
    let client = transport.client(connection(&sim.endpoint(), good_credentials()));

    assert_eq!(update_all(&client, 30).await, 20, "every update lands");
    assert!(throttled(&sim) > 0, "the server throttled the first burst");
    let (reads, writes) = client.current_rates();
    assert!(writes < 20.0, "the 429s cut the write budget: {writes}/s");
    assert_eq!(reads, 20.0, "reads were never throttled");
    let cuts = |class| {
        transport
            .metrics()
            .rate_cuts
            .get(&ClassLabels { class })
            .map_or(0, |c| c.get())
    };
    assert!(cuts("write") >= 1, "the cut is on /metrics");
    assert_eq!(cuts("read"), 0);
    assert!(sim.counters().updates.values().all(|n| *n == 1));
}
