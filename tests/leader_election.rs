//! Leader election against an in-memory Lease API: acquire, renew, lose
//! (the work stops at once), take over after a crash, hand over on shutdown.

mod common;

use common::fake_api::{self, Leases};
use metastudio_operator::controller::leader::{LeaseSettings, run_while_leading};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const LEASE: &str = "metastudio-operator";

/// What a replica's work shows: whether it runs, and how far it got.
#[derive(Clone, Default)]
struct Work {
    active: Arc<AtomicBool>,
    ticks: Arc<AtomicU64>,
}

struct ClearOnDrop(Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

fn replica(leases: &Leases, identity: &str, work: &Work) -> (JoinHandle<()>, watch::Sender<bool>) {
    let leases = leases.clone();
    let client = fake_api::client(move |method, path, _query, content_type, body| {
        leases.handle(method, path, content_type, body)
    });
    let settings = LeaseSettings {
        name: LEASE.into(),
        namespace: "metastudio-system".into(),
        identity: identity.into(),
        duration: Duration::from_secs(3),
    };
    let (stop, shutdown) = watch::channel(false);
    let work = work.clone();
    let stop_work = shutdown.clone();
    let task = tokio::spawn(async move {
        run_while_leading(
            client,
            settings,
            shutdown,
            |_| {},
            move || {
                let work = work.clone();
                let mut stop = stop_work.clone();
                async move {
                    work.active.store(true, Ordering::SeqCst);
                    let _guard = ClearOnDrop(work.active.clone());
                    let ticking = async {
                        loop {
                            work.ticks.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! {
                        _ = ticking => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                }
            },
        )
        .await
        .expect("leader election runs");
    });
    (task, stop)
}

async fn eventually(what: &str, timeout: Duration, check: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn holder(leases: &Leases) -> Option<String> {
    leases
        .spec(LEASE)
        .and_then(|s| s["holderIdentity"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquires_renews_and_stops_working_when_the_lease_is_lost() {
    let leases = Leases::default();
    let a = Work::default();
    let (task, stop) = replica(&leases, "a", &a);
    eventually("a leads", Duration::from_secs(20), || {
        a.active.load(Ordering::SeqCst)
    })
    .await;
    assert_eq!(holder(&leases).as_deref(), Some("a"));

    let first_renewal = leases.spec(LEASE).unwrap()["renewTime"].clone();
    eventually("a renews the lease", Duration::from_secs(20), || {
        leases.spec(LEASE).unwrap()["renewTime"] != first_renewal
    })
    .await;
    assert!(
        a.active.load(Ordering::SeqCst),
        "still leading after renewing"
    );

    // Someone else takes the lease (an operator with the same lease name).
    leases.set_spec(
        LEASE,
        json!({"holderIdentity": "intruder", "leaseDurationSeconds": 3600,
               "acquireTime": jiff::Timestamp::now().to_string(), "renewTime": jiff::Timestamp::now().to_string()}),
    );
    eventually("a stops working", Duration::from_secs(20), || {
        !a.active.load(Ordering::SeqCst)
    })
    .await;
    let ticks = a.ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        a.ticks.load(Ordering::SeqCst),
        ticks,
        "no work after losing the lease"
    );
    assert_eq!(holder(&leases).as_deref(), Some("intruder"));

    let _ = stop.send(true);
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_after_the_leader_dies() {
    let leases = Leases::default();
    let (a, b) = (Work::default(), Work::default());
    let (task_a, _stop_a) = replica(&leases, "a", &a);
    eventually("a leads", Duration::from_secs(20), || {
        a.active.load(Ordering::SeqCst)
    })
    .await;
    let (task_b, stop_b) = replica(&leases, "b", &b);
    let renewal = leases.spec(LEASE).unwrap()["renewTime"].clone();
    eventually("a renews while b waits", Duration::from_secs(20), || {
        leases.spec(LEASE).unwrap()["renewTime"] != renewal
    })
    .await;
    assert!(!b.active.load(Ordering::SeqCst), "only one leader");

    task_a.abort(); // a crash: no release
    let died = Instant::now();
    eventually("b takes over", Duration::from_secs(20), || {
        b.active.load(Ordering::SeqCst)
    })
    .await;
    assert_eq!(holder(&leases).as_deref(), Some("b"));
    eprintln!("takeover after {:?} (lease 3s)", died.elapsed());

    let _ = stop_b.send(true);
    task_b.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_the_lease_for_the_standby() {
    let leases = Leases::default();
    let (a, b) = (Work::default(), Work::default());
    let (task_a, stop_a) = replica(&leases, "a", &a);
    eventually("a leads", Duration::from_secs(20), || {
        a.active.load(Ordering::SeqCst)
    })
    .await;
    let (task_b, stop_b) = replica(&leases, "b", &b);

    let _ = stop_a.send(true);
    task_a.await.unwrap();
    assert!(!a.active.load(Ordering::SeqCst));
    eventually("b leads", Duration::from_secs(20), || {
        b.active.load(Ordering::SeqCst)
    })
    .await;
    let _ = stop_b.send(true);
    task_b.await.unwrap();
    assert_eq!(holder(&leases), None, "released on shutdown");
}
