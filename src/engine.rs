//! One reconcile of one `ActivationCode`: resolve the connection, list the
//! codes, settle earlier resets, plan, apply (or only report), and record
//! intents and status. The engine knows nothing of where resources and
//! statuses are kept: the cluster and the file side both drive it through
//! a [`Host`].

mod apply;
pub mod callers;
pub mod conditions;
pub(crate) mod connect;
pub mod count_calls;
pub mod events;
pub mod host;
pub mod limits;
pub mod outcome;
pub mod panicked;
mod run;
mod sync;
pub mod teardown;
pub mod verdict;

use crate::crd::{ActivationCode, ActivationCodeSpec, ActivationCodeStatus};
use crate::fingerprint::FingerprintKey;
use crate::metastudio::breaker::CredentialsId;
use crate::metastudio::listing_budget::ListingHold;
use crate::metastudio::{ActiveCode, Connection, Listing, MetaStudioClient, Transport};
use crate::plan::{self, Action};
use crate::tenancy::Grant;
use callers::{Caller, Callers};
use conditions::reason;
use host::Host;
use jiff::Timestamp;
use kube::ResourceExt;
use run::Run;
use std::sync::Arc;
use std::time::Duration;

pub use crate::tenancy::OperatorDefaults;

/// Whether remote changes may be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As the spec says: Enforce or Observe.
    Normal,
    /// Plan only: no remote write, whatever the spec says.
    DryRun,
}

/// When to look at the resource again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Done: check for drift after this long.
    SyncAfter(Duration),
    /// Nothing to do until the resource changes (invalid spec, suspended).
    AwaitChange,
    /// A fault: try again with backoff, not sooner than `at_least`.
    Retry { at_least: Option<Duration> },
    /// The stored resource changed since it was read (another reconciler,
    /// or an edit), so its status was not written: read it again and
    /// reconcile from the fresh state now.
    Replan,
}

