//! One reconcile of one `ActivationCode`: resolve the connection, list the
//! codes, settle earlier resets, plan, apply (or only report), and record
//! intents and status. The engine knows nothing of where resources and
//! statuses are kept: the cluster and the file side both drive it through
//! a [`Host`].

pub mod conditions;
pub(crate) mod connect;
pub mod events;
pub mod host;

use crate::crd::{
    ActivationCode, ActivationCodeSpec, ActivationCodeStatus, CodeStatus, LastReset,
    ManagementPolicy, ResetIntent,
};
use crate::fingerprint::FingerprintKey;
use crate::metastudio::{ActiveCode, ApiError, ApiErrorKind, MetaStudioClient, Transport};
use crate::plan::{self, Action, CompletedReset};
use conditions::{READY, SYNCED, reason};
use futures::StreamExt;
use host::{EngineEvent, Host};
use jiff::Timestamp;
use kube::ResourceExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

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
    },
    /// Not applied (or applied and confirmed not to be, for a reset).
    Failed {
        error: String,
        rate_limited: bool,
    },
    /// The answer was lost and the remote state could not be read: the next
    /// reconcile settles it from the recorded intent.
    Unconfirmed {
        error: String,
    },
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
    /// How long after a reset's answer was lost the server might still
    /// apply it: twice the request timeout.
    reset_grace: jiff::SignedDuration,
}

/// The result of the steps before planning: either a client and the remote
/// codes, or a finished report.
type Prepared = Result<(MetaStudioClient, FingerprintKey, Vec<ActiveCode>), Box<ReconcileReport>>;

impl Engine {
    pub fn new(transport: Arc<Transport>, defaults: OperatorDefaults) -> Self {
        let reset_grace = jiff::SignedDuration::try_from(transport.options().timeout * 2)
            .unwrap_or(jiff::SignedDuration::MAX);
        Self {
            transport,
            defaults,
            concurrency: 4,
            reset_grace,
        }
    }

    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// How long a reset in doubt (its answer lost, or its run interrupted)
    /// keeps its code from being reset again. Default: twice the request
    /// timeout.
    pub fn with_reset_grace(mut self, grace: Duration) -> Self {
        self.reset_grace =
            jiff::SignedDuration::try_from(grace).unwrap_or(jiff::SignedDuration::MAX);
        self
    }

    pub fn transport(&self) -> &Arc<Transport> {
        &self.transport
    }

    /// Reconciles `resource`. `others` are the other ActivationCodes known
    /// to the host (for conflicts); `now` is the wall clock.
    pub async fn reconcile<H: Host>(
        &self,
        resource: &ActivationCode,
        others: &[ActivationCode],
        host: &H,
        mode: Mode,
        now: Timestamp,
    ) -> ReconcileReport {
        let mut run = Run {
            resource,
            host,
            mode,
            generation: resource.metadata.generation,
            status: resource.status.clone().unwrap_or_default(),
            now,
        };
        run.status.observed_generation = run.generation;
        if let Some(note) = unknown_fields_note(&resource.spec) {
            run.event(true, reason::UNKNOWN_FIELD, "Sync", note).await;
        }
        let (client, key, remote) = match self.prepare(&mut run, others).await {
            Ok(prepared) => prepared,
            Err(report) => return *report,
        };
        self.sync(&mut run, &client, &key, remote, mode).await
    }

