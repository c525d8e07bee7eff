//! One sync of a resource whose codes were listed, as named phases:
//! settle (earlier resets, creates and deletes, and the ledger), plan,
//! then the deletes (spec.count), the per-code changes and the creates,
//! each per batch (at most [`MAX_INTENTS`] resets): record (intents first,
//! with the batch's call window) and apply within that window, what it
//! left unstarted going into the next batch; and report (status, export,
//! conditions). The decisions are `plan`'s and `verdict`'s; this file
//! sequences them and does the I/O.

mod count;

use super::apply::{self, Applied};
use super::conditions::{READY, SYNCED, reason};
use super::host::{Host, HostError};
use super::run::Run;
use super::verdict::{self, Facts};
use super::{ActionOutcome, ActionResult, Engine, Mode, Next, ReconcileReport, events};
use crate::crd::{ActivationCodeSpec, ManagementPolicy, ResetIntent};
use crate::fingerprint::FingerprintKey;
use crate::metastudio::metrics::ApiMetrics;
use crate::metastudio::{ActiveCode, Listing, MetaStudioClient, Operation};
use crate::plan::{self, Action, Ledger, Plan, batch};
use jiff::Timestamp;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{info, warn};

/// The most reset intents one status write records: the status stays
/// small however many codes a resource has, and a rotation of thousands of
/// codes proceeds batch after batch, each on record before it starts.
pub const MAX_INTENTS: usize = 200;

/// What a sync knows and has done so far.
pub(super) struct Sync<'s> {
    spec: &'s ActivationCodeSpec,
    /// The resource is being deleted with spec.deletionPolicy Delete: the
    /// sync deletes the codes it created, nothing else, and writes no
    /// export (see [`super::teardown`]).
    teardown: bool,
    key: &'s FingerprintKey,
    enforce: bool,
    complete: bool,
    ledger: Ledger,
    /// The selected codes as they are now.
    codes: BTreeMap<String, ActiveCode>,
    /// Earlier intents still in doubt: they hold Ready.
    waiting: Vec<ResetIntent>,
    /// Earlier intents whose code the listing lacked: kept on record.
    parked: Vec<ResetIntent>,
    plan: Plan,
    /// The intents of the batch being applied.
    recorded: Vec<ResetIntent>,
    /// Actions whose reset no batch could start: the last batch's window
    /// ran out before any reset of it started.
    not_started: Vec<Action>,
    /// Resets of this sync whose answer was lost.
    unconfirmed: Vec<ResetIntent>,
    /// Creates and deletes in doubt (earlier ones, or this sync's whose
    /// answer was lost): none is made while any is.
    waiting_count: count::Waiting,
    /// The creates or deletes of the batch being applied.
    recorded_count: Option<count::Recorded>,
    applied: Vec<ActionResult>,
}

impl Engine {
    /// Settle, plan, record and apply batch by batch, report.
    pub(super) async fn sync<H: Host>(
        &self,
        run: &mut Run<'_, H>,
        client: &MetaStudioClient,
        key: &FingerprintKey,
        listing: Listing,
    ) -> ReconcileReport {
        let metrics = self.transport.metrics();
        let mut sync = Sync::settle(run, key, listing, self.reset_grace, metrics).await;
        sync.make_plan(run);
        if sync.enforce {
            let actions = std::mem::take(&mut sync.plan.actions);
            if let Err(report) = self.enforce_all(run, &mut sync, client, &actions).await {
                return *report;
            }
            sync.plan.actions = actions;
        }
        self.report(run, sync).await
    }

    /// The deletes (spec.count), the per-code changes, then the creates.
    async fn enforce_all<H: Host>(
        &self,
        run: &mut Run<'_, H>,
        sync: &mut Sync<'_>,
        client: &MetaStudioClient,
        planned: &[Action],
    ) -> Result<(), Box<ReconcileReport>> {
        let of = |create: bool| -> Vec<Action> {
            planned
                .iter()
                .filter(|a| a.is_count() && matches!(a, Action::Create { .. }) == create)
                .cloned()
                .collect()
        };
        let per_code: Vec<Action> = planned.iter().filter(|a| !a.is_count()).cloned().collect();
        self.enforce_count(run, sync, client, &of(false), planned)
            .await?;
        self.enforce(run, sync, client, &per_code, planned).await?;
        self.enforce_count(run, sync, client, &of(true), planned)
            .await
    }

