//! kstatus-style conditions: `Ready` and `Synced`, with reasons that tell a
//! user what to do (see the README's troubleshooting table), and kstatus's
//! two "abnormal-true" conditions, present only while they hold:
//! `Reconciling` (a retry is scheduled after a transient fault) and
//! `Stalled` (progress needs a human). With `observedGeneration`, these let
//! kstatus-based tools (Flux, `kubectl wait`, cli-utils) judge health
//! without a script.

use crate::crd::Condition;
use jiff::Timestamp;

pub const READY: &str = "Ready";
pub const SYNCED: &str = "Synced";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// Condition reasons.
pub mod reason {
    /// Every managed code matches the spec.
    pub const SYNCED: &str = "Synced";
    /// Observe: the codes were compared, nothing was changed.
    pub const OBSERVING: &str = "Observing";
    /// The remote codes match the spec.
    pub const IN_SYNC: &str = "InSync";
    /// Observe, or Enforce with failures: the remote codes differ from the spec.
    pub const DRIFT_DETECTED: &str = "DriftDetected";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const CREDENTIALS_NOT_FOUND: &str = "CredentialsNotFound";
    pub const CREDENTIALS_REJECTED: &str = "CredentialsRejected";
    pub const REMOTE_ERROR: &str = "RemoteError";
    pub const RATE_LIMITED: &str = "RateLimited";
    pub const CONFLICT: &str = "Conflict";
    /// An older resource selects some of the same codes, and its
    /// credentials Secret could not be read to tell whether it calls as
    /// this one does (a rival): nothing is changed until it can be told.
    pub const CONFLICT_UNCHECKED: &str = "ConflictUnchecked";
    pub const SUSPENDED: &str = "Suspended";
    pub const EXPORT_FAILED: &str = "ExportFailed";
    /// The status (with the reset intents) could not be stored, so no reset
    /// was started: the API server or the status file refused the write.
    pub const STATUS_NOT_SAVED: &str = "StatusNotSaved";
    /// A reset's answer was lost and the remote state could not be read to
    /// confirm it; the next sync settles it.
    pub const RESET_UNCONFIRMED: &str = "ResetUnconfirmed";
    /// Resets are under way: their intents are recorded, their calls not
    /// all answered (seen while a reconcile runs, or after it was cut off).
    pub const RESETTING: &str = "Resetting";
    /// A create or a delete (spec.count) got no clear answer, or another
    /// run recorded it and its calls may still happen: nothing is created
    /// or deleted until a complete listing settles it.
    pub const COUNT_UNCONFIRMED: &str = "CountUnconfirmed";
    /// Creates or deletes (spec.count) are under way: their intents are
    /// recorded, their calls not all answered.
    pub const SCALING: &str = "Scaling";
    /// A progressive rotation (spec.reset.rollout) is between batches: the
    /// next one starts at status.resetToken.nextBatchTime.
    pub const ROTATING: &str = "Rotating";
    /// The pages of the listing did not add up (codes created or deleted
    /// while paging, a short page): no code was taken as gone and the
    /// export Secret was left as it was.
    pub const LISTING_INCOMPLETE: &str = "ListingIncomplete";
    /// Too many codes: the resource selects more than one resource manages
    /// (split it by spec.roomId or spec.activeCodeIds), or the robot has
    /// more than one listing reads. Nothing was changed.
    pub const TOO_MANY_CODES: &str = "TooManyCodes";
    /// The resource is being deleted (a finalizer holds it): no remote call
    /// is made and the export Secret is left as it is.
    pub const DELETING: &str = "Deleting";
    /// The resource is being deleted with spec.deletionPolicy Delete, and
    /// the codes it created cannot be deleted (credentials or connection
    /// gone, suspended, an invalid spec, refused): it is kept, nothing is
    /// deleted, until the cause is fixed or the owner orphans the codes
    /// (annotation metastudio.huaweicloud.com/orphan-codes: "true").
    pub const DELETION_BLOCKED: &str = "DeletionBlocked";
    /// The resource is being deleted with spec.deletionPolicy Delete, and
    /// the codes it created are deleted: its finalizer is removed.
    pub const CODES_DELETED: &str = "CodesDeleted";
    /// Not a condition: the stored resource changed while it was
    /// reconciled, so nothing was written and the reconcile was redone from
    /// the fresh state (the report's reason, counted in the metrics).
    pub const RESOURCE_CHANGED: &str = "ResourceChanged";
    /// spec.connectionRef names a connection that does not exist (in this
    /// namespace, for a MetaStudioConnection).
    pub const CONNECTION_NOT_FOUND: &str = "ConnectionNotFound";
    /// The resource may not use the connection it asks for: a
    /// ClusterMetaStudioConnection that does not admit its namespace or
    /// robot, an endpoint of its own that is not an official one, an
    /// endpoint, region or project of its own without credentials of its
    /// own, or the operator's credentials where they are not allowed.
    pub const CONNECTION_NOT_ALLOWED: &str = "ConnectionNotAllowed";
    /// A ClusterMetaStudioConnection admits namespaces by their labels, and
    /// the operator has not seen this namespace's labels yet: none is
    /// admitted on labels it has not seen; decided again once it has.
    pub const NAMESPACE_LABELS_UNKNOWN: &str = "NamespaceLabelsUnknown";
    /// An Event's: tokens travel unencrypted to a connection's plain-http
    /// endpoint, which its owner allowed.
    pub const INSECURE_TRANSPORT: &str = "InsecureTransport";
    /// An Event's, not a condition's: the spec has a field this operator
    /// does not know (a newer CRD, or a rollback); it is ignored.
    pub const UNKNOWN_FIELD: &str = "UnknownField";
    /// The reconcile panicked (a bug in the operator): it was stopped, the
    /// operator goes on, and the resource is tried again with backoff.
    pub const INTERNAL_ERROR: &str = "InternalError";
}

