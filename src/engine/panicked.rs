//! What a reconcile that panicked leaves: the resource's `Ready=False`,
//! `Stalled`, reason `InternalError`, with a Warning Event, written as any
//! stop is (see [`crate::panics`] for how the panic is caught and
//! described).

use super::conditions::{self, READY, SYNCED, reason};
use super::host::Host;
use super::run::Run;
use super::{Engine, Mode, Next, ReconcileReport};
use crate::crd::ActivationCode;
use crate::panics::Panicked;
use jiff::Timestamp;
use std::sync::Arc;

/// The Ready message of a reconcile that panicked.
fn message(panicked: &Panicked) -> String {
    format!(
        "internal error: the operator {panicked} while reconciling this resource; the reconcile was stopped and is tried again with backoff, and other resources are not affected. This is a bug: please report it with this message"
    )
}

impl Engine {
    /// Records that a reconcile of `resource` panicked: no remote call, the
    /// status the host last stored kept (its reset intents settle the work
    /// cut short) with the conditions set, an Event, and a retry with
    /// backoff (a bug may hit only one state of the resource).
    pub async fn internal_error<H: Host>(
        &self,
        resource: &ActivationCode,
        host: &H,
        panicked: &Panicked,
        mode: Mode,
        now: Timestamp,
    ) -> ReconcileReport {
        let resource = &host.current(resource);
        let mut run = Run::new(resource, host, mode, now);
        run.stop(
            reason::INTERNAL_ERROR,
            message(panicked),
            Next::Retry { at_least: None },
        )
        .await
    }
}

/// The report of a reconcile that panicked when even recording that
/// panicked: the conditions [`Engine::internal_error`] would set, on the
/// resource's own status, stored nowhere and announced by no Event.
pub fn unrecorded_internal_error(
    resource: &ActivationCode,
    panicked: &Panicked,
    now: Timestamp,
) -> ReconcileReport {
    let mut status = resource.status.clone().unwrap_or_default();
    let generation = resource.metadata.generation;
    let message = message(panicked);
    let set = |status: &mut crate::crd::ActivationCodeStatus, type_, value, text: &str| {
        conditions::set(
            &mut status.conditions,
            type_,
            value,
            reason::INTERNAL_ERROR,
            text,
            generation,
            now,
        );
    };
    set(&mut status, READY, Some(false), &message);
    set(
        &mut status,
        SYNCED,
        None,
        "stopped; see the Ready condition",
    );
    conditions::set_progress(
        &mut status.conditions,
        reason::INTERNAL_ERROR,
        &message,
        generation,
        now,
    );
    ReconcileReport {
        status: Arc::new(status),
        reason: reason::INTERNAL_ERROR,
        converged: false,
        planned: Vec::new(),
        applied: Vec::new(),
        next: Next::Retry { at_least: None },
    }
}
