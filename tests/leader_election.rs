//! Leader election against an in-memory Lease API: acquire, renew, lose
//! (the work stops at once), take over after a crash, hand over on shutdown;
//! a leader that cannot reach the Lease stops before a standby may take
//! over; a dead lease task ends the work with an error.

mod common;

use common::fake_api::{self, Leases, status};
use metastudio_operator::controller::leader::{
    LeaseSettings, LeaseTiming, Reading, SignalEnded, run_while_leading, supervise,
};
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const LEASE: &str = "metastudio-operator";

/// What a replica's work shows: whether it runs, and how far it got.
#[derive(Clone, Default)]
struct Work {
    active: Arc<AtomicBool>,
    ticks: Arc<AtomicU64>,
    /// Leadership as reported to `on_change`, in order.
    reported: Arc<Mutex<Vec<bool>>>,
}

impl Work {
    fn active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }
}

/// How many replicas work at once, and the most ever seen.
#[derive(Clone, Default)]
struct Overlap {
    now: Arc<AtomicI64>,
    most: Arc<AtomicI64>,
}

struct ClearOnDrop(Arc<AtomicBool>, Overlap);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
        self.1.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A replica; while `broken` is true every Lease request it makes fails
/// with 500 (the API server is unreachable for it).
struct Replica {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
    broken: Arc<AtomicBool>,
}

