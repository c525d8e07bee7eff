//! The once-code broker against a mocked API server (TokenReview,
//! SubjectAccessReview, Secrets) and the simulator: every answer a caller
//! can get, what the broker asked the API server, what reached MetaStudio,
//! and what it logged.

mod common;

use common::broker::{AUDIENCE, Fixture};
use common::capture::{Captured, assert_clean, trace_subscriber};
use metastudio_operator::metastudio::rate_limit::RateLimit;
use metastudio_operator::simulator::{DEFAULT_SECRET_KEY, FaultConfig};
use serde_json::json;
use std::sync::atomic::Ordering;

#[tokio::test]
async fn a_service_account_with_the_role_gets_a_code_the_simulator_issued() {
    let f = Fixture::open().await;
    let (status, headers, body) = f.ask("retail", Some("token-kiosk")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["cache-control"], "no-store");
    let code = body["onceCode"].as_str().unwrap();
    assert!(f.simulator_accepts(code).await, "a code MetaStudio issued");
    assert!(f.sim.issued_request_id(body["requestId"].as_str().unwrap()));
    let expires: jiff::Timestamp = body["expiresAt"].as_str().unwrap().parse().unwrap();
    let left = expires.duration_since(jiff::Timestamp::now());
    assert!(
        left > jiff::SignedDuration::from_secs(290) && left <= jiff::SignedDuration::from_secs(300),
        "{left:?}"
    );
    // Exactly what the API server was asked.
    let reviews = f.calls_to("tokenreviews");
    assert_eq!(reviews.len(), 1);
    assert_eq!(
        reviews[0].body["spec"],
        json!({"token": "token-kiosk", "audiences": [AUDIENCE]})
    );
    let access = f.calls_to("subjectaccessreviews");
    assert_eq!(access.len(), 1);
    assert_eq!(
        access[0].body["spec"]["user"],
        "system:serviceaccount:retail:kiosk"
    );
    assert_eq!(
        access[0].body["spec"]["groups"],
        json!(["system:serviceaccounts"])
    );
    assert_eq!(
        access[0].body["spec"]["resourceAttributes"],
        json!({"namespace": "retail", "verb": "create", "group": "metastudio.huaweicloud.com", "resource": "oncecodes", "name": "retail"})
    );
    assert_eq!(
        f.calls_to("secrets/retail-credentials").len(),
        1,
        "credentials read on use"
    );
}

#[tokio::test]
async fn review_answers_are_cached_so_a_burst_costs_one_review_each() {
    let f = Fixture::open().await;
    for _ in 0..5 {
        assert_eq!(f.ask("retail", Some("token-kiosk")).await.0, 200);
        assert_eq!(f.ask("retail", Some("token-lonely")).await.0, 403);
        assert_eq!(f.ask("retail", Some("garbage")).await.0, 401);
    }
    assert_eq!(f.calls_to("tokenreviews").len(), 3, "one per token");
    assert_eq!(
        f.calls_to("subjectaccessreviews").len(),
        2,
        "one per caller and connection"
    );
    assert_eq!(
        f.sim.counters().total_calls(),
        5,
        "every granted request is one CreateOnceCode"
    );
}

/// Each refusal: its status, reason, a message with the fix, and no
/// MetaStudio call.
#[tokio::test]
async fn every_refusal_has_its_status_and_reason_and_calls_nothing() {
    let f = Fixture::new(
        RateLimit {
            per_second: 100.0,
            burst: 100,
        },
        RateLimit {
            per_second: 100.0,
            burst: 100,
        },
        &["retail", "museum"],
    )
    .await;
    let cases: &[(&str, Option<&str>, u16, &str, &str)] = &[
        (
            "retail",
            None,
            401,
            "Unauthenticated",
            "Authorization: Bearer",
        ),
        (
            "retail",
            Some("garbage"),
            401,
            "Unauthenticated",
            "projected ServiceAccount token",
        ),
        (
            "retail",
            Some("token-other-audience"),
            401,
            "Unauthenticated",
            "audience \"metastudio-operator\"",
        ),
        (
            "retail",
            Some("token-user"),
            403,
            "NotAServiceAccount",
            "is not a ServiceAccount",
        ),
        (
            "retail",
            Some("token-lonely"),
            403,
            "Forbidden",
            "resourceNames [retail], verbs [create]",
        ),
        (
            "retail",
            Some("token-finance"),
            403,
            "ConnectionNotAllowed",
            "does not serve namespace finance",
        ),
        (
            "nowhere",
            Some("token-kiosk"),
            404,
            "ConnectionNotFound",
            "no MetaStudioConnection retail/nowhere",
        ),
        (
            "closed",
            Some("token-kiosk"),
            403,
            "ConnectionNotAllowed",
            "does not admit namespace retail",
        ),
        (
            "robots-only",
            Some("token-museum"),
            403,
            "ConnectionNotAllowed",
            "only for some robots",
        ),
        (
            "retail",
            Some("token-museum"),
            404,
            "ConnectionNotFound",
            "no MetaStudioConnection museum/retail",
        ),
        (
            "no-secret",
            Some("token-kiosk"),
            503,
            "ConnectionNotReady",
            "Secret retail/missing",
        ),
        (
            "retail",
            Some("token-api-down"),
            503,
            "ReviewUnavailable",
            "try again",
        ),
        (
            "Bad_Name",
            Some("token-kiosk"),
            400,
            "BadRequest",
            "lowercase letters",
        ),
    ];
    for (connection, token, want_status, want_reason, want_text) in cases {
        let (status, _, body) = f.ask(connection, *token).await;
        assert_eq!(
            (status, body["reason"].as_str().unwrap()),
            (*want_status, *want_reason),
            "{connection} {token:?}: {body}"
        );
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(want_text),
            "{connection} {token:?}: {message}"
        );
        if let Some(token) = token {
            assert!(
                !message.contains(token),
                "the message shows no token: {message}"
            );
        }
    }
    assert_eq!(
        f.sim.counters().total_calls(),
        0,
        "no refusal reached MetaStudio"
    );
    // A cluster connection that admits the namespace serves it.
    let (status, _, body) = f.ask("shared", Some("token-museum")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(f.calls_to("secrets/shared-credentials").len(), 1);
}