/// How one planned action went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionOutcome {
    Done {
        request_id: Option<String>,
        /// The code a create made (the answer names it).
        created: Option<String>,
    },
    /// Not applied (or applied and confirmed not to be, for a reset).
    Failed { error: String, rate_limited: bool },
    /// The answer was lost and the remote state could not be read: the next
    /// reconcile settles it from the recorded intent.
    Unconfirmed { error: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionResult {
    pub action: Action,
    pub outcome: ActionOutcome,
}

/// What one reconcile found and did.
#[derive(Debug, Clone)]
pub struct ReconcileReport {
    /// The status written (shared with the host that stored it).
    pub status: Arc<ActivationCodeStatus>,
    /// The `Ready` condition's reason.
    pub reason: &'static str,
    /// Ready and Synced.
    pub converged: bool,
    /// Everything the planner asked for (applied or not).
    pub planned: Vec<Action>,
    /// What was attempted, in Enforce.
    pub applied: Vec<ActionResult>,
    pub next: Next,
}

pub struct Engine {
    transport: Arc<Transport>,
    defaults: OperatorDefaults,
    /// Codes of one resource changed at once.
    concurrency: usize,
    /// How long after a reset's answer was lost (or its call window
    /// ended) the server might still apply it: twice the request timeout.
    reset_grace: jiff::SignedDuration,
    /// Who each resource called as at its last reconcile (conflicts).
    callers: Callers,
}

/// What the steps before planning found: the client, the key of its
/// credentials, the remote codes, and the share of the listing budget the
/// codes hold (kept until they are dropped, at the end of the reconcile).
struct Prepared {
    client: MetaStudioClient,
    key: FingerprintKey,
    listing: Listing,
    hold: ListingHold,
}

impl Engine {
    pub fn new(transport: Arc<Transport>, defaults: OperatorDefaults) -> Self {
        let reset_grace = jiff::SignedDuration::try_from(transport.options().timeout * 2)
            .unwrap_or(jiff::SignedDuration::MAX);
        Self {
            transport,
            defaults,
            concurrency: 4,
            reset_grace,
            callers: Callers::default(),
        }
    }

    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// How long a reset in doubt (its answer lost, or its call window
    /// over) keeps its code from being reset again; another run's batch is
    /// first waited out for its call window ([`crate::plan::window`]).
    /// Default: twice the request timeout.
    pub fn with_reset_grace(mut self, grace: Duration) -> Self {
        self.reset_grace =
            jiff::SignedDuration::try_from(grace).unwrap_or(jiff::SignedDuration::MAX);
        self
    }

    pub fn transport(&self) -> &Arc<Transport> {
        &self.transport
    }

    /// Forgets who the resources not in `uids` called as (they are gone).
    pub fn forget_callers_except(&self, uids: &std::collections::HashSet<String>) {
        self.callers.retain(uids);
    }

    /// Reconciles `resource` with the status the host last stored for it
    /// ([`Host::current`]), against the other resources of its robot that
    /// the host holds ([`Host::same_robot`], for conflicts); `now` is the
    /// wall clock.
    pub async fn reconcile<H: Host>(
        &self,
        resource: &ActivationCode,
        host: &H,
        mode: Mode,
        now: Timestamp,
    ) -> ReconcileReport {
        let resource = &host.current(resource);
        let others = host.same_robot(resource);
        let mut run = Run::new(resource, host, mode, now);
        if let Some(note) = unknown_fields_note(&resource.spec) {
            run.event(true, reason::UNKNOWN_FIELD, "Sync", note).await;
        }
        let prepared = match self.prepare(&mut run, &others).await {
            Ok(prepared) => prepared,
            Err(report) => return *report,
        };
        let Prepared {
            client,
            key,
            listing,
            hold,
        } = prepared;
        let report = self.sync(&mut run, &client, &key, listing).await;
        drop(hold);
        report
    }

    /// Validation, suspension, credentials, connection, listing, conflicts:
    /// what is needed to plan, or the report of a reconcile that stops.
    async fn prepare<H: Host>(
        &self,
        run: &mut Run<'_, H>,
        others: &[ActivationCode],
    ) -> Result<Prepared, Box<ReconcileReport>> {
        let resource = run.resource;
        if let Err(stop) = admissible(run) {
            self.callers.record(resource, Caller::Nobody);
            return Err(stopped(run, teardown::blocked_if(run, stop)).await);
        }
        let (connection, grant) = match connect::connect(resource, run.host, &self.defaults).await {
            Ok(connected) => connected,
            Err(unconnected) => {
                let mut stop = unconnected.stop;
                if unconnected.lasting {
                    self.callers.record(resource, Caller::Nobody);
                    stop = teardown::blocked_if(run, stop);
                }
                return Err(stopped(run, stop).await);
            }
        };
        // Before the listing: a rival reconciled meanwhile sees it.
        let caller = Caller::Calls(CredentialsId::of(&connection));
        self.callers.record(resource, caller);
        if let Some(note) = connect::insecure_note(&connection, &grant) {
            run.event(true, reason::INSECURE_TRANSPORT, "Sync", note)
                .await;
        }
        let key = FingerprintKey::from_credentials(&connection.credentials);
        let client = self.transport.client(connection);
        let (listing, hold) = match client.listing(&resource.spec.robot_id).await {
            Ok(listed) => listed,
            Err(err) if err.is_auth_failure() && run.tearing_down() => {
                let at_least = err.retry_after();
                let stop = (
                    reason::CREDENTIALS_REJECTED,
                    err.to_string(),
                    Next::Retry { at_least },
                );
                return Err(stopped(run, teardown::blocked(resource, stop)).await);
            }
            Err(err) => return Err(Box::new(run.remote_failure(&err).await)),
        };
        let claim = self
            .claim(run, others, client.connection(), &grant, &listing.codes)
            .await;
        if let Err(stop) = claim {
            return Err(stopped(run, teardown::blocked_if(run, stop)).await);
        }
        Ok(Prepared {
            client,
            key,
            listing,
            hold,
        })
    }

    /// Whether this resource may manage the codes it selects: not more than
    /// one resource manages ([`limits`]), and no older resource calling as
    /// the same caller selects some of them ([`reason::CONFLICT`]).
    async fn claim<H: Host>(
        &self,
        run: &Run<'_, H>,
        others: &[ActivationCode],
        connection: &Connection,
        grant: &Grant,
        remote: &[ActiveCode],
    ) -> Result<(), connect::Stop> {
        let spec = &run.resource.spec;
        let next = Next::SyncAfter(spec.sync_interval());
        if let Some(message) = limits::too_many_selected(spec, remote) {
            return Err((reason::TOO_MANY_CODES, message, next));
        }
        if let Some(older) = self.rival(run, others, connection, grant, remote).await? {
            let message = format!(
                "ActivationCode {older} manages some of the same codes and is older; this resource changes nothing until they select different codes (spec.roomId or spec.activeCodeIds)"
            );
            return Err((reason::CONFLICT, message, next));
        }
        Ok(())
    }

    /// The oldest resource (`namespace/name`) older than this one that
    /// selects some of its codes and calls as the same caller (endpoint,
    /// project and credentials): it manages those codes, and this one
    /// changes nothing. Who a resource calls as is what its last reconcile
    /// recorded ([`callers`]); for one not reconciled yet, its Secret is
    /// read to tell ([`connect::same_caller`]).
    async fn rival<H: Host>(
        &self,
        run: &Run<'_, H>,
        others: &[ActivationCode],
        connection: &Connection,
        grant: &Grant,
        remote: &[ActiveCode],
    ) -> Result<Option<String>, connect::Stop> {
        let mine = Caller::Calls(CredentialsId::of(connection));
        for other in older_claimants(run.resource, others, remote) {
            let rival = match self.callers.of(other) {
                Some(caller) => caller == mine,
                None => {
                    connect::same_caller(other, run.host, &self.defaults, connection, grant).await?
                }
            };
            if rival {
                return Ok(Some(format!(
                    "{}/{}",
                    other.namespace().unwrap_or_default(),
                    other.name_any()
                )));
            }
        }
        Ok(None)
    }
}

/// The report of a reconcile that stops for `stop`.
async fn stopped<H: Host>(
    run: &mut Run<'_, H>,
    (why, message, next): connect::Stop,
) -> Box<ReconcileReport> {
    Box::new(run.stop(why, message, next).await)
}

/// Why the resource is not reconciled at all (an invalid spec, a changed
/// robot, deletion, suspension), or `Ok` after recording the robot its
/// status belongs to.
fn admissible<H: Host>(run: &mut Run<'_, H>) -> Result<(), connect::Stop> {
    let spec = &run.resource.spec;
    let problems = crate::validate::validate(spec);
    if !problems.is_empty() {
        let message = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err((reason::INVALID_SPEC, message, Next::AwaitChange));
    }
    if let Some(recorded) = changed_from(spec, &run.status) {
        let message = robot_changed(recorded, &spec.robot_id);
        return Err((reason::INVALID_SPEC, message, Next::AwaitChange));
    }
    run.status.robot_id = Some(spec.robot_id.clone());
    if let Some(message) = deleting(run) {
        return Err((reason::DELETING, message, Next::AwaitChange));
    }
    if spec.suspend {
        let message = "spec.suspend is true: no remote calls are made; set it to false to resume";
        return Err((reason::SUSPENDED, message.into(), Next::AwaitChange));
    }
    Ok(())
}

/// Why a resource that is being deleted is left alone, or `None` when it is
/// not being deleted, or is torn down (its own finalizer holds it: the
/// sync deletes the codes it created, see [`teardown`]). Its codes are not
/// touched and its export Secret is not rewritten: whoever holds the
/// finalizer decides what happens next, and the garbage collector deletes
/// the export Secret with the resource.
fn deleting<H: Host>(run: &Run<'_, H>) -> Option<String> {
    let resource = run.resource;
    resource.metadata.deletion_timestamp.as_ref()?;
    if run.tearing_down() {
        return None;
    }
    let finalizers = resource.finalizers().join(", ");
    Some(format!(
        "the resource is being deleted (waiting for finalizers: {finalizers}): no remote calls are made and the export Secret is left as it is"
    ))
}

/// The robot this status belongs to when `spec` names another, or `None`.
/// spec.robotId is immutable, but only API servers from Kubernetes 1.25
/// enforce that (a CEL rule); on older ones a changed robotId would apply
/// this resource's reset ledger and pending resets to another robot's
/// codes. A status of an operator before status.robotId names no robot:
/// the first reconcile records the spec's.
fn changed_from<'a>(
    spec: &ActivationCodeSpec,
    status: &'a ActivationCodeStatus,
) -> Option<&'a str> {
    status.robot_id.as_deref().filter(|r| *r != spec.robot_id)
}