    /// Validation, suspension, credentials, connection, listing, conflicts.
    async fn prepare<H: Host>(&self, run: &mut Run<'_, H>, others: &[ActivationCode]) -> Prepared {
        let spec = &run.resource.spec;
        let problems = crate::validate::validate(spec);
        if !problems.is_empty() {
            let message = problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            return Err(Box::new(
                run.stop(reason::INVALID_SPEC, message, Next::AwaitChange)
                    .await,
            ));
        }
        if let Some(message) = deleting(run.resource) {
            return Err(Box::new(
                run.stop(reason::DELETING, message, Next::AwaitChange).await,
            ));
        }
        if spec.suspend {
            return Err(Box::new(
                run.stop(
                    reason::SUSPENDED,
                    "spec.suspend is true: no remote calls are made; set it to false to resume"
                        .into(),
                    Next::AwaitChange,
                )
                .await,
            ));
        }
        let (connection, grant) =
            match connect::connect(run.resource, run.host, &self.defaults).await {
                Ok(connected) => connected,
                Err((why, message, next)) => {
                    return Err(Box::new(run.stop(why, message, next).await));
                }
            };
        if let Some(note) = connect::insecure_note(&connection, &grant) {
            run.event(true, reason::INSECURE_TRANSPORT, "Sync", note)
                .await;
        }
        let key = FingerprintKey::from_credentials(&connection.credentials);
        let client = self.transport.client(connection);
        let remote = match client.list_all(&spec.robot_id, None).await {
            Ok(remote) => remote,
            Err(err) => return Err(Box::new(run.remote_failure(&err).await)),
        };
        let rivals: Vec<ActivationCode> = others
            .iter()
            .filter(|o| o.spec.robot_id == spec.robot_id)
            .filter(|o| connect::same_target(o, run.host, &self.defaults, client.connection()))
            .cloned()
            .collect();
        if let Some(older) = conflicting(run.resource, &rivals, &remote) {
            let message = format!(
                "ActivationCode {older} manages some of the same codes and is older; this resource changes nothing until they select different codes (spec.roomId or spec.activeCodeIds)"
            );
            let next = Next::SyncAfter(spec.sync_interval());
            return Err(Box::new(run.stop(reason::CONFLICT, message, next).await));
        }
        Ok((client, key, remote))
    }