/// What a `Ready` reason means for kstatus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Done, or waiting on purpose (Observe, suspended, dry run).
    Settled,
    /// A transient fault: the operator retries by itself.
    Retrying,
    /// Only a change by a human (spec, Secret, the other resource) helps.
    NeedsHuman,
}

pub fn progress(ready_reason: &str) -> Progress {
    match ready_reason {
        reason::REMOTE_ERROR
        | reason::RATE_LIMITED
        | reason::RESET_UNCONFIRMED
        | reason::RESETTING
        | reason::COUNT_UNCONFIRMED
        | reason::SCALING
        | reason::ROTATING
        | reason::LISTING_INCOMPLETE
        | reason::NAMESPACE_LABELS_UNKNOWN
        | reason::CONFLICT_UNCHECKED
        | reason::STATUS_NOT_SAVED => Progress::Retrying,
        reason::INVALID_SPEC
        | reason::CREDENTIALS_NOT_FOUND
        | reason::CREDENTIALS_REJECTED
        | reason::CONFLICT
        | reason::CONNECTION_NOT_FOUND
        | reason::CONNECTION_NOT_ALLOWED
        | reason::TOO_MANY_CODES
        | reason::EXPORT_FAILED
        | reason::DELETION_BLOCKED
        | reason::INTERNAL_ERROR => Progress::NeedsHuman,
        _ => Progress::Settled,
    }
}

/// Sets `Reconciling` or `Stalled` from the `Ready` reason and message, and
/// removes the one that does not hold (kstatus reads absence as False).
pub fn set_progress(
    conditions: &mut Vec<Condition>,
    ready_reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let holds = match progress(ready_reason) {
        Progress::Settled => None,
        Progress::Retrying => Some(RECONCILING),
        Progress::NeedsHuman => Some(STALLED),
    };
    for type_ in [RECONCILING, STALLED] {
        if holds == Some(type_) {
            set(
                conditions,
                type_,
                Some(true),
                ready_reason,
                message,
                generation,
                now,
            );
        } else {
            conditions.retain(|c| c.type_ != type_);
        }
    }
}

/// `"True"`, `"False"` or `"Unknown"`.
pub fn status_text(value: Option<bool>) -> &'static str {
    match value {
        Some(true) => "True",
        Some(false) => "False",
        None => "Unknown",
    }
}

/// Sets a condition, keeping `lastTransitionTime` when the status is the
/// same as before.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    value: Option<bool>,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = status_text(value).to_owned();
    let last_transition_time = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or(now, |c| c.last_transition_time);
    conditions.retain(|c| c.type_ != type_);
    conditions.push(Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message: message.into(),
        last_transition_time,
        observed_generation: generation,
    });
    conditions.sort_by(|a, b| a.type_.cmp(&b.type_));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_changes_only_with_the_status() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-02T00:00:00Z".parse().unwrap();
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            READY,
            Some(true),
            reason::SYNCED,
            "ok",
            Some(1),
            t0,
        );
        set(
            &mut conditions,
            READY,
            Some(true),
            reason::SYNCED,
            "still ok",
            Some(2),
            t1,
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, t0);
        assert_eq!(conditions[0].observed_generation, Some(2));
        set(
            &mut conditions,
            READY,
            Some(false),
            reason::REMOTE_ERROR,
            "down",
            Some(2),
            t1,
        );
        assert_eq!(conditions[0].last_transition_time, t1);
        assert_eq!(conditions[0].status, "False");
    }

    #[test]
    fn reconciling_and_stalled_are_present_only_while_they_hold() {
        let t: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let types = |c: &[Condition]| c.iter().map(|c| c.type_.clone()).collect::<Vec<_>>();
        let mut conditions = Vec::new();
        set_progress(&mut conditions, reason::RATE_LIMITED, "429", Some(1), t);
        assert_eq!(types(&conditions), [RECONCILING]);
        assert_eq!(conditions[0].status, "True");
        assert_eq!(conditions[0].reason, reason::RATE_LIMITED);
        set_progress(&mut conditions, reason::INVALID_SPEC, "bad", Some(2), t);
        assert_eq!(types(&conditions), [STALLED]);
        assert_eq!(conditions[0].message, "bad");
        for settled in [reason::SYNCED, reason::OBSERVING, reason::SUSPENDED] {
            set_progress(&mut conditions, settled, "", Some(2), t);
            assert!(conditions.is_empty(), "{settled}");
        }
    }
}