#[tokio::test]
async fn not_ready_wrong_method_bodies_and_other_paths_are_refused_before_any_review() {
    let f = Fixture::open().await;
    f.ready.store(false, Ordering::SeqCst);
    let (status, _, body) = f.ask("retail", Some("token-kiosk")).await;
    assert_eq!((status, body["reason"].as_str()), (503, Some("NotReady")));
    f.ready.store(true, Ordering::SeqCst);
    let get = f
        .http
        .get(format!("{}/v1/oncecodes/retail", f.url))
        .bearer_auth("token-kiosk")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST");
    let with_body = f
        .http
        .post(format!("{}/v1/oncecodes/retail", f.url))
        .bearer_auth("token-kiosk")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(with_body.status(), 400);
    let elsewhere = f
        .http
        .post(format!("{}/v1/oncecodes/../../api", f.url))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404);
    assert!(
        f.calls.lock().unwrap().is_empty(),
        "nothing asked of the API server"
    );
}

#[tokio::test]
async fn a_caller_over_its_bucket_and_a_project_over_its_quota_get_429_with_retry_after() {
    let f = Fixture::new(
        RateLimit {
            per_second: 0.5,
            burst: 2,
        },
        RateLimit {
            per_second: 1.0,
            burst: 3,
        },
        &[],
    )
    .await;
    assert_eq!(f.ask("retail", Some("token-kiosk")).await.0, 200);
    assert_eq!(f.ask("retail", Some("token-kiosk")).await.0, 200);
    let (status, headers, body) = f.ask("retail", Some("token-kiosk")).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (429, Some("CallerRateLimited")),
        "{body}"
    );
    assert_eq!(headers["retry-after"], "2");
    // Another caller of the same project: its own bucket, the shared quota.
    assert_eq!(f.ask("shared", Some("token-museum")).await.0, 200);
    let (status, headers, body) = f.ask("shared", Some("token-museum")).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (429, Some("QuotaExhausted")),
        "{body}"
    );
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(
        f.sim.counters().total_calls(),
        3,
        "a refused request reached nothing"
    );
}

#[tokio::test]
async fn a_metastudio_failure_is_a_502_naming_its_error_code_and_request_id() {
    let f = Fixture::open().await;
    f.sim.set_faults(FaultConfig {
        server_error_rate: 1.0,
        ..FaultConfig::default()
    });
    let (status, _, body) = f.ask("retail", Some("token-kiosk")).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (502, Some("MetaStudioError")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("HTTP 500") && message.contains("X-Request-Id: "),
        "{message}"
    );
    assert!(
        message.contains("MetaStudioConnection retail/retail"),
        "{message}"
    );
}

/// The audit lines name caller, namespace, connection and request id, and
/// neither the tokens nor the codes.
#[test]
fn logs_name_the_caller_and_never_a_token_or_a_code() {
    let logs = Captured::default();
    let _guard = tracing::subscriber::set_default(trace_subscriber(&logs));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let codes = runtime.block_on(async {
        let f = Fixture::open().await;
        let mut codes = Vec::new();
        for _ in 0..3 {
            let (status, _, body) = f.ask("retail", Some("token-kiosk")).await;
            assert_eq!(status, 200);
            codes.push(body["onceCode"].as_str().unwrap().to_owned());
        }
        assert_eq!(f.ask("retail", Some("token-lonely")).await.0, 403);
        assert_eq!(f.ask("retail", Some("garbage")).await.0, 401);
        codes
    });
    let text = logs.text();
    assert!(
        text.contains("once-code issued")
            && text.contains("caller=retail/kiosk")
            && text.contains("connection=\"retail\""),
        "{text}"
    );
    assert!(
        text.contains("once-code denied") && text.contains("reason=\"Forbidden\""),
        "{text}"
    );
    let mut secrets = codes;
    secrets
        .extend(["token-kiosk", "token-lonely", "garbage", DEFAULT_SECRET_KEY].map(String::from));
    assert_clean(&text, &secrets);
}
