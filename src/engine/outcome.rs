//! What a failed write tells about whether it was applied.
//!
//! - any 2xx: applied, even when its body cannot be read (the code is read
//!   back to learn its new state);
//! - 408, 499 and 5xx: gateway and server answers after which the backend
//!   may still apply the call: in doubt;
//! - any other 4xx (including a 429 whose retries ran out) and a redirect
//!   (3xx, never followed): refused, not applied;
//! - no connection: never sent, not applied; a timeout or a connection
//!   lost after sending: in doubt;
//! - refused before sending (invalid, credentials paused, its call window
//!   over before the write budget had a slot), or a listing refused for its
//!   size: not applied (those are reads).

use crate::metastudio::{ApiError, ApiErrorKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Applied,
    NotApplied,
    InDoubt,
}

/// The outcome class of an HTTP status.
pub fn of_status(status: u16) -> WriteOutcome {
    match status {
        200..=299 => WriteOutcome::Applied,
        408 | 499 | 500..=599 => WriteOutcome::InDoubt,
        _ => WriteOutcome::NotApplied,
    }
}

/// The outcome class of a failed call.
pub fn of_error(err: &ApiError) -> WriteOutcome {
    match &err.kind {
        ApiErrorKind::Service { status, .. }
        | ApiErrorKind::Decode { status, .. }
        | ApiErrorKind::Redirected { status, .. } => of_status(*status),
        ApiErrorKind::Timeout { .. } | ApiErrorKind::ResponseLost { .. } => WriteOutcome::InDoubt,
        ApiErrorKind::Connect { .. }
        | ApiErrorKind::Protocol { .. }
        | ApiErrorKind::TooManyCodes { .. }
        | ApiErrorKind::ListingTooSlow { .. }
        | ApiErrorKind::BudgetExhausted { .. }
        | ApiErrorKind::InvalidRequest(_)
        | ApiErrorKind::NotSent
        | ApiErrorKind::CredentialsSuspended { .. } => WriteOutcome::NotApplied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metastudio::Operation;
    use std::time::Duration;

    fn error(kind: ApiErrorKind) -> ApiError {
        ApiError {
            operation: Operation::ResetActiveCode,
            attempts: 1,
            kind,
        }
    }

    fn service(status: u16) -> ApiError {
        error(ApiErrorKind::Service {
            status,
            code: String::new(),
            message: String::new(),
            request_id: None,
            retry_after: None,
        })
    }

    #[test]
    fn each_status_class_has_its_outcome() {
        use WriteOutcome::*;
        let table = [
            (200, Applied),
            (201, Applied),
            (204, Applied),
            (299, Applied),
            (301, NotApplied),
            (400, NotApplied),
            (401, NotApplied),
            (403, NotApplied),
            (404, NotApplied),
            (408, InDoubt),
            (409, NotApplied),
            (429, NotApplied),
            (499, InDoubt),
            (500, InDoubt),
            (501, InDoubt),
            (502, InDoubt),
            (503, InDoubt),
            (504, InDoubt),
        ];
        for (status, outcome) in table {
            assert_eq!(of_status(status), outcome, "HTTP {status}");
            assert_eq!(
                of_error(&service(status)),
                outcome,
                "service error {status}"
            );
        }
    }

    #[test]
    fn failures_without_an_answer_are_classed_by_whether_the_request_left() {
        use WriteOutcome::*;
        let cases = [
            (
                ApiErrorKind::Decode {
                    status: 200,
                    request_id: None,
                    detail: "not JSON".into(),
                },
                Applied,
            ),
            (
                ApiErrorKind::Connect {
                    endpoint: "e".into(),
                    detail: "refused".into(),
                },
                NotApplied,
            ),
            (
                ApiErrorKind::Timeout {
                    timeout: Duration::from_secs(1),
                },
                InDoubt,
            ),
            (
                ApiErrorKind::ResponseLost {
                    detail: "reset".into(),
                },
                InDoubt,
            ),
            (ApiErrorKind::InvalidRequest("x".into()), NotApplied),
            (ApiErrorKind::NotSent, NotApplied),
            (
                ApiErrorKind::Redirected {
                    status: 307,
                    location: Some("http://elsewhere/".into()),
                    request_id: None,
                },
                NotApplied,
            ),
        ];
        for (kind, outcome) in cases {
            let label = format!("{kind:?}");
            assert_eq!(of_error(&error(kind)), outcome, "{label}");
        }
    }
}
