//! The count phase of a sync (`spec.count`): settling the creates and
//! deletes recorded earlier, and making new ones exactly as resets are
//! made: per batch, the intents first (with the batch's call window, fenced
//! by the version the sync read), then the calls within that window. A
//! create or delete in doubt stops the phase: nothing more is created or
//! deleted until a complete listing settles it.

use super::{Sync, intent_write_failed};
use crate::crd::{CreateIntent, DeleteIntent, Drift};
use crate::engine::apply::Applied;
use crate::engine::count_calls;
use crate::engine::events;
use crate::engine::host::Host;
use crate::engine::run::Run;
use crate::engine::{ActionOutcome, ActionResult, Engine, ReconcileReport};
use crate::metastudio::metrics::ApiMetrics;
use crate::metastudio::{Listing, MetaStudioClient, Operation};
use crate::plan::{self, Action, Ledger};
use jiff::Timestamp;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::info;

/// The most creates one status write records (as resets).
pub const MAX_CREATE_INTENTS: usize = super::MAX_INTENTS;
/// The most deletes one status write records: ten DeleteActiveCode calls.
pub const MAX_DELETE_INTENTS: usize = 10 * count_calls::DELETE_BATCH;

/// Creates and deletes recorded earlier that are not settled yet.
pub(super) struct Waiting {
    pub creates: Vec<CreateIntent>,
    pub deletes: Vec<DeleteIntent>,
}

/// Settles the creates and deletes on record against `listing`, brings
/// them into `ledger` and publishes what they turned out to have done;
/// then, for a counted resource with nothing in doubt, notes every code of
/// its room. Returns the intents still in doubt.
pub(super) async fn settle<H: Host>(
    run: &mut Run<'_, H>,
    ledger: &mut Ledger,
    listing: &Listing,
    grace: jiff::SignedDuration,
    metrics: &ApiMetrics,
) -> Waiting {
    let spec = &run.resource.spec;
    let status = &run.status;
    let created = plan::settle_creates(
        &status.pending_creates,
        listing,
        &spec.robot_id,
        ledger,
        run.now,
        grace,
    );
    let deleted = plan::settle_deletes(&status.pending_deletes, listing, run.now, grace);
    for adopted in &created.adopted {
        ledger.adopt(&adopted.code_id, adopted.token.as_deref());
    }
    if !created.ambiguous.is_empty() {
        info!(
            codes = created.ambiguous.len(),
            "more new codes in the room than creates in doubt: they count, and are recorded as found, not as created by this resource"
        );
    }
    for id in &deleted.deleted {
        ledger.forget(id);
    }
    let adopted = created.adopted.len() as u64;
    metrics.record_changes(Operation::CreateActiveCode, "confirmed", adopted);
    let confirmed = deleted.deleted.len() as u64;
    metrics.record_changes(Operation::DeleteActiveCode, "confirmed", confirmed);
    for event in [
        events::of_adopted(&created.adopted),
        events::of_confirmed_deletes(&deleted.deleted),
    ]
    .into_iter()
    .flatten()
    {
        run.publish(event).await;
    }
    let spec = &run.resource.spec;
    match spec.count {
        Some(_) if created.waiting.is_empty() => {
            let room = plan::select(spec, &listing.codes);
            ledger.note_room(
                room.iter().map(|c| c.active_code_id.as_str()),
                listing.complete,
            );
        }
        Some(_) => {}
        None => ledger.forget_found(),
    }
    Waiting {
        creates: created.waiting,
        deletes: deleted.waiting,
    }
}

