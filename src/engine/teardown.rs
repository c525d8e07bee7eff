//! A resource being deleted with spec.deletionPolicy Delete (see
//! [`crate::crd::deletion`]): its sync deletes the codes it created and
//! nothing else; a stop that only a human fixes (credentials or connection
//! gone, suspended, an invalid spec, refused) becomes DeletionBlocked,
//! naming the cause and the two ways out, so that a finalizer never holds
//! a namespace without saying why.

use super::conditions::reason;
use super::connect::Stop;
use super::host::Host;
use super::run::Run;
use super::verdict::Verdict;
use super::{Next, ReconcileReport};
use crate::crd::ActivationCode;
use crate::crd::deletion::ORPHAN_ANNOTATION;
use kube::ResourceExt;

/// `stop` as DeletionBlocked when the run tears its resource down; as it
/// is otherwise.
pub(super) fn blocked_if<H: Host>(run: &Run<'_, H>, stop: Stop) -> Stop {
    if run.tearing_down() {
        blocked(run.resource, stop)
    } else {
        stop
    }
}

/// Why the codes of `resource` cannot be deleted now (`stop`), and the
/// fix: remove the cause, or orphan the codes. When to look again is the
/// cause's.
pub(super) fn blocked(resource: &ActivationCode, (why, message, next): Stop) -> Stop {
    let message = format!(
        "spec.deletionPolicy is Delete, but the codes this resource created cannot be deleted ({why}: {message}), so it is kept and nothing is deleted; fix that, or keep the codes and let it go: kubectl annotate activationcode {} -n {} {ORPHAN_ANNOTATION}=true",
        resource.name_any(),
        resource.namespace().unwrap_or_default()
    );
    (reason::DELETION_BLOCKED, message, next)
}

/// The verdict of a teardown's sync: once nothing is left to delete (the
/// sync's own verdict is Synced), CodesDeleted, for the controller to
/// remove the finalizer; until then, the sync's own (a retry).
pub(super) fn verdict(decided: Verdict, deleted: usize) -> Verdict {
    if decided.reason != reason::SYNCED {
        return decided;
    }
    Verdict {
        reason: reason::CODES_DELETED,
        message: format!(
            "the codes this resource created are deleted ({deleted} by this sync; spec.deletionPolicy is Delete): it is let go"
        ),
        next: Next::AwaitChange,
    }
}

/// Whether `report` ends a teardown: the codes are deleted, the finalizer
/// may go.
pub fn done(report: &ReconcileReport) -> bool {
    report.reason == reason::CODES_DELETED
}
