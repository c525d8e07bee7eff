//! The once-code broker against a mocked API server (TokenReview,
//! SubjectAccessReview, Secrets) and the simulator: every answer a caller
//! can get, what the broker asked the API server, and what reached
//! MetaStudio (its audit lines: tests/broker_logs.rs).

mod common;

use common::broker::{AUDIENCE, Fixture, Setup};
use metastudio_operator::broker::review::{KubeReviewer, REVIEWS_IN_FLIGHT, Reviewer};
use metastudio_operator::metastudio::pacing::Pacing;
use metastudio_operator::metastudio::rate_limit::RateLimit;
use metastudio_operator::simulator::FaultConfig;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// The broker waits on no tenant's budget: a connection whose budget has
/// no call free answers 429 with when it will, at once, instead of holding
/// the request (and one of the broker's connections) for up to 1000 s.
#[tokio::test]
async fn a_connection_whose_budget_has_no_call_free_is_a_429_at_once() {
    let f = Fixture::open().await;
    assert_eq!(f.ask("slow", Some("token-kiosk")).await.0, 200);
    let asked = f.ask("slow", Some("token-kiosk"));
    let (status, headers, body) = tokio::time::timeout(std::time::Duration::from_secs(60), asked)
        .await
        .expect("answered without waiting for the budget");
    assert_eq!(
        (status, body["reason"].as_str()),
        (429, Some("QuotaExhausted")),
        "{body}"
    );
    let retry_after: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((900..=1000).contains(&retry_after), "{retry_after}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("MetaStudioConnection retail/slow") && message.contains("spec.budget"),
        "{message}"
    );
    assert_eq!(f.sim.counters().total_calls(), 1, "nothing sent for it");
    assert_eq!(
        f.ask("retail", Some("token-kiosk")).await.0,
        200,
        "other credentials are served"
    );
}

/// A budget that frees a call within a moment is waited for: once-codes
/// asked back to back of a connection with the default budget (the lowest
/// documented quota, one call at a time, evenly spaced) are all issued,
/// none refused for the spacing.
#[tokio::test]
async fn calls_asked_back_to_back_wait_their_turn_in_the_budget() {
    let f = Fixture::with(Setup {
        pacing: Pacing::default(),
        ..Setup::default()
    })
    .await;
    let asks = (0..3).map(|_| f.ask("retail", Some("token-kiosk")));
    for (status, _, body) in futures::future::join_all(asks).await {
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(f.sim.counters().total_calls(), 3);
}

/// MetaStudio's own 429 is the caller's 429 with MetaStudio's Retry-After,
/// not a retry inside the broker.
#[tokio::test]
async fn metastudio_throttling_is_a_429_with_its_retry_after() {
    let f = Fixture::open().await;
    f.sim.set_faults(FaultConfig {
        throttle_rate: 1.0,
        ..FaultConfig::default()
    });
    let (status, headers, body) = f.ask("retail", Some("token-kiosk")).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (429, Some("QuotaExhausted")),
        "{body}"
    );
    assert!(headers.contains_key("retry-after"));
    assert_eq!(f.sim.counters().total_calls(), 1, "one attempt, no retry");
}

/// A namespace whose labels the broker has not seen yet (just created) is
/// told to come back, not refused for good.
#[tokio::test]
async fn a_namespace_not_seen_yet_is_a_503_with_retry_after() {
    let f = Fixture::open().await;
    let (status, headers, body) = f.ask("by-label", Some("token-museum")).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (503, Some("NamespaceLabelsUnknown")),
        "{body}"
    );
    assert_eq!(headers["retry-after"], "5");
    assert_eq!(f.sim.counters().total_calls(), 0);
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

/// Two reviews, then one per 1000 s: nothing refills during a test.
const TWO_REVIEWS: RateLimit = RateLimit {
    per_second: 0.001,
    burst: 2,
};