impl Engine {
    /// The creates, or the deletes, of a plan: batch after batch, each
    /// recorded before its calls and made within its call window, until
    /// one is in doubt or fails (the rest are planned again next sync).
    pub(super) async fn enforce_count<H: Host>(
        &self,
        run: &mut Run<'_, H>,
        sync: &mut Sync<'_>,
        client: &MetaStudioClient,
        actions: &[Action],
        planned: &[Action],
    ) -> Result<(), Box<ReconcileReport>> {
        let mut queue = actions.to_vec();
        while !queue.is_empty() && !sync.count_in_doubt() {
            let size = match queue[0] {
                Action::Create { .. } => MAX_CREATE_INTENTS,
                _ => MAX_DELETE_INTENTS,
            };
            let batch: Vec<Action> = queue.drain(..queue.len().min(size)).collect();
            let window = self.count_window(client, &batch);
            let end = sync.record_count(run, &batch, planned, window).await?;
            let length = Duration::from_secs(window.into());
            let window = count_calls::Window::new(end, length, self.transport.options().timeout);
            let robot = &run.resource.spec.robot_id;
            let round = match batch[0] {
                Action::Create { .. } => {
                    count_calls::create(client, robot, &batch, self.concurrency, window).await
                }
                _ => count_calls::delete(client, &batch, self.concurrency, window).await,
            };
            let left = round.not_started;
            let teardown = sync.teardown;
            let done = sync.absorb_count(round.applied);
            record_changes(self.transport.metrics(), done);
            let events = if teardown {
                events::of_teardown(done)
            } else {
                events::of_results(done)
            };
            for event in events {
                run.publish(event).await;
            }
            let stop = done.is_empty()
                || done
                    .iter()
                    .any(|r| matches!(r.outcome, ActionOutcome::Failed { .. }));
            queue.splice(0..0, left);
            if stop {
                break;
            }
        }
        // Not started: nothing of them was sent; planned again next sync.
        sync.not_started.extend(queue);
        Ok(())
    }

    /// The call window of a batch of creates or deletes (seconds): its
    /// calls at the tenant's write rate now, with the margins of
    /// [`plan::window::call_window`].
    fn count_window(&self, client: &MetaStudioClient, batch: &[Action]) -> u32 {
        let calls = match batch.first() {
            Some(Action::Delete { .. }) => count_calls::delete_calls(batch.len()),
            _ => batch.len(),
        };
        let (_, writes_per_second) = client.current_rates();
        plan::window::call_window(calls, writes_per_second, self.transport.options().timeout)
    }
}

/// Counts each code a round changed, by operation and outcome.
pub(super) fn record_changes(metrics: &ApiMetrics, results: &[ActionResult]) {
    for result in results {
        let operation = match result.action {
            Action::Update { .. } | Action::Renew { .. } => Operation::UpdateActiveCode,
            Action::Reset { .. } => Operation::ResetActiveCode,
            Action::Create { .. } => Operation::CreateActiveCode,
            Action::Delete { .. } => Operation::DeleteActiveCode,
        };
        let outcome = match result.outcome {
            ActionOutcome::Done { .. } => "done",
            ActionOutcome::Failed { .. } => "failed",
            ActionOutcome::Unconfirmed { .. } => "unconfirmed",
        };
        metrics.record_changes(operation, outcome, 1);
    }
}