fn replica(
    leases: &Leases,
    identity: &str,
    work: &Work,
    overlap: &Overlap,
    duration: Duration,
) -> Replica {
    let leases = leases.clone();
    let broken = Arc::new(AtomicBool::new(false));
    let client = {
        let broken = broken.clone();
        fake_api::client(move |call| {
            if broken.load(Ordering::SeqCst) {
                return Some(status(500, "InternalError", "unreachable"));
            }
            leases.handle(call)
        })
    };
    let settings = LeaseSettings {
        name: LEASE.into(),
        namespace: "metastudio-system".into(),
        identity: identity.into(),
        duration,
    };
    let (stop, shutdown) = watch::channel(false);
    let (work, overlap) = (work.clone(), overlap.clone());
    let stop_work = shutdown.clone();
    let reported = work.reported.clone();
    let task = tokio::spawn(async move {
        run_while_leading(
            client,
            settings,
            shutdown,
            move |leading| reported.lock().unwrap().push(leading),
            move || {
                let (work, overlap) = (work.clone(), overlap.clone());
                let mut stop = stop_work.clone();
                async move {
                    let together = overlap.now.fetch_add(1, Ordering::SeqCst) + 1;
                    overlap.most.fetch_max(together, Ordering::SeqCst);
                    work.active.store(true, Ordering::SeqCst);
                    let _guard = ClearOnDrop(work.active.clone(), overlap);
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
    Replica { task, stop, broken }
}

impl Replica {
    async fn shut_down(self) {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the replica stops")
            .unwrap();
    }
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

const SHORT: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquires_renews_and_stops_working_when_the_lease_is_lost() {
    let leases = Leases::default();
    let a = Work::default();
    let r = replica(&leases, "a", &a, &Overlap::default(), SHORT);
    eventually("a leads", WAIT, || a.active()).await;
    assert_eq!(holder(&leases).as_deref(), Some("a"));

    let first_renewal = leases.spec(LEASE).unwrap()["renewTime"].clone();
    eventually("a renews the lease", WAIT, || {
        leases.spec(LEASE).unwrap()["renewTime"] != first_renewal
    })
    .await;
    eventually("a still leads after renewing", WAIT, || a.active()).await;

    // Someone else takes the lease (an operator with the same lease name).
    leases.set_spec(
        LEASE,
        json!({"holderIdentity": "intruder", "leaseDurationSeconds": 3600,
               "acquireTime": jiff::Timestamp::now().to_string(), "renewTime": jiff::Timestamp::now().to_string()}),
    );
    eventually("a stops working", WAIT, || !a.active()).await;
    let ticks = a.ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        a.ticks.load(Ordering::SeqCst),
        ticks,
        "no work after losing the lease"
    );
    assert_eq!(holder(&leases).as_deref(), Some("intruder"));
    assert_eq!(a.reported.lock().unwrap().last(), Some(&false));

    r.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_after_the_leader_dies() {
    let leases = Leases::default();
    let (a, b, overlap) = (Work::default(), Work::default(), Overlap::default());
    let ra = replica(&leases, "a", &a, &overlap, SHORT);
    eventually("a leads", WAIT, || a.active()).await;
    let rb = replica(&leases, "b", &b, &overlap, SHORT);
    let renewal = leases.spec(LEASE).unwrap()["renewTime"].clone();
    eventually("a renews while b waits", WAIT, || {
        leases.spec(LEASE).unwrap()["renewTime"] != renewal
    })
    .await;
    assert!(!b.active(), "only one leader");

    // A crash: the API is out of reach for a's last words (no release).
    ra.broken.store(true, Ordering::SeqCst);
    ra.task.abort();
    let died = Instant::now();
    eventually("b takes over", WAIT, || b.active()).await;
    assert_eq!(holder(&leases).as_deref(), Some("b"));
    eprintln!("takeover after {:?} (lease 3s)", died.elapsed());

    rb.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_the_lease_for_the_standby() {
    let leases = Leases::default();
    let (a, b, overlap) = (Work::default(), Work::default(), Overlap::default());
    let ra = replica(&leases, "a", &a, &overlap, SHORT);
    eventually("a leads", WAIT, || a.active()).await;
    let rb = replica(&leases, "b", &b, &overlap, SHORT);

    ra.shut_down().await;
    assert!(!a.active());
    eventually("b leads", WAIT, || b.active()).await;
    rb.shut_down().await;
    assert_eq!(holder(&leases), None, "released on shutdown");
    assert_eq!(overlap.most.load(Ordering::SeqCst), 1, "never two leaders");
}

/// The lease's renew time, then its acquire time, as the fake holds them.
fn lease_times(leases: &Leases) -> (Option<String>, Option<String>) {
    let spec = leases.spec(LEASE).unwrap_or_default();
    let time = |key: &str| spec[key].as_str().map(str::to_owned);
    (time("renewTime"), time("acquireTime"))
}

fn parse_time(text: &str) -> jiff::Timestamp {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// A leader that shuts down releases the lease, and the standby takes it
/// then, not once the lease would have expired: kube-lease-manager's
/// standby sleeps until the expiry it last read, and only a read of the
/// released Lease wakes it (the chart's pods on SIGTERM, scenario q).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standby_takes_a_released_lease_before_it_would_have_expired() {
    let leases = Leases::default();
    let (a, b, overlap) = (Work::default(), Work::default(), Overlap::default());
    // Long enough that an expiry would be plain: the standby looks every 5 s.
    let duration = Duration::from_secs(30);
    let ra = replica(&leases, "a", &a, &overlap, duration);
    eventually("a leads", WAIT, || a.active()).await;
    let rb = replica(&leases, "b", &b, &overlap, duration);
    eventually("b stands by", WAIT, || {
        b.reported.lock().unwrap().first() == Some(&false)
    })
    .await;

    let (renewed, _) = lease_times(&leases);
    ra.shut_down().await;
    eventually("b leads", Duration::from_secs(60), || b.active()).await;
    let (_, acquired) = lease_times(&leases);
    let (renewed, acquired) = (
        parse_time(&renewed.unwrap()),
        parse_time(&acquired.unwrap()),
    );
    let after = acquired.duration_since(renewed);
    eprintln!("b took the released lease {after:?} after a's last renewal (lease {duration:?})");
    assert!(
        after < jiff::SignedDuration::try_from(duration).unwrap(),
        "b took the lease {after:?} after a's last renewal: only once it expired"
    );
    rb.shut_down().await;
    assert_eq!(overlap.most.load(Ordering::SeqCst), 1, "never two leaders");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_cannot_renew_stops_within_the_lease_duration_and_resumes_when_it_can() {
    let leases = Leases::default();
    let a = Work::default();
    let r = replica(&leases, "a", &a, &Overlap::default(), SHORT);
    eventually("a leads", WAIT, || a.active()).await;

    // Every Lease call now fails with 500: kube-lease-manager only logs and
    // retries; the renew deadline must stop the work.
    r.broken.store(true, Ordering::SeqCst);
    let broke = Instant::now();
    eventually("a stops working", WAIT, || !a.active()).await;
    eprintln!(
        "stopped {:?} after the API failed (lease 3s)",
        broke.elapsed()
    );
    assert_eq!(a.reported.lock().unwrap().last(), Some(&false));
    assert_eq!(
        holder(&leases).as_deref(),
        Some("a"),
        "the Lease still names a: only the deadline told it to stop"
    );

    // The API is back and nobody else took the lease: a renews and resumes.
    r.broken.store(false, Ordering::SeqCst);
    eventually("a leads again", Duration::from_secs(60), || a.active()).await;
    r.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_stops_before_the_standby_takes_over() {
    let leases = Leases::default();
    let (a, b, overlap) = (Work::default(), Work::default(), Overlap::default());
    // A longer lease leaves the stop margin (a fifth: 1.2 s) well above
    // scheduling noise.
    let duration = Duration::from_secs(6);
    let ra = replica(&leases, "a", &a, &overlap, duration);
    eventually("a leads", WAIT, || a.active()).await;
    let rb = replica(&leases, "b", &b, &overlap, duration);

    ra.broken.store(true, Ordering::SeqCst); // a cannot reach the API; b can
    eventually("b takes over", Duration::from_secs(40), || b.active()).await;
    assert!(!a.active(), "a stopped");
    assert_eq!(
        overlap.most.load(Ordering::SeqCst),
        1,
        "a stopped before b started: never two leaders"
    );
    assert_eq!(holder(&leases).as_deref(), Some("b"));

    rb.shut_down().await;
    ra.task.abort();
}

#[tokio::test]
async fn a_dead_lease_task_stops_the_work_with_an_error() {
    let (sender, signal) = watch::channel(true);
    let (_stop, shutdown) = watch::channel(false);
    let work = Work::default();
    let reported = work.reported.clone();
    let far = tokio::time::Instant::now() + Duration::from_secs(3600);
    let supervised = tokio::spawn({
        let work = work.clone();
        supervise(
            signal,
            move || async move { Some(Reading::Held { until: far }) },
            LeaseTiming::for_duration(Duration::from_secs(15)),
            shutdown,
            move |leading| reported.lock().unwrap().push(leading),
            move || {
                let work = work.clone();
                async move {
                    work.active.store(true, Ordering::SeqCst);
                    let _guard = ClearOnDrop(work.active.clone(), Overlap::default());
                    std::future::pending::<()>().await;
                }
            },
        )
    });
    eventually("working", WAIT, || work.active()).await;

    drop(sender); // the lease task is gone: leadership can no longer be known
    let ended = tokio::time::timeout(WAIT, supervised)
        .await
        .expect("supervise returns instead of spinning on the last value")
        .unwrap();
    assert_eq!(ended, Err(SignalEnded));
    assert!(!work.active(), "the work was stopped");
    assert_eq!(*work.reported.lock().unwrap(), vec![false, true, false]);
}
