//! Leader election on a `coordination.k8s.io` Lease (kube-lease-manager):
//! only the holder reconciles; a standby takes over once the lease expires,
//! or within a sixth of its duration once the leader released it;
//! losing the lease stops the work at once; shutdown releases it.
//!
//! kube-lease-manager renews the lease and reports when another replica
//! took it, but a renewal that fails (the API server is unreachable, or
//! answers 500) is only logged and retried: it never reports the loss, so a
//! partitioned leader would keep reconciling after its lease expired and a
//! standby took over. This module therefore also reads the Lease back (a GET
//! every sixth of the lease duration) and keeps a *renew deadline*: the
//! work runs only while the manager says this replica leads **and** a read
//! confirmed, recently enough, that the Lease names it and was renewed. The
//! work stops when
//!
//! * the manager reports the lease lost;
//! * a read shows another holder, or no holder;
//! * no read confirmed a renewal before `renewTime + duration - margin`
//!   (the margin, a fifth of the duration, is earlier than any standby may
//!   take over: it covers clock skew between nodes and a slow stop);
//! * the manager's task ended (its channel closed): that is a bug or a
//!   panic, so [`run_while_leading`] returns an error and the process exits.
//!
//! After the first three the replica stands by again and leads again once
//! the manager and a read agree (e.g. when the API server is back and
//! nobody else took the lease).

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use std::future::Future;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};
use tracing::{debug, info, warn};

#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// This replica's identity, usually the pod name.
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub duration: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error(
        "leader election on Lease {namespace}/{name} failed: {source} (check that the operator's ServiceAccount may get, create and patch Leases in {namespace})"
    )]
    Lease {
        namespace: String,
        name: String,
        #[source]
        source: LeaseManagerError,
    },
    #[error(
        "the task that keeps Lease {namespace}/{name} ended unexpectedly; the operator stops so that it is restarted"
    )]
    TaskEnded { namespace: String, name: String },
}

/// The leadership signal ended: whoever sent it is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the leadership signal ended")]
pub struct SignalEnded;

/// The rhythm of a lease of a given duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// The lease duration, whole seconds, at least 3.
    pub duration: Duration,
    /// kube-lease-manager renews when this much of the lease is left: half.
    pub renew_before: Duration,
    /// How often the leader reads the Lease back: a sixth of the duration.
    pub poll: Duration,
    /// The leader stops this long before its lease expires: a fifth.
    pub margin: Duration,
}

impl LeaseTiming {
    pub fn for_duration(duration: Duration) -> Self {
        let seconds = duration.as_secs().max(3);
        let duration = Duration::from_secs(seconds);
        Self {
            duration,
            renew_before: Duration::from_secs(seconds.div_ceil(2)),
            poll: duration / 6,
            margin: duration / 5,
        }
    }
}

/// What a read of the Lease says about this replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// This replica holds it; it must stop working at `until` unless a
    /// later read shows a renewal.
    Held { until: Instant },
    /// Someone else holds it.
    Other { holder: String },
    /// Nobody holds it (released, or never taken).
    Free,
}

/// Why the work stopped while leading.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Loss {
    /// The lease manager reported another holder.
    Reported,
    /// A read showed another holder, or none.
    Taken(Option<String>),
    /// No read confirmed a renewal in time.
    Expired,
    SignalEnded,
}

/// Runs `work` while this replica holds the lease, until `shutdown` turns
/// true. `on_change(true|false)` reports leadership (for metrics, readiness).
/// `work` is dropped, ending it at once, when the lease is lost; it should
/// return only once shutdown was requested and its work is drained (or
/// abandoned). The lease is released when this returns.
pub async fn run_while_leading<W, F>(
    client: Client,
    settings: LeaseSettings,
    shutdown: watch::Receiver<bool>,
    on_change: impl FnMut(bool),
    work: W,
) -> Result<(), LeaderError>
where
    W: FnMut() -> F,
    F: Future<Output = ()>,
{
    let timing = LeaseTiming::for_duration(settings.duration);
    let manager = lease_manager(&client, &settings, timing)
        .await
        .map_err(|source| LeaderError::Lease {
            namespace: settings.namespace.clone(),
            name: settings.name.clone(),
            source,
        })?;
    let api: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
    let (signal, task) = watch_lease(manager, client, settings.clone(), timing);
    info!(lease = %settings.name, identity = %settings.identity, "waiting for the leader lease");
    let probe = || read_lease(&api, &settings, timing);
    // `supervise` drops the receiver when it returns, which makes the lease
    // task release the lease and end.
    let result = supervise(signal, probe, timing, shutdown, on_change, work).await;
    match tokio::time::timeout(Duration::from_secs(5), task).await {
        Ok(Ok(Ok(()))) => info!("released the leader lease"),
        Ok(Ok(Err(err))) => {
            warn!(error = %err, "could not release the leader lease; it expires by itself")
        }
        Ok(Err(err)) => warn!(error = %err, "the lease task failed"),
        Err(_) => warn!("releasing the leader lease took too long; it expires by itself"),
    }
    result.map_err(|SignalEnded| LeaderError::TaskEnded {
        namespace: settings.namespace.clone(),
        name: settings.name.clone(),
    })
}

