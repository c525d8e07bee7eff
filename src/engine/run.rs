//! The state of one reconcile in progress, and how it ends: conditions,
//! events and the status write every reconcile finishes with.

use super::conditions::{self, READY, SYNCED, reason};
use super::events;
use super::host::{EngineEvent, Host};
use super::{ActionResult, Mode, Next, ReconcileReport};
use crate::crd::{ActivationCode, ActivationCodeStatus};
use crate::metastudio::{ApiError, ApiErrorKind};
use crate::plan::Action;
use jiff::Timestamp;
use std::sync::Arc;
use tracing::{info, warn};

/// The state of one reconcile in progress.
pub(super) struct Run<'a, H> {
    pub resource: &'a ActivationCode,
    pub host: &'a H,
    pub mode: Mode,
    pub generation: Option<i64>,
    pub status: ActivationCodeStatus,
    pub now: Timestamp,
}

impl<'a, H: Host> Run<'a, H> {
    /// Whether this run deletes the codes its resource created, before the
    /// resource goes (see [`super::teardown`]).
    pub fn tearing_down(&self) -> bool {
        self.host.tears_down() && crate::crd::deletion::tearing_down(self.resource)
    }

    /// A reconcile of `resource` (as the host last stored it), starting
    /// from its status with `observedGeneration` set to its generation.
    pub fn new(resource: &'a ActivationCode, host: &'a H, mode: Mode, now: Timestamp) -> Self {
        let generation = resource.metadata.generation;
        let mut status = resource.status.clone().unwrap_or_default();
        status.observed_generation = generation;
        Self {
            resource,
            host,
            mode,
            generation,
            status,
            now,
        }
    }

    pub fn set(&mut self, type_: &str, value: Option<bool>, why: &str, message: String) {
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

    pub async fn event(
        &self,
        warning: bool,
        reason: &'static str,
        action: &'static str,
        note: String,
    ) {
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
    pub async fn publish(&self, mut event: EngineEvent) {
        event.note = events::clipped(&event.note, events::NOTE_LIMIT);
        self.host.event(self.resource, &event).await;
    }

    /// Ends early, before any remote change: Ready=False with `why`,
    /// Synced=Unknown, a warning event, the status saved (not in a dry
    /// run).
    pub async fn stop(
        &mut self,
        why: &'static str,
        message: String,
        next: Next,
    ) -> ReconcileReport {
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
    pub fn resetting(&mut self, count: usize) {
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

    /// While the recorded creates or deletes (`batch`, spec.count) are under
    /// way, the status says so, as [`Run::resetting`] does.
    pub fn scaling(&mut self, batch: &[Action]) {
        let verb = match batch.first() {
            Some(Action::Create { .. }) => "creating",
            _ => "deleting",
        };
        let message = format!(
            "{verb} {} code(s) (spec.count); their intents are recorded first",
            batch.len()
        );
        self.set(READY, Some(false), reason::SCALING, message.clone());
        conditions::set_progress(
            &mut self.status.conditions,
            reason::SCALING,
            &message,
            self.generation,
            self.now,
        );
    }

    /// Ends before any remote change and without writing status: the stored
    /// resource changed since it was read.
    pub fn replan(&mut self, planned: Vec<Action>) -> ReconcileReport {
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
    pub async fn remote_failure(&mut self, err: &ApiError) -> ReconcileReport {
        let (why, next) = if err.is_auth_failure() {
            // While the credentials pause, trying sooner is pointless.
            let at_least = err.retry_after();
            (reason::CREDENTIALS_REJECTED, Next::Retry { at_least })
        } else if let ApiErrorKind::TooManyCodes { .. } = err.kind {
            // Only fewer codes help: look again at the next sync.
            let next = Next::SyncAfter(self.resource.spec.sync_interval());
            (reason::TOO_MANY_CODES, next)
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

    pub async fn finish(
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