impl Sync<'_> {
    /// Whether a create or delete is in doubt: none is made meanwhile.
    pub(super) fn count_in_doubt(&self) -> bool {
        !(self.waiting_count.creates.is_empty() && self.waiting_count.deletes.is_empty())
    }

    /// Records the intents of `batch` (creates or deletes) with their call
    /// window of `window` seconds, before any of its calls. Returns when
    /// the window ends, counted from before the write. `Err` ends the
    /// sync: nothing of the batch may start without its intents on record.
    async fn record_count<H: Host>(
        &mut self,
        run: &mut Run<'_, H>,
        batch: &[Action],
        planned: &[Action],
        window: u32,
    ) -> Result<Instant, Box<ReconcileReport>> {
        let deadline = Instant::now() + Duration::from_secs(window.into());
        self.recorded_count = Some(count_intent(batch, self.token(), run.now, window));
        self.set_pending(run, &[]);
        self.ledger.store(&mut run.status);
        run.scaling(batch);
        let saved = run
            .host
            .save_status(run.resource, &Arc::new(run.status.clone()))
            .await;
        match saved {
            Ok(()) => Ok(deadline),
            Err(err) => {
                self.recorded_count = None;
                self.set_pending(run, &[]);
                Err(intent_write_failed(run, err, planned, "create or delete").await)
            }
        }
    }

    /// Takes one round of creates or deletes in: new codes join the
    /// managed codes and the ledger (as this resource's, fresh for the
    /// token), deleted ones leave both; those in doubt stay on record.
    /// Returns the round's results.
    fn absorb_count(&mut self, results: Vec<Applied>) -> &[ActionResult] {
        let first = self.applied.len();
        let (mut lost_creates, mut lost_deletes) = (0u32, Vec::new());
        let token = self.token();
        for (result, code) in results {
            match (&result.action, &result.outcome, code) {
                (Action::Create { .. }, ActionOutcome::Done { .. }, Some(code)) => {
                    self.ledger.adopt(&code.active_code_id, token.as_deref());
                    self.codes.insert(code.active_code_id.clone(), code);
                }
                (Action::Create { .. }, ActionOutcome::Unconfirmed { .. }, _) => lost_creates += 1,
                (Action::Delete { code_id }, ActionOutcome::Done { .. }, _) => {
                    self.codes.remove(code_id);
                    self.ledger.forget(code_id);
                }
                (Action::Delete { code_id }, ActionOutcome::Unconfirmed { .. }, _) => {
                    lost_deletes.push(code_id.clone());
                }
                _ => {}
            }
            self.applied.push(result);
        }
        // Their calls have ended: only the grace is left.
        let since = Timestamp::now();
        match self.recorded_count.take() {
            Some(Recorded::Creates(intent)) if lost_creates > 0 => {
                self.waiting_count.creates.push(CreateIntent {
                    count: lost_creates,
                    unanswered_since: Some(since),
                    call_window_seconds: None,
                    ..intent
                });
            }
            Some(Recorded::Deletes(intent)) if !lost_deletes.is_empty() => {
                lost_deletes.sort();
                self.waiting_count.deletes.push(DeleteIntent {
                    code_ids: lost_deletes,
                    unanswered_since: Some(since),
                    call_window_seconds: None,
                    ..intent
                });
            }
            _ => {}
        }
        &self.applied[first..]
    }

    /// The reset.token of this sync: codes it creates count as reset for it.
    fn token(&self) -> Option<String> {
        self.plan.rollout.as_ref().map(|r| r.token.clone())
    }

    /// Drift for the creates and deletes in doubt, and the codes kept over
    /// the count.
    pub(super) fn count_drift(&self) -> impl Iterator<Item = Drift> + '_ {
        let creates = self.waiting_count.creates.iter().map(|i| Drift {
            code_id: String::new(),
            field: "count".into(),
            observed: format!(
                "{} create(s) in room {} whose answer was lost, not settled yet",
                i.count, i.room_id
            ),
            desired: "settled from a complete listing".into(),
        });
        let deletes = self
            .waiting_count
            .deletes
            .iter()
            .flat_map(|i| &i.code_ids)
            .map(|id| Drift {
                code_id: id.clone(),
                field: "count".into(),
                observed: "a delete whose answer was lost, not confirmed yet".into(),
                desired: "deleted (spec.surplus: Delete)".into(),
            });
        let kept = self.plan.kept.iter().map(|id| plan::kept_drift(id));
        creates.chain(deletes).chain(kept)
    }
}

/// The creates or deletes of one batch on record.
pub(super) enum Recorded {
    Creates(CreateIntent),
    Deletes(DeleteIntent),
}

impl Recorded {
    pub(super) fn creates(&self) -> Option<&CreateIntent> {
        match self {
            Recorded::Creates(intent) => Some(intent),
            Recorded::Deletes(_) => None,
        }
    }

    pub(super) fn deletes(&self) -> Option<&DeleteIntent> {
        match self {
            Recorded::Deletes(intent) => Some(intent),
            Recorded::Creates(_) => None,
        }
    }
}

/// The intents of `batch` (all creates, or all deletes), with its call
/// window of `window` seconds.
fn count_intent(batch: &[Action], token: Option<String>, now: Timestamp, window: u32) -> Recorded {
    match &batch[0] {
        Action::Create { room_id, .. } => Recorded::Creates(CreateIntent {
            room_id: room_id.clone(),
            count: batch.len() as u32,
            token,
            recorded_at: now,
            unanswered_since: None,
            call_window_seconds: Some(window),
        }),
        _ => {
            let mut code_ids: Vec<String> = batch.iter().map(|a| a.code_id().to_owned()).collect();
            code_ids.sort();
            Recorded::Deletes(DeleteIntent {
                code_ids,
                recorded_at: now,
                unanswered_since: None,
                call_window_seconds: Some(window),
            })
        }
    }
}