/// The lease manager of this replica, with the Lease's state as read now.
async fn lease_manager(
    client: &Client,
    settings: &LeaseSettings,
    timing: LeaseTiming,
) -> Result<LeaseManager, LeaseManagerError> {
    LeaseManagerBuilder::new(client.clone(), &settings.name)
        .with_namespace(&settings.namespace)
        .with_identity(&settings.identity)
        .with_duration(timing.duration.as_secs())
        .with_grace(timing.renew_before.as_secs())
        .with_field_manager(format!("metastudio-operator-{}", settings.identity))
        .build()
        .await
}

/// kube-lease-manager's `watch()`, but a standby notices a released lease:
/// while another replica holds the lease, the manager sleeps until the
/// expiry it last read (and reads nothing before), so a leader that
/// released it on shutdown (a pod deleted, a rolling update) would still
/// leave every standby waiting for the whole duration. Here, while standing
/// by, a read of the Lease every poll that finds no holder replaces the
/// manager with a fresh one, which reads the Lease anew and takes it.
/// Dropping the receiver ends the task, which releases the lease (as
/// `watch()` does).
fn watch_lease(
    mut manager: LeaseManager,
    client: Client,
    settings: LeaseSettings,
    timing: LeaseTiming,
) -> (
    watch::Receiver<bool>,
    JoinHandle<Result<(), LeaseManagerError>>,
) {
    let (sender, receiver) = watch::channel(false);
    let api: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
    let task = tokio::spawn(async move {
        let (mut leading, mut failures) = (false, 0u32);
        loop {
            let freed = async {
                if leading {
                    std::future::pending::<()>().await;
                }
                until_free(&api, &settings.name, timing.poll).await;
            };
            tokio::select! {
                biased;
                () = sender.closed() => return manager.release().await,
                changed = manager.changed() => match changed {
                    Ok(now) => {
                        (leading, failures) = (now, 0);
                        if sender.send(now).is_err() {
                            return manager.release().await;
                        }
                    }
                    Err(err) => {
                        failures += 1;
                        warn!(error = %err, "leader election: the lease could not be read or written; retrying");
                        sleep(Duration::from_secs(1 << failures.min(4))).await;
                    }
                },
                () = freed => match lease_manager(&client, &settings, timing).await {
                    Ok(fresh) => {
                        debug!("the leader lease was released: looking again at once");
                        manager = fresh;
                    }
                    Err(err) => warn!(error = %err, "leader election: cannot read the released lease; retrying"),
                },
            }
        }
    });
    (receiver, task)
}

/// Returns once a read of the Lease (one every `poll`) finds no holder.
async fn until_free(api: &Api<Lease>, name: &str, poll: Duration) {
    loop {
        sleep(poll).await;
        if let Ok(Some(lease)) = api.get_opt(name).await
            && lease.spec.and_then(|s| s.holder_identity).is_none()
        {
            return;
        }
    }
}

/// Reads the Lease; `None` when the read failed or took too long.
async fn read_lease(
    api: &Api<Lease>,
    settings: &LeaseSettings,
    timing: LeaseTiming,
) -> Option<Reading> {
    let read = tokio::time::timeout(timing.duration / 3, api.get_opt(&settings.name)).await;
    let lease = match read {
        Ok(Ok(lease)) => lease,
        Ok(Err(err)) => {
            debug!(error = %err, "cannot read the leader lease");
            return None;
        }
        Err(_) => {
            debug!("reading the leader lease timed out");
            return None;
        }
    };
    let spec = lease.and_then(|l| l.spec).unwrap_or_default();
    Some(match spec.holder_identity {
        Some(holder) if holder == settings.identity => {
            let duration = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(timing.duration, Duration::from_secs);
            let until = spec.renew_time.map_or_else(Instant::now, |renewed| {
                let stop_at = SystemTime::from(renewed.0) + duration.saturating_sub(timing.margin);
                let left = stop_at
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO);
                Instant::now() + left
            });
            Reading::Held { until }
        }
        Some(holder) => Reading::Other { holder },
        None => Reading::Free,
    })
}

