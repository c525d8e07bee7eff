//! The broker's audit lines, under a trace-level subscriber: the only
//! test of this binary, so that no other test's threads share (and cache)
//! tracing's callsite interest.

mod common;

use common::broker::Fixture;
use common::capture::{Captured, assert_clean, trace_subscriber};
use metastudio_operator::simulator::DEFAULT_SECRET_KEY;

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