    /// Batch after batch: record the intents with the batch's call window,
    /// then apply within it. Resets the window left unstarted go into the
    /// next batch, whose intent write fails if anyone else wrote the status
    /// since: so no reset is sent outside a window this run holds on
    /// record, however slow the batch or long the process was paused.
    async fn enforce<H: Host>(
        &self,
        run: &mut Run<'_, H>,
        sync: &mut Sync<'_>,
        client: &MetaStudioClient,
        actions: &[Action],
        planned: &[Action],
    ) -> Result<(), Box<ReconcileReport>> {
        let mut queue = actions.to_vec();
        while !queue.is_empty() {
            let batch: Vec<Action> = queue.drain(..next_chunk(&queue, MAX_INTENTS)).collect();
            let window = self.call_window(client, &batch);
            let deadline = sync.record(run, &batch, planned, window).await?;
            let clean = clean_auth_credential(sync.spec);
            let round = apply::apply(
                client,
                &batch,
                &sync.codes,
                clean,
                self.concurrency,
                deadline,
            )
            .await;
            let left = round.not_started;
            let done = sync.absorb(round.applied);
            count::record_changes(self.transport.metrics(), done);
            give_back_places(run, done, &left);
            for event in events::of_results(done) {
                run.publish(event).await;
            }
            if done.iter().any(|r| r.action.is_reset()) {
                queue.splice(0..0, left);
            } else {
                // Not one reset started: the intent write itself outlasted
                // the window, or the process was paused right after it.
                sync.not_started.extend(left);
            }
        }
        Ok(())
    }

    /// The call window of `batch` (seconds): its resets at the tenant's
    /// write rate now, with the margins of [`plan::window::call_window`].
    fn call_window(&self, client: &MetaStudioClient, batch: &[Action]) -> u32 {
        let resets = batch.iter().filter(|a| a.is_reset()).count();
        let (_, writes_per_second) = client.current_rates();
        plan::window::call_window(resets, writes_per_second, self.transport.options().timeout)
    }

    /// Status, export and conditions, then the status write.
    async fn report<H: Host>(&self, run: &mut Run<'_, H>, sync: Sync<'_>) -> ReconcileReport {
        let current: Vec<ActiveCode> = sync.codes.values().cloned().collect();
        sync.store(run, &current);
        let export_error = if sync.teardown {
            None
        } else {
            sync.export(run, &current).await
        };
        let rotating = run
            .status
            .reset_token
            .as_ref()
            .filter(|_| sync.plan.deferred > 0);
        let decided = verdict::decide(&Facts {
            mode: run.mode,
            enforce: sync.enforce,
            export_error,
            applied: &sync.applied,
            not_started: sync.not_started.len(),
            complete: sync.complete,
            waiting: &sync.waiting,
            creates_waiting: &sync.waiting_count.creates,
            deletes_waiting: &sync.waiting_count.deletes,
            kept: sync.plan.kept.len(),
            reset_grace: self.reset_grace,
            managed: run.status.managed_codes,
            planned: sync.plan.actions.len(),
            rotating,
            sync_interval: sync.spec.sync_interval(),
            now: run.now,
        });
        let decided = if sync.teardown {
            super::teardown::verdict(decided, sync.applied.len())
        } else {
            decided
        };
        let in_sync = run.status.drift.is_empty() && rotating.is_none();
        // Codes over the count that spec.surplus Keep keeps are drift the
        // policy asked only to report, as Observe does.
        let kept = sync.plan.kept.len() as u32;
        let only_kept = kept > 0 && run.status.drift_count == kept && rotating.is_none();
        let ready = matches!(
            decided.reason,
            reason::SYNCED | reason::OBSERVING | reason::CODES_DELETED | "DryRun"
        );
        set_conditions(run, ready, in_sync, &decided);
        if !in_sync && !sync.enforce && run.mode == Mode::Normal {
            run.event(false, reason::DRIFT_DETECTED, "Observe", format!(
                "{} difference(s) from the spec; managementPolicy is Observe, so nothing was changed",
                run.status.drift_count
            ))
            .await;
        }
        // Observe asked only for a report, so an observed resource has done
        // what it was asked; a dry run asks whether anything is left to do.
        let converged =
            ready && (in_sync || only_kept || (!sync.enforce && run.mode == Mode::Normal));
        let (planned, applied) = (sync.plan.actions, sync.applied);
        run.finish(decided.reason, converged, planned, applied, decided.next)
            .await
    }
}

fn clean_auth_credential(spec: &ActivationCodeSpec) -> bool {
    spec.reset.as_ref().is_none_or(|r| r.clean_auth_credential)
}