/// The leadership loop: `signal` is the lease manager's view (true: this
/// replica holds the lease), `probe` reads the Lease back (`None` when the
/// read failed). Runs `work` while both agree and the lease's renew
/// deadline has not passed; see the module docs. Returns `Ok` when
/// `shutdown` turned true while standing by or when `work` returned, and
/// `Err` when the signal ended (the work is stopped first).
pub async fn supervise<W, F, P, R>(
    mut signal: watch::Receiver<bool>,
    mut probe: P,
    timing: LeaseTiming,
    mut shutdown: watch::Receiver<bool>,
    mut on_change: impl FnMut(bool),
    mut work: W,
) -> Result<(), SignalEnded>
where
    W: FnMut() -> F,
    F: Future<Output = ()>,
    P: FnMut() -> R,
    R: Future<Output = Option<Reading>>,
{
    on_change(false);
    loop {
        let until = tokio::select! {
            confirmed = wait_for_lease(&mut signal, &mut probe, timing) => confirmed?,
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
        };
        info!("acquired the leader lease: reconciling");
        on_change(true);
        let lost = tokio::select! {
            () = work() => None,
            loss = keep_lease(&mut signal, &mut probe, timing, until) => Some(loss),
        };
        on_change(false);
        match lost {
            None => return Ok(()),
            Some(Loss::SignalEnded) => {
                warn!("the lease task ended: stopped reconciling");
                return Err(SignalEnded);
            }
            Some(Loss::Reported) => {
                warn!("lost the leader lease to another replica: stopped reconciling")
            }
            Some(Loss::Taken(holder)) => warn!(
                holder = holder.as_deref().unwrap_or("nobody"),
                "the leader lease names another holder: stopped reconciling"
            ),
            Some(Loss::Expired) => warn!(
                lease_duration = ?timing.duration,
                "could not confirm a renewal of the leader lease before it would expire: stopped reconciling (a standby may take over)"
            ),
        }
    }
}

/// Waits until the manager says this replica leads and a read confirms it;
/// returns the renew deadline.
async fn wait_for_lease<P, R>(
    signal: &mut watch::Receiver<bool>,
    probe: &mut P,
    timing: LeaseTiming,
) -> Result<Instant, SignalEnded>
where
    P: FnMut() -> R,
    R: Future<Output = Option<Reading>>,
{
    loop {
        let says_leading = *signal.borrow_and_update();
        if says_leading {
            if let Some(Reading::Held { until }) = probe().await
                && until > Instant::now()
            {
                return Ok(until);
            }
            // Not confirmed yet (a stale belief, or a renewal still to come):
            // read again shortly, or follow the manager.
            tokio::select! {
                changed = signal.changed() => changed.map_err(|_| SignalEnded)?,
                () = sleep(timing.poll) => {}
            }
        } else {
            signal.changed().await.map_err(|_| SignalEnded)?;
        }
    }
}

/// While leading: follows the manager and reads the Lease every `poll`,
/// moving the deadline with each confirmed renewal. Returns why leadership
/// ended.
async fn keep_lease<P, R>(
    signal: &mut watch::Receiver<bool>,
    probe: &mut P,
    timing: LeaseTiming,
    mut until: Instant,
) -> Loss
where
    P: FnMut() -> R,
    R: Future<Output = Option<Reading>>,
{
    let mut next_read = Instant::now() + timing.poll;
    loop {
        tokio::select! {
            changed = signal.changed() => {
                if changed.is_err() {
                    return Loss::SignalEnded;
                }
                if !*signal.borrow_and_update() {
                    return Loss::Reported;
                }
            }
            () = sleep_until(until) => return Loss::Expired,
            () = sleep_until(next_read) => {
                let reading = tokio::select! {
                    reading = probe() => reading,
                    () = sleep_until(until) => return Loss::Expired,
                };
                match reading {
                    Some(Reading::Held { until: renewed }) => until = renewed,
                    Some(Reading::Other { holder }) => return Loss::Taken(Some(holder)),
                    Some(Reading::Free) => return Loss::Taken(None),
                    // A failed read: the deadline stands.
                    None => {}
                }
                next_read = Instant::now() + timing.poll;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_renews_and_checks_well_before_it_gives_up() {
        for seconds in [3, 4, 15, 60] {
            let t = LeaseTiming::for_duration(Duration::from_secs(seconds));
            // A renewal happens when `renew_before` is left; the leader sees
            // it within one poll and must do so before its margin.
            let seen_by = t.duration - t.renew_before + t.poll;
            assert!(
                seen_by < t.duration - t.margin,
                "{seconds}s: renewal seen after {seen_by:?}, gives up at {:?}",
                t.duration - t.margin
            );
            assert!(t.renew_before < t.duration);
        }
        assert_eq!(
            LeaseTiming::for_duration(Duration::from_secs(1)).duration,
            Duration::from_secs(3)
        );
    }
}