#[tokio::test]
async fn junk_tokens_past_the_review_budget_get_429_without_a_token_review() {
    let f = Fixture::with(Setup {
        review: TWO_REVIEWS,
        ..Setup::default()
    })
    .await;
    for i in 0..2 {
        let (status, _, body) = f.ask("retail", Some(&format!("junk-{i}"))).await;
        assert_eq!(status, 401, "{body}");
    }
    for i in 2..50 {
        let (status, headers, body) = f.ask("retail", Some(&format!("junk-{i}"))).await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (429, Some("ReviewRateLimited")),
            "{body}"
        );
        assert!(headers.contains_key("retry-after"));
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("--broker-review-rate")
        );
    }
    assert_eq!(
        f.calls_to("tokenreviews").len(),
        2,
        "one review per token within the budget, none past it"
    );
    // A junk token reviewed before is answered from the cache, still 401.
    assert_eq!(f.ask("retail", Some("junk-0")).await.0, 401);
    assert_eq!(f.calls_to("tokenreviews").len(), 2);
}

#[tokio::test]
async fn a_caller_served_before_a_flood_of_junk_tokens_keeps_getting_codes() {
    let f = Fixture::with(Setup {
        review: TWO_REVIEWS,
        ..Setup::default()
    })
    .await;
    assert_eq!(f.ask("retail", Some("token-kiosk")).await.0, 200);
    let mut refused = 0;
    for i in 0..200 {
        let (status, _, _) = f.ask("retail", Some(&format!("junk-{i}"))).await;
        refused += usize::from(status == 429);
        if i % 20 == 0 {
            let (status, _, body) = f.ask("retail", Some("token-kiosk")).await;
            assert_eq!(status, 200, "during the flood: {body}");
        }
    }
    assert_eq!(
        refused, 199,
        "one junk token was reviewed, the rest refused"
    );
    assert_eq!(f.calls_to("tokenreviews").len(), 2);
    assert_eq!(
        f.sim.counters().total_calls(),
        11,
        "every request of the caller got its code"
    );
}

#[tokio::test]
async fn a_tenant_naming_another_tenants_project_spends_only_its_own_quota() {
    let f = Fixture::new(
        common::broker::OPEN,
        RateLimit {
            per_second: 0.001,
            burst: 2,
        },
        &[],
    )
    .await;
    // squat/squat names retail's endpoint and project, with credentials of
    // its own that MetaStudio refuses.
    for _ in 0..2 {
        let (status, _, body) = f.ask("squat", Some("token-squatter")).await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (502, Some("MetaStudioError")),
            "{body}"
        );
    }
    let (status, _, body) = f.ask("squat", Some("token-squatter")).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (429, Some("QuotaExhausted")),
        "{body}"
    );
    for _ in 0..2 {
        let (status, _, body) = f.ask("retail", Some("token-kiosk")).await;
        assert_eq!(status, 200, "the owner's budget is whole: {body}");
    }
}

/// The operator's Lease renewals and status writes share the API server
/// with the broker's reviews: however many requests arrive, at most
/// REVIEWS_IN_FLIGHT reviews are asked at once, and one the API server
/// does not answer ends as a 503 the caller may retry.
#[tokio::test(start_paused = true)]
async fn reviews_in_flight_are_capped_and_a_silent_api_server_is_a_503() {
    let asked = Arc::new(AtomicUsize::new(0));
    let client = {
        let asked = asked.clone();
        common::fake_api::recording_client(
            move |_| {
                asked.fetch_add(1, Ordering::SeqCst);
            },
            |_| common::fake_api::Reply::Hold,
        )
    };
    let reviewer = KubeReviewer::new(client, AUDIENCE);
    let answers = futures::future::join_all((0..3 * REVIEWS_IN_FLIGHT).map(|i| {
        let reviewer = &reviewer;
        async move { reviewer.authenticate(&format!("token-{i}")).await }
    }))
    .await;
    assert_eq!(asked.load(Ordering::SeqCst), REVIEWS_IN_FLIGHT);
    for answer in answers {
        let denial = answer.unwrap_err();
        assert_eq!(
            (denial.status, denial.reason),
            (503, "ReviewUnavailable"),
            "{denial}"
        );
        assert!(denial.message.contains("try again"), "{denial}");
    }
}