/// Why nothing is done for a resource whose robotId was changed from
/// `recorded` to `wanted`, and the fix.
fn robot_changed(recorded: &str, wanted: &str) -> String {
    format!(
        "spec.robotId is immutable, but it was changed from {recorded:?} to {wanted:?} (an API server before Kubernetes 1.25 does not enforce the CRD's rule): the status, its reset ledger and pending resets belong to robot {recorded:?}, so no MetaStudio call is made and they are kept as they are; put spec.robotId back to {recorded:?}, or delete this ActivationCode and create a new one for {wanted:?}"
    )
}

/// The other resources older than `resource` that select one of its codes,
/// oldest first (creation time, then namespace/name): those whose claim
/// comes first, if they call as the same caller. One whose robotId was
/// changed claims nothing (it is stopped, as a server with CEL would have
/// refused the change).
fn older_claimants<'a>(
    resource: &ActivationCode,
    others: &'a [ActivationCode],
    remote: &[ActiveCode],
) -> Vec<&'a ActivationCode> {
    let age = |r: &ActivationCode| {
        (
            r.metadata.creation_timestamp.as_ref().map(|t| t.0),
            r.namespace().unwrap_or_default(),
            r.name_any(),
        )
    };
    let mine: Vec<&str> = plan::select(&resource.spec, remote)
        .iter()
        .map(|c| c.active_code_id.as_str())
        .collect();
    let my_age = age(resource);
    let mut claimants: Vec<&ActivationCode> = others
        .iter()
        .filter(|o| o.spec.robot_id == resource.spec.robot_id && !o.spec.suspend)
        // Stopped, its status another robot's: it claims nothing here.
        .filter(|o| {
            o.status
                .as_ref()
                .is_none_or(|status| changed_from(&o.spec, status).is_none())
        })
        .filter(|o| (o.namespace(), o.name_any()) != (resource.namespace(), resource.name_any()))
        .filter(|o| older(&age(o), &my_age))
        .filter(|o| {
            plan::select(&o.spec, remote)
                .iter()
                .any(|c| mine.contains(&c.active_code_id.as_str()))
        })
        .collect();
    claimants.sort_by_cached_key(|o| age(o));
    claimants
}