    /// Settle, plan, apply or report, export, write status.
    async fn sync<H: Host>(
        &self,
        run: &mut Run<'_, H>,
        client: &MetaStudioClient,
        key: &FingerprintKey,
        remote: Vec<ActiveCode>,
        mode: Mode,
    ) -> ReconcileReport {
        let spec = &run.resource.spec;
        let settled = plan::settle_intents(
            &run.status.pending_resets,
            &remote,
            |intent, code| key.value_changed(&intent.previous_fingerprint, code),
            run.now,
            self.reset_grace,
        );
        for intent in &settled.abandoned {
            info!(code = %intent.code_id, "a reset recorded earlier did not happen (or its code is gone)");
        }
        let waiting = settled.waiting;
        run.status.pending_resets = waiting.clone();
        let mut last_resets: HashMap<String, LastReset> = run
            .status
            .codes
            .iter()
            .filter_map(|c| c.last_reset.clone().map(|r| (c.id.clone(), r)))
            .collect();
        for done in &settled.completed {
            info!(code = %done.code_id, "a reset recorded before an interruption did happen");
            record_reset(&mut last_resets, done);
        }
        if let Some(event) = events::of_confirmed(&settled.completed) {
            run.publish(event).await;
        }
        run.status.codes = code_statuses(spec, &remote, &last_resets);
        run.status.reset_token =
            plan::token_rollout(spec, run.status.reset_token.as_ref(), run.now);
        let planned = plan::plan(spec, &run.status, &remote, run.now);
        let enforce = spec.management_policy == ManagementPolicy::Enforce && mode == Mode::Normal;

        let mut codes: BTreeMap<String, ActiveCode> = plan::select(spec, &remote)
            .into_iter()
            .map(|c| (c.active_code_id.clone(), c.clone()))
            .collect();
        let mut applied = Vec::new();
        let mut unconfirmed = Vec::new();
        if enforce && !planned.is_empty() {
            let intents = intents_for(&planned, &codes, key, run.now);
            if !intents.is_empty() {
                run.status.pending_resets = waiting.iter().chain(&intents).cloned().collect();
                run.resetting(intents.len());
                let recorded = Arc::new(run.status.clone());
                if let Err(err) = run.host.save_status(run.resource, &recorded).await {
                    if err.stale {
                        // Someone else may be resetting these codes: start
                        // nothing, and plan again from what they recorded.
                        return run.replan(planned);
                    }
                    // Without the intents on record, no reset may start.
                    warn!(error = %err, "cannot record reset intents");
                    // Resets in doubt from before stay on record.
                    run.status.pending_resets = waiting;
                    let message =
                        format!("cannot record reset intents, so no reset was started: {err}");
                    return run
                        .stop(
                            reason::STATUS_NOT_SAVED,
                            message,
                            Next::Retry { at_least: None },
                        )
                        .await;
                }
            }
            let results = self.apply(client, spec, &planned, &codes).await;
            for (result, code) in results {
                if let Some(code) = code {
                    codes.insert(code.active_code_id.clone(), code);
                }
                if let (Action::Reset { .. }, ActionOutcome::Done { .. }) =
                    (&result.action, &result.outcome)
                {
                    let time = codes[result.action.code_id()].update_time;
                    record_reset(
                        &mut last_resets,
                        &CompletedReset {
                            code_id: result.action.code_id().to_owned(),
                            token: result.action.token().map(str::to_owned),
                            time,
                        },
                    );
                }
                if matches!(result.outcome, ActionOutcome::Unconfirmed { .. })
                    && let Some(intent) = intents
                        .iter()
                        .find(|i| i.code_id == result.action.code_id())
                {
                    unconfirmed.push(ResetIntent {
                        unanswered_since: Some(Timestamp::now()),
                        ..intent.clone()
                    });
                }
                applied.push(result);
            }
            self.announce(run, &applied).await;
        }

        let current: Vec<ActiveCode> = codes.into_values().collect();
        run.status.pending_resets = waiting.iter().chain(&unconfirmed).cloned().collect();
        run.status.codes = code_statuses(spec, &current, &last_resets);
        run.status.managed_codes = run.status.codes.len() as u32;
        run.status.last_sync_time = Some(run.now);
        let failed: Vec<&ActionResult> = applied
            .iter()
            .filter(|r| !matches!(r.outcome, ActionOutcome::Done { .. }))
            .collect();
        run.status.drift = if enforce {
            failed.iter().map(|r| r.action.as_drift()).collect()
        } else {
            planned.iter().map(Action::as_drift).collect()
        };
        run.status.drift.extend(waiting.iter().map(waiting_drift));

        let export = match (&spec.export_secret_ref, mode) {
            (Some(reference), Mode::Normal) => run
                .host
                .export(run.resource, &reference.name, &current)
                .await
                .err()
                .map(|err| {
                    format!(
                        "cannot write the code values to Secret {}: {err}",
                        reference.name
                    )
                }),
            _ => None,
        };

        if let Some(message) = &export {
            run.event(true, reason::EXPORT_FAILED, "Export", message.clone())
                .await;
        }
        let interval = spec.sync_interval();
        let (ready_reason, message, next) = if let Some(message) = export {
            (
                reason::EXPORT_FAILED,
                message,
                Next::Retry { at_least: None },
            )
        } else if !failed.is_empty() {
            let rate_limited = failed.iter().any(|r| {
                matches!(
                    r.outcome,
                    ActionOutcome::Failed {
                        rate_limited: true,
                        ..
                    }
                )
            });
            let why = if failed
                .iter()
                .all(|r| matches!(r.outcome, ActionOutcome::Unconfirmed { .. }))
            {
                reason::RESET_UNCONFIRMED
            } else if rate_limited {
                reason::RATE_LIMITED
            } else {
                reason::REMOTE_ERROR
            };
            let first = failed
                .iter()
                .map(|r| describe_failure(r))
                .next()
                .unwrap_or_default();
            (
                why,
                format!(
                    "{} of {} changes failed; first: {first}",
                    failed.len(),
                    applied.len()
                ),
                Next::Retry { at_least: None },
            )
        } else if !waiting.is_empty() {
            // Checked again once the server can no longer apply them late.
            let settles_in = waiting
                .iter()
                .filter_map(|i| i.unanswered_since)
                .map(|since| self.reset_grace - run.now.duration_since(since))
                .min()
                .and_then(|left| Duration::try_from(left).ok());
            (
                reason::RESET_UNCONFIRMED,
                format!(
                    "{} reset(s) lost their answer and show no effect yet; the codes are checked again before any new reset",
                    waiting.len()
                ),
                Next::Retry {
                    at_least: settles_in,
                },
            )
        } else if !enforce {
            let why = if mode == Mode::DryRun {
                "DryRun"
            } else {
                reason::OBSERVING
            };
            (
                why,
                format!(
                    "{} code(s) observed, {} difference(s) from the spec (see status.drift); nothing was changed",
                    run.status.managed_codes,
                    planned.len()
                ),
                Next::SyncAfter(interval),
            )
        } else {
            (
                reason::SYNCED,
                format!(
                    "{} code(s) match the spec ({} change(s) made)",
                    run.status.managed_codes,
                    applied.len()
                ),
                Next::SyncAfter(interval),
            )
        };
        let ready =
            failed.is_empty() && waiting.is_empty() && ready_reason != reason::EXPORT_FAILED;
        let in_sync = run.status.drift.is_empty();
        run.set(READY, Some(ready), ready_reason, message);
        let (synced_reason, synced_message) = if in_sync {
            (
                reason::IN_SYNC,
                "the remote codes match the spec".to_owned(),
            )
        } else {
            (
                reason::DRIFT_DETECTED,
                format!(
                    "{} difference(s) remain (see status.drift)",
                    run.status.drift.len()
                ),
            )
        };
        run.set(SYNCED, Some(in_sync), synced_reason, synced_message);
        if !in_sync && !enforce && mode == Mode::Normal {
            run.event(false, reason::DRIFT_DETECTED, "Observe", format!(
                "{} difference(s) from the spec; managementPolicy is Observe, so nothing was changed",
                run.status.drift.len()
            ))
            .await;
        }
        // Observe asked only for a report, so an observed resource has done
        // what it was asked; a dry run asks whether anything is left to do.
        let converged = ready && (in_sync || (!enforce && mode == Mode::Normal));
        run.finish(ready_reason, converged, planned, applied, next)
            .await
    }

