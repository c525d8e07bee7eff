//! kstatus-style conditions: `Ready` and `Synced`, with reasons that tell a
//! user what to do (see the README's troubleshooting table).

use crate::crd::Condition;
use jiff::Timestamp;

pub const READY: &str = "Ready";
pub const SYNCED: &str = "Synced";

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
    pub const SUSPENDED: &str = "Suspended";
    pub const EXPORT_FAILED: &str = "ExportFailed";
    /// A reset's answer was lost and the remote state could not be read to
    /// confirm it; the next sync settles it.
    pub const RESET_UNCONFIRMED: &str = "ResetUnconfirmed";
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
}
