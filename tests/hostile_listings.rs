//! What listings hold, whatever an endpoint answers: no more codes at once
//! than the process's listing budget, waited for without a reconcile slot,
//! and no longer than the listing deadline.

mod common;

use common::raw_http::Paging;
use common::{connection, fast_options, good_credentials};
use metastudio_operator::metastudio::listing_budget::DEFAULT_LISTING_BUDGET;
use metastudio_operator::metastudio::{ApiErrorKind, ClientOptions, MetaStudioClient, Transport};
use metastudio_operator::slots::Slots;
use std::sync::Arc;
use std::time::Duration;

const ROBOT: &str = "r";

fn client(transport: &Arc<Transport>, endpoint: &str) -> MetaStudioClient {
    transport.client(connection(endpoint, good_credentials()))
}

/// M5: an endpoint answering one code a page, each page slowly, would keep
/// a listing (and its reconcile's slot) going for its 10,000 pages; the
/// listing deadline ends it with an error naming the robot and the fix.
#[tokio::test]
async fn a_slow_endpoint_is_cut_at_the_listing_deadline() {
    let endpoint = Paging {
        count: 100_000,
        per_page: 1,
        until: u64::MAX,
        delay: Duration::from_millis(100),
    }
    .serve()
    .await;
    let transport = Transport::new(ClientOptions {
        listing_deadline: Duration::from_secs(1),
        ..fast_options()
    })
    .unwrap();
    let listed = tokio::time::timeout(
        Duration::from_secs(60),
        client(&transport, &endpoint).listing(ROBOT),
    )
    .await
    .expect("the listing ended by its deadline");
    let err = listed.unwrap_err();
    assert!(
        matches!(err.kind, ApiErrorKind::ListingTooSlow { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("listing robot r took longer than 1s: check the endpoint")
            && text.contains("of 100000 codes read")
            && text.contains("--listing-deadline"),
        "{text}"
    );
    assert!(err.is_transient(), "retried with backoff");
    assert_eq!(
        transport.listing_budget().available(),
        DEFAULT_LISTING_BUDGET as usize,
        "its share of the budget is back"
    );
}

/// M2: two listings of 60,000 codes under a budget of 100,000: the second
/// waits for the first's share without holding its reconcile slot, and
/// reads once the first's codes are dropped.
#[tokio::test]
async fn a_listing_past_the_budget_waits_without_its_slot_for_the_share() {
    // Each robot claims 60,000 codes; its pages run dry after 200.
    let endpoint = Paging {
        count: 60_000,
        per_page: 100,
        until: 200,
        delay: Duration::ZERO,
    }
    .serve()
    .await;
    let transport = Transport::new(ClientOptions {
        listing_budget: 100_000,
        ..fast_options()
    })
    .unwrap();
    let (first, hold) = client(&transport, &endpoint).listing(ROBOT).await.unwrap();
    assert_eq!((first.codes.len(), first.complete), (200, false));
    assert_eq!(hold.codes(), 60_000, "held from the first page on");
    assert_eq!(transport.listing_budget().available(), 40_000);

    let slots = Slots::new(1);
    let second = tokio::spawn({
        let (slots, client) = (slots.clone(), client(&transport, &endpoint));
        async move {
            slots
                .run(async move {
                    let (listing, hold) = client.listing(ROBOT).await.unwrap();
                    (listing.codes.len(), hold.codes())
                })
                .await
        }
    });
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    while slots.available() == 0 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(slots.available(), 1, "it waits without its slot");
    assert!(!second.is_finished(), "and without reading on");
    assert_eq!(transport.listing_budget().available(), 40_000);
    drop((first, hold));
    let (codes, held) = tokio::time::timeout(Duration::from_secs(30), second)
        .await
        .expect("it read once the share was free")
        .unwrap();
    assert_eq!((codes, held), (200, 60_000));
    assert_eq!(transport.listing_budget().available(), 100_000);
}