    /// Applies the actions, codes in parallel (bounded), each code's
    /// actions in order. Returns each result with the code's new state.
    async fn apply(
        &self,
        client: &MetaStudioClient,
        spec: &ActivationCodeSpec,
        planned: &[Action],
        codes: &BTreeMap<String, ActiveCode>,
    ) -> Vec<(ActionResult, Option<ActiveCode>)> {
        let mut by_code: Vec<(String, Vec<Action>)> = Vec::new();
        for action in planned {
            match by_code.iter_mut().find(|(id, _)| id == action.code_id()) {
                Some((_, list)) => list.push(action.clone()),
                None => by_code.push((action.code_id().to_owned(), vec![action.clone()])),
            }
        }
        let clean = spec.reset.as_ref().is_none_or(|r| r.clean_auth_credential);
        let batches: Vec<_> = by_code
            .into_iter()
            .map(|(id, actions)| apply_code(client, &codes[&id], actions, clean))
            .collect();
        futures::stream::iter(batches)
            .buffer_unordered(self.concurrency)
            .flat_map(futures::stream::iter)
            .collect()
            .await
    }

    /// Publishes the events of this sync's changes: one per kind.
    async fn announce<H: Host>(&self, run: &Run<'_, H>, results: &[ActionResult]) {
        for event in events::of_results(results) {
            run.publish(event).await;
        }
    }
}