/// Token resets that surely did not happen, and those not started, give
/// their batch places back.
fn give_back_places<H: Host>(run: &mut Run<'_, H>, results: &[ActionResult], left: &[Action]) {
    let failed = results
        .iter()
        .filter(|r| r.action.token().is_some() && matches!(r.outcome, ActionOutcome::Failed { .. }))
        .count();
    let left = left.iter().filter(|a| a.token().is_some()).count();
    if let Some(rollout) = run.status.reset_token.as_mut() {
        batch::count(rollout, -((failed + left) as i64));
    }
}

/// Ready and Synced from the verdict and the drift.
fn set_conditions<H: Host>(
    run: &mut Run<'_, H>,
    ready: bool,
    in_sync: bool,
    decided: &verdict::Verdict,
) {
    run.set(READY, Some(ready), decided.reason, decided.message.clone());
    let (why, message) = if in_sync {
        (
            reason::IN_SYNC,
            "the remote codes match the spec".to_owned(),
        )
    } else if decided.reason == reason::ROTATING {
        (reason::ROTATING, decided.message.clone())
    } else {
        (
            reason::DRIFT_DETECTED,
            format!(
                "{} difference(s) remain (see status.drift)",
                run.status.drift_count
            ),
        )
    };
    run.set(SYNCED, Some(in_sync), why, message);
}