/// `a` was created before `b`; a missing creation time sorts last, and ties
/// fall back to namespace and name.
fn older(a: &(Option<Timestamp>, String, String), b: &(Option<Timestamp>, String, String)) -> bool {
    match (a.0, b.0) {
        (Some(x), Some(y)) if x != y => x < y,
        (Some(_), None) => true,
        (None, Some(_)) => false,
        _ => (&a.1, &a.2) < (&b.1, &b.2),
    }
}

/// The Warning Event's note for spec fields this operator does not know (a
/// newer CRD, or a rollback), if any: they are named, and ignored.
fn unknown_fields_note(spec: &ActivationCodeSpec) -> Option<String> {
    let fields = crate::crd::unknown_fields::paths(spec);
    let (is, ignored, it) = match fields.len() {
        0 => return None,
        1 => ("is", "it is", "it"),
        _ => ("are", "they are", "them"),
    };
    let names = fields
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "{names} {is} not known to this version of the operator (a newer CRD, or the operator was rolled back): {ignored} ignored; upgrade the operator to use {it}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_order_prefers_creation_time_then_name() {
        let t = |s: &str| Some(s.parse::<Timestamp>().unwrap());
        let a = (t("2026-01-01T00:00:00Z"), "ns".to_owned(), "b".to_owned());
        let b = (t("2026-02-01T00:00:00Z"), "ns".to_owned(), "a".to_owned());
        assert!(older(&a, &b) && !older(&b, &a));
        let c = (None, "ns".to_owned(), "a".to_owned());
        let d = (None, "ns".to_owned(), "b".to_owned());
        assert!(older(&c, &d) && !older(&d, &c));
        assert!(older(&a, &c));
    }

    #[test]
    fn unknown_fields_are_named_in_one_note() {
        let spec = |json| serde_json::from_value::<ActivationCodeSpec>(json).unwrap();
        let known = spec(serde_json::json!({"robotId": "r", "validPeriod": 1}));
        assert_eq!(unknown_fields_note(&known), None);
        let one =
            spec(serde_json::json!({"robotId": "r", "validPeriod": 1, "reset": {"batches": 1}}));
        assert_eq!(
            unknown_fields_note(&one).unwrap(),
            "spec.reset.batches is not known to this version of the operator (a newer CRD, or the operator was rolled back): it is ignored; upgrade the operator to use it"
        );
        let two = spec(
            serde_json::json!({"robotId": "r", "validPeriod": 1, "a": 1, "exportSecretRef": {"name": "n", "b": 2}}),
        );
        let note = unknown_fields_note(&two).unwrap();
        assert!(
            note.starts_with("spec.a, spec.exportSecretRef.b are not known"),
            "{note}"
        );
        assert!(
            note.contains("they are ignored; upgrade the operator to use them"),
            "{note}"
        );
    }
}