/// One code's actions, in order.
async fn apply_code(
    client: &MetaStudioClient,
    before: &ActiveCode,
    actions: Vec<Action>,
    clean_auth_credential: bool,
) -> Vec<(ActionResult, Option<ActiveCode>)> {
    let mut out = Vec::with_capacity(actions.len());
    for action in &actions {
        out.push(apply_one(client, action, before, clean_auth_credential).await);
    }
    out
}

/// One action against the API, with the code's state after it.
async fn apply_one(
    client: &MetaStudioClient,
    action: &Action,
    before: &ActiveCode,
    clean_auth_credential: bool,
) -> (ActionResult, Option<ActiveCode>) {
    let id = &before.active_code_id;
    let done = |action: &Action, reply: crate::metastudio::Reply<ActiveCode>| {
        (
            ActionResult {
                action: action.clone(),
                outcome: ActionOutcome::Done {
                    request_id: reply.request_id,
                },
            },
            Some(reply.value),
        )
    };
    let failed = |action: &Action, err: &ApiError| {
        (
            ActionResult {
                action: action.clone(),
                outcome: ActionOutcome::Failed {
                    error: err.to_string(),
                    rate_limited: err.is_rate_limited(),
                },
            },
            None,
        )
    };
    match action {
        Action::Update { to, .. } => match client.update(id, *to).await {
            Ok(reply) => done(action, reply),
            Err(err) => failed(action, &err),
        },
        Action::Reset { .. } => match client.reset(id, clean_auth_credential).await {
            Ok(reply) => done(action, reply),
            Err(err) if surely_not_applied(&err) => failed(action, &err),
            Err(err) => {
                // The answer is missing: only the remote value can tell.
                debug!(code = %id, error = %err, "reset outcome unknown; reading the code");
                match client.show(id).await {
                    Ok(reply) if reply.value.active_code != before.active_code => {
                        done(action, reply)
                    }
                    // The server may still apply it: keep the intent.
                    Ok(_) if err.may_have_applied() => (
                        ActionResult {
                            action: action.clone(),
                            outcome: ActionOutcome::Unconfirmed {
                                error: format!("{err}; the code shows no reset yet"),
                            },
                        },
                        None,
                    ),
                    Ok(_) => failed(action, &err),
                    Err(show_err) => (
                        ActionResult {
                            action: action.clone(),
                            outcome: ActionOutcome::Unconfirmed {
                                error: format!("{err}; reading the code failed too: {show_err}"),
                            },
                        },
                        None,
                    ),
                }
            }
        },
    }
}

/// Why a resource that is being deleted is left alone, or `None` when it is
/// not being deleted. Its codes are not touched and its export Secret is
/// not rewritten: whoever holds the finalizer decides what happens next,
/// and the garbage collector deletes the export Secret with the resource.
fn deleting(resource: &ActivationCode) -> Option<String> {
    resource.metadata.deletion_timestamp.as_ref()?;
    let finalizers = resource.finalizers().join(", ");
    Some(format!(
        "the resource is being deleted (waiting for finalizers: {finalizers}): no remote calls are made and the export Secret is left as it is"
    ))
}

/// A reset still in doubt, as drift.
fn waiting_drift(intent: &ResetIntent) -> crate::crd::Drift {
    crate::crd::Drift {
        code_id: intent.code_id.clone(),
        field: "reset".into(),
        observed: "a reset whose answer was lost, not confirmed yet".into(),
        desired: intent.token.as_deref().map_or_else(
            || "reset before expiry".to_owned(),
            |t| format!("reset for token {t:?}"),
        ),
    }
}

/// A reset that failed this way changed nothing: the server refused it
/// (4xx, including an exhausted 429) or it never arrived.
fn surely_not_applied(err: &ApiError) -> bool {
    matches!(err.status(), Some(400..=499))
        || matches!(
            err.kind,
            ApiErrorKind::Connect { .. } | ApiErrorKind::InvalidRequest(_)
        )
}