impl<'s> Sync<'s> {
    /// Settles earlier intents and brings the ledger up to the listing.
    async fn settle<'r: 's, H: Host>(
        run: &mut Run<'r, H>,
        key: &'s FingerprintKey,
        listing: Listing,
        grace: jiff::SignedDuration,
        metrics: &ApiMetrics,
    ) -> Sync<'s> {
        let resource = run.resource;
        let spec = &resource.spec;
        let mut ledger = Ledger::of(&run.status);
        for id in ledger.observe(&listing, run.now) {
            info!(code = %id, "a code missing from complete listings for 7 days leaves the reset ledger");
        }
        let settled = plan::settle_intents(
            &run.status.pending_resets,
            &listing,
            |intent, code| key.value_changed(&intent.previous_fingerprint, code),
            run.now,
            grace,
        );
        for intent in &settled.abandoned {
            info!(code = %intent.code_id, "a reset recorded earlier did not happen (or its code is gone for good)");
        }
        for done in &settled.completed {
            info!(code = %done.code_id, "a reset recorded before an interruption did happen");
            if let Some(token) = &done.token {
                ledger.record(&done.code_id, token);
            }
        }
        if let Some(event) = events::of_confirmed(&settled.completed) {
            run.publish(event).await;
        }
        let confirmed = settled.completed.len() as u64;
        metrics.record_changes(Operation::ResetActiveCode, "confirmed", confirmed);
        run.status.pending_resets = settled.kept().cloned().collect();
        let waiting_count = count::settle(run, &mut ledger, &listing, grace, metrics).await;
        run.status.pending_creates = waiting_count.creates.clone();
        run.status.pending_deletes = waiting_count.deletes.clone();
        let enforce =
            spec.management_policy == ManagementPolicy::Enforce && run.mode == Mode::Normal;
        Sync {
            spec,
            teardown: run.tearing_down(),
            key,
            enforce,
            complete: listing.complete,
            ledger,
            codes: plan::select(spec, &listing.codes)
                .into_iter()
                .map(|c| (c.active_code_id.clone(), c.clone()))
                .collect(),
            waiting: settled.waiting,
            parked: settled.parked,
            plan: Plan::default(),
            recorded: Vec::new(),
            not_started: Vec::new(),
            unconfirmed: Vec::new(),
            waiting_count,
            recorded_count: None,
            applied: Vec::new(),
        }
    }

    fn make_plan<H: Host>(&mut self, run: &mut Run<'_, H>) {
        let codes: Vec<ActiveCode> = self.codes.values().cloned().collect();
        if self.teardown {
            self.plan = plan::teardown(self.spec, &self.ledger, &run.status, &codes, self.complete);
            return;
        }
        self.plan = plan::plan(
            self.spec,
            &self.ledger,
            &run.status,
            &codes,
            self.complete,
            run.now,
        );
        run.status.reset_token = self.plan.rollout.clone();
    }

    /// Records the intents of `chunk`'s resets, with their call window of
    /// `window` seconds and what the sync did so far, before any of them
    /// starts. Returns when the window ends (`None`: no reset, no window),
    /// counted from before the write, so it ends no later than anyone
    /// else's count from their first sight of the intents. `Err` ends the
    /// sync: nothing of `chunk` may start without its intents on record.
    async fn record<H: Host>(
        &mut self,
        run: &mut Run<'_, H>,
        chunk: &[Action],
        planned: &[Action],
        window: u32,
    ) -> Result<Option<Instant>, Box<ReconcileReport>> {
        self.recorded = intents_for(chunk, &self.codes, self.key, run.now, window);
        if self.recorded.is_empty() {
            return Ok(None);
        }
        let deadline = Instant::now() + Duration::from_secs(window.into());
        // The rollout's count moves only with intents on record.
        let rollout_before = run.status.reset_token.clone();
        let tokens = self.recorded.iter().filter(|i| i.token.is_some()).count();
        if let Some(rollout) = run.status.reset_token.as_mut() {
            batch::count(rollout, tokens as i64);
            plan::progress(
                self.spec,
                &self.ledger,
                rollout,
                &self.codes.values().cloned().collect::<Vec<_>>(),
            );
        }
        self.set_pending(run, &self.recorded);
        self.ledger.store(&mut run.status);
        run.resetting(self.recorded.len());
        let saved = run
            .host
            .save_status(run.resource, &Arc::new(run.status.clone()))
            .await;
        let Err(err) = saved else {
            return Ok(Some(deadline));
        };
        self.set_pending(run, &[]);
        run.status.reset_token = rollout_before;
        Err(intent_write_failed(run, err, planned, "reset").await)
    }

    /// Puts the intents on record into the status: those in doubt, and the
    /// batch being applied (`resets`, or the creates or deletes recorded).
    fn set_pending<H: Host>(&self, run: &mut Run<'_, H>, resets: &[ResetIntent]) {
        let recorded = self.recorded_count.as_ref();
        run.status.pending_resets = self
            .on_record()
            .into_iter()
            .chain(resets.iter().cloned())
            .collect();
        run.status.pending_creates = self
            .waiting_count
            .creates
            .iter()
            .chain(recorded.and_then(count::Recorded::creates))
            .cloned()
            .collect();
        run.status.pending_deletes = self
            .waiting_count
            .deletes
            .iter()
            .chain(recorded.and_then(count::Recorded::deletes))
            .cloned()
            .collect();
    }

    /// The intents on record besides the current batch's.
    fn on_record(&self) -> Vec<ResetIntent> {
        self.waiting
            .iter()
            .chain(&self.parked)
            .chain(&self.unconfirmed)
            .cloned()
            .collect()
    }

    /// Writes what the sync found and did into the status: the ledger, the
    /// intents still on record, the counts, the rollout's progress, drift.
    fn store<H: Host>(&self, run: &mut Run<'_, H>, current: &[ActiveCode]) {
        self.ledger.store(&mut run.status);
        self.set_pending(run, &[]);
        run.status.managed_codes = current.len() as u32;
        run.status.next_expire_time = current.iter().filter_map(|c| c.expire_time).min();
        run.status.last_sync_time = Some(run.now);
        if let Some(rollout) = run.status.reset_token.as_mut() {
            plan::progress(self.spec, &self.ledger, rollout, current);
        }
        let failed = self
            .applied
            .iter()
            .filter(|r| !matches!(r.outcome, ActionOutcome::Done { .. }))
            .map(|r| &r.action);
        let drift: Vec<_> = if self.enforce {
            failed
                .chain(&self.not_started)
                .map(Action::as_drift)
                .collect()
        } else {
            self.plan.actions.iter().map(Action::as_drift).collect()
        };
        let waiting = self.waiting.iter().map(waiting_drift);
        run.status
            .set_drift(drift.into_iter().chain(waiting).chain(self.count_drift()));
    }

    /// Writes the code values to the export Secret (not in a dry run, and
    /// not from an incomplete listing, which would drop the codes it
    /// missed); returns why it could not, after a Warning Event.
    async fn export<H: Host>(
        &self,
        run: &mut Run<'_, H>,
        current: &[ActiveCode],
    ) -> Option<String> {
        let reference = self.spec.export_secret_ref.as_ref()?;
        if run.mode != Mode::Normal || !self.complete {
            return None;
        }
        let err = run
            .host
            .export(run.resource, &reference.name, current)
            .await
            .err()?;
        let message = format!(
            "cannot write the code values to Secret {}: {err}",
            reference.name
        );
        run.event(true, reason::EXPORT_FAILED, "Export", message.clone())
            .await;
        Some(message)
    }

    /// Takes one batch's results in: the codes' new state, the ledger,
    /// intents whose answer was lost, places given back to the rollout.
    /// Returns the batch's results.
    fn absorb(&mut self, results: Vec<Applied>) -> &[ActionResult] {
        let first = self.applied.len();
        for (result, code) in results {
            if let Some(code) = code {
                self.codes.insert(code.active_code_id.clone(), code);
            }
            let id = result.action.code_id();
            match (&result.outcome, result.action.token()) {
                (ActionOutcome::Done { .. }, Some(token)) => self.ledger.record(id, token),
                (ActionOutcome::Unconfirmed { .. }, _) => {
                    if let Some(intent) = self.recorded.iter().find(|i| i.code_id == id) {
                        // Its call has ended: only the grace is left.
                        self.unconfirmed.push(ResetIntent {
                            unanswered_since: Some(Timestamp::now()),
                            call_window_seconds: None,
                            ..intent.clone()
                        });
                    }
                }
                _ => {}
            }
            self.applied.push(result);
        }
        &self.applied[first..]
    }
}