fn describe_failure(result: &ActionResult) -> String {
    match &result.outcome {
        ActionOutcome::Failed { error, .. } | ActionOutcome::Unconfirmed { error } => {
            format!("code {}: {error}", result.action.code_id())
        }
        ActionOutcome::Done { .. } => String::new(),
    }
}

fn record_reset(last_resets: &mut HashMap<String, LastReset>, done: &CompletedReset) {
    let next = plan::next_last_reset(
        last_resets.get(&done.code_id),
        done.token.as_deref(),
        done.time,
    );
    last_resets.insert(done.code_id.clone(), next);
}

/// The intents to record before the resets of a plan.
fn intents_for(
    planned: &[Action],
    codes: &BTreeMap<String, ActiveCode>,
    key: &FingerprintKey,
    now: Timestamp,
) -> Vec<ResetIntent> {
    planned
        .iter()
        .filter(|a| matches!(a, Action::Reset { .. }))
        .map(|a| {
            let code = &codes[a.code_id()];
            ResetIntent {
                code_id: code.active_code_id.clone(),
                token: a.token().map(str::to_owned),
                previous_update_time: code.update_time,
                previous_fingerprint: key.fingerprint(code),
                recorded_at: now,
                unanswered_since: None,
            }
        })
        .collect()
}

/// Status entries of the selected codes.
fn code_statuses(
    spec: &ActivationCodeSpec,
    codes: &[ActiveCode],
    last_resets: &HashMap<String, LastReset>,
) -> Vec<CodeStatus> {
    plan::select(spec, codes)
        .into_iter()
        .map(|c| CodeStatus {
            id: c.active_code_id.clone(),
            room_id: c.room_id.clone(),
            valid_period: c.valid_period,
            expire_time: c.expire_time,
            update_time: c.update_time,
            last_reset: last_resets.get(&c.active_code_id).cloned(),
        })
        .collect()
}

/// The oldest other resource that selects one of this resource's codes, if
/// that resource is older (creation time, then namespace/name).
fn conflicting(
    resource: &ActivationCode,
    others: &[ActivationCode],
    remote: &[ActiveCode],
) -> Option<String> {
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
    others
        .iter()
        .filter(|o| o.spec.robot_id == resource.spec.robot_id && !o.spec.suspend)
        .filter(|o| (o.namespace(), o.name_any()) != (resource.namespace(), resource.name_any()))
        .filter(|o| older(&age(o), &my_age))
        .filter(|o| {
            plan::select(&o.spec, remote)
                .iter()
                .any(|c| mine.contains(&c.active_code_id.as_str()))
        })
        .min_by(|a, b| age(a).cmp(&age(b)))
        .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
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

/// The state of one reconcile in progress.
struct Run<'a, H> {
    resource: &'a ActivationCode,
    host: &'a H,
    mode: Mode,
    generation: Option<i64>,
    status: ActivationCodeStatus,
    now: Timestamp,
}