/// Ends a sync whose intent write failed (after the caller took the
/// intents back): nothing of the batch was started. When someone else wrote
/// the status since it was read, the sync plans again from what they
/// recorded; any other failure stops it (`StatusNotSaved`).
async fn intent_write_failed<H: Host>(
    run: &mut Run<'_, H>,
    err: HostError,
    planned: &[Action],
    what: &str,
) -> Box<ReconcileReport> {
    if err.stale {
        // Someone else may be changing these codes: start nothing, and plan
        // again from what they recorded.
        return Box::new(run.replan(planned.to_vec()));
    }
    warn!(error = %err, "cannot record {what} intents");
    let message = format!("cannot record {what} intents, so none was started: {err}");
    let next = Next::Retry { at_least: None };
    Box::new(run.stop(reason::STATUS_NOT_SAVED, message, next).await)
}

/// The length of the first batch of `actions`: at most `max_resets`
/// resets, never splitting one code's actions.
pub fn next_chunk(actions: &[Action], max_resets: usize) -> usize {
    let mut resets = 0;
    for (i, action) in actions.iter().enumerate() {
        let new_code = i > 0 && actions[i - 1].code_id() != action.code_id();
        if action.is_reset() && resets == max_resets && new_code {
            return i;
        }
        resets += usize::from(action.is_reset());
    }
    actions.len()
}

/// The intents to record before the resets of `actions`, with the batch's
/// call window.
fn intents_for(
    actions: &[Action],
    codes: &BTreeMap<String, ActiveCode>,
    key: &FingerprintKey,
    now: Timestamp,
    window: u32,
) -> Vec<ResetIntent> {
    actions
        .iter()
        .filter(|a| a.is_reset())
        .map(|a| {
            let code = &codes[a.code_id()];
            ResetIntent {
                code_id: code.active_code_id.clone(),
                token: a.token().map(str::to_owned),
                previous_update_time: code.update_time,
                previous_fingerprint: key.fingerprint(code),
                recorded_at: now,
                unanswered_since: None,
                call_window_seconds: Some(window),
            }
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ResetReason;

    fn reset(id: &str) -> Action {
        Action::Reset {
            code_id: id.into(),
            reason: ResetReason::Token("t".into()),
        }
    }

    fn update(id: &str) -> Action {
        Action::Update {
            code_id: id.into(),
            from: 1,
            to: 2,
        }
    }

    fn ids(chunk: &[Action]) -> Vec<&str> {
        chunk.iter().map(Action::code_id).collect()
    }

    /// Consecutive batches of `actions`, as the sync takes them.
    fn chunks(actions: &[Action], max_resets: usize) -> Vec<&[Action]> {
        let mut out = Vec::new();
        let mut rest = actions;
        while !rest.is_empty() {
            let (batch, after) = rest.split_at(next_chunk(rest, max_resets));
            out.push(batch);
            rest = after;
        }
        out
    }

    #[test]
    fn chunks_hold_at_most_the_resets_of_one_record_and_keep_a_codes_actions_together() {
        let actions = [
            reset("a"),
            update("a"),
            update("b"),
            reset("c"),
            reset("d"),
            update("d"),
            reset("e"),
        ];
        let got: Vec<Vec<&str>> = chunks(&actions, 2).into_iter().map(ids).collect();
        assert_eq!(got, [vec!["a", "a", "b", "c"], vec!["d", "d", "e"]]);
        let got: Vec<Vec<&str>> = chunks(&actions, 1).into_iter().map(ids).collect();
        assert_eq!(
            got,
            [vec!["a", "a", "b"], vec!["c"], vec!["d", "d"], vec!["e"]]
        );
        assert!(chunks(&[], 2).is_empty());
        assert_eq!(chunks(&[update("a"), update("b")], 1).len(), 1);
    }
}