impl<H: Host> Run<'_, H> {
    fn set(&mut self, type_: &str, value: Option<bool>, why: &str, message: String) {
        conditions::set(
            &mut self.status.conditions,
            type_,
            value,
            why,
            message,
            self.generation,
            self.now,
        );
    }

    async fn event(&self, warning: bool, reason: &'static str, action: &'static str, note: String) {
        self.publish(EngineEvent {
            warning,
            reason,
            action,
            note,
        })
        .await;
    }

    /// Hands `event` to the host, its note within the Events API's limit:
    /// every event of the engine passes here.
    async fn publish(&self, mut event: EngineEvent) {
        event.note = events::clipped(&event.note, events::NOTE_LIMIT);
        self.host.event(self.resource, &event).await;
    }

    /// Ends early, before any remote change: Ready=False with `why`,
    /// Synced=Unknown, a warning event, the status saved (not in a dry
    /// run).
    async fn stop(&mut self, why: &'static str, message: String, next: Next) -> ReconcileReport {
        self.set(READY, Some(false), why, message.clone());
        self.set(
            SYNCED,
            None,
            why,
            "stopped before any change; see the Ready condition".into(),
        );
        if why != reason::SUSPENDED && why != reason::DELETING {
            self.event(true, why, "Sync", message).await;
        }
        self.finish(why, false, Vec::new(), Vec::new(), next).await
    }

    /// While the recorded resets are under way, the status says so: the
    /// generation is observed but not yet done, so neither kstatus nor
    /// `kubectl wait --for=condition=Ready` takes the previous Ready=True
    /// for this generation's.
    fn resetting(&mut self, count: usize) {
        let message = format!("resetting {count} code(s); their intents are recorded first");
        self.set(READY, Some(false), reason::RESETTING, message.clone());
        conditions::set_progress(
            &mut self.status.conditions,
            reason::RESETTING,
            &message,
            self.generation,
            self.now,
        );
    }

    /// Ends before any remote change and without writing status: the stored
    /// resource changed since it was read.
    fn replan(&mut self, planned: Vec<Action>) -> ReconcileReport {
        info!("the resource changed since it was read: no reset started; planning again");
        ReconcileReport {
            status: Arc::new(std::mem::take(&mut self.status)),
            reason: reason::RESOURCE_CHANGED,
            converged: false,
            planned,
            applied: Vec::new(),
            next: Next::Replan,
        }
    }

    /// A failed list: the reason says whether to fix credentials or wait.
    async fn remote_failure(&mut self, err: &ApiError) -> ReconcileReport {
        let (why, next) = if err.is_auth_failure() {
            // While the credentials pause, trying sooner is pointless.
            let at_least = err.retry_after();
            (reason::CREDENTIALS_REJECTED, Next::Retry { at_least })
        } else if err.is_rate_limited() {
            (
                reason::RATE_LIMITED,
                Next::Retry {
                    at_least: err.retry_after(),
                },
            )
        } else {
            (reason::REMOTE_ERROR, Next::Retry { at_least: None })
        };
        let hint = match why {
            reason::CREDENTIALS_REJECTED => "; check the access key, secret key and project id",
            reason::RATE_LIMITED => "; the operator backs off and tries again",
            _ => "",
        };
        self.stop(why, format!("{err}{hint}"), next).await
    }

    async fn finish(
        &mut self,
        why: &'static str,
        converged: bool,
        planned: Vec<Action>,
        applied: Vec<ActionResult>,
        next: Next,
    ) -> ReconcileReport {
        let mut next = next;
        let message = self
            .status
            .condition(READY)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        conditions::set_progress(
            &mut self.status.conditions,
            why,
            &message,
            self.generation,
            self.now,
        );
        // The run ends here: its status moves into the report.
        let status = Arc::new(std::mem::take(&mut self.status));
        if self.mode == Mode::Normal
            && let Err(err) = self.host.save_status(self.resource, &status).await
        {
            if err.stale {
                // What this run did is on record as intents or visible
                // remotely; a run from the fresh state settles it.
                info!("the resource changed while it was reconciled: reconciling it again");
                return ReconcileReport {
                    status,
                    reason: reason::RESOURCE_CHANGED,
                    converged: false,
                    planned,
                    applied,
                    next: Next::Replan,
                };
            }
            warn!(error = %err, "cannot save status");
            self.event(
                true,
                reason::STATUS_NOT_SAVED,
                "Sync",
                format!("cannot save the status: {err}"),
            )
            .await;
            next = Next::Retry { at_least: None };
        }
        ReconcileReport {
            status,
            reason: why,
            converged,
            planned,
            applied,
            next,
        }
    }
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
            spec(serde_json::json!({"robotId": "r", "validPeriod": 1, "reset": {"rollout": 1}}));
        assert_eq!(
            unknown_fields_note(&one).unwrap(),
            "spec.reset.rollout is not known to this version of the operator (a newer CRD, or the operator was rolled back): it is ignored; upgrade the operator to use it"
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
