//! The one error type of the MetaStudio client.
//!
//! It carries what a user needs to act or to open a ticket (operation, HTTP
//! status, `error_code`, `error_msg`, `X-Request-Id`) and nothing secret:
//! no credential, token, activation code or once-code is ever put in it.

use std::fmt;
use std::time::Duration;

/// The seven activation-code operations, named as in the official API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    ListActiveCode,
    ShowActiveCode,
    CreateActiveCode,
    UpdateActiveCode,
    ResetActiveCode,
    DeleteActiveCode,
    CreateOnceCode,
}

impl Operation {
    pub const ALL: [Operation; 7] = [
        Operation::ListActiveCode,
        Operation::ShowActiveCode,
        Operation::CreateActiveCode,
        Operation::UpdateActiveCode,
        Operation::ResetActiveCode,
        Operation::DeleteActiveCode,
        Operation::CreateOnceCode,
    ];

    /// The official operation name, e.g. `ResetActiveCode`.
    pub fn name(self) -> &'static str {
        match self {
            Operation::ListActiveCode => "ListActiveCode",
            Operation::ShowActiveCode => "ShowActiveCode",
            Operation::CreateActiveCode => "CreateActiveCode",
            Operation::UpdateActiveCode => "UpdateActiveCode",
            Operation::ResetActiveCode => "ResetActiveCode",
            Operation::DeleteActiveCode => "DeleteActiveCode",
            Operation::CreateOnceCode => "CreateOnceCode",
        }
    }

    /// Whether repeating the call leaves the same state as calling it once.
    /// Reset and once-code mint new codes, create adds one, delete may hit
    /// an id that a retry no longer finds: those are not.
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Operation::ListActiveCode | Operation::ShowActiveCode | Operation::UpdateActiveCode
        )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed MetaStudio call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} failed after {attempts} attempt(s): {kind}")]
pub struct ApiError {
    pub operation: Operation,
    pub attempts: u32,
    pub kind: ApiErrorKind,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiErrorKind {
    /// The service (or its API gateway) answered with an error.
    #[error("HTTP {status}{}: {message} (X-Request-Id: {})", if code.is_empty() { String::new() } else { format!(" {code}") }, request_id.as_deref().unwrap_or("none"))]
    Service {
        status: u16,
        /// `error_code`, e.g. `MSS.00000003` or `APIGW.0301`; empty when the
        /// body was not a Huawei error body.
        code: String,
        message: String,
        request_id: Option<String>,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },
    /// No connection could be made: the request surely never arrived.
    #[error("cannot connect to {endpoint}: {detail}")]
    Connect { endpoint: String, detail: String },
    /// The request was sent but no answer came in time; whether the server
    /// applied it is unknown.
    #[error("no response within {timeout:?}; whether the server applied the call is unknown")]
    Timeout { timeout: Duration },
    /// The connection broke after the request was sent; whether the server
    /// applied it is unknown.
    #[error(
        "the connection closed before a response arrived ({detail}); whether the server applied the call is unknown"
    )]
    ResponseLost { detail: String },
    /// A success status with a body this client cannot read.
    #[error("HTTP {status} with an unreadable body: {detail} (X-Request-Id: {})", request_id.as_deref().unwrap_or("none"))]
    Decode {
        status: u16,
        request_id: Option<String>,
        detail: String,
    },
    /// The endpoint answered with a redirect (3xx). The client follows none:
    /// credentials go to the configured endpoint alone, never to where an
    /// answer points.
    #[error(
        "HTTP {status} redirect to {} not followed: credentials go to the configured endpoint alone; set the endpoint to the service's own address (X-Request-Id: {})",
        location.as_deref().unwrap_or("(no Location header)"),
        request_id.as_deref().unwrap_or("none")
    )]
    Redirected {
        status: u16,
        /// The `Location` header, cleaned and cut like other server text.
        location: Option<String>,
        request_id: Option<String>,
    },
    /// A success answer that breaks the API's contract: a page with more
    /// codes than asked for, a listing that does not end.
    #[error("the answer breaks the API's contract: {detail} (X-Request-Id: {})", request_id.as_deref().unwrap_or("none"))]
    Protocol {
        request_id: Option<String>,
        detail: String,
    },
    /// A listing whose `count` is more than one listing reads (see
    /// `listing::MAX_LISTED_CODES`): refused at the page that says so,
    /// before the codes are read.
    #[error(
        "the endpoint reports {count} codes for the robot, more than the {cap} one listing reads (X-Request-Id: {}); delete the codes the robot no longer uses, or check the endpoint",
        request_id.as_deref().unwrap_or("none")
    )]
    TooManyCodes {
        count: u32,
        cap: u32,
        request_id: Option<String>,
    },
    /// A listing that took longer than the listing deadline (a hostile or
    /// broken endpoint answering slowly, page after page): stopped, with
    /// what it had read.
    #[error(
        "listing robot {robot} took longer than {}: check the endpoint ({received} of {count} codes read); if it is only slow or its read budget is low, raise --listing-deadline",
        crate::duration::HumanDuration(*deadline)
    )]
    ListingTooSlow {
        robot: String,
        deadline: Duration,
        received: usize,
        count: u32,
    },
    /// Not sent: a client that does not wait found no slot of the
    /// credentials' budget free now (nothing was taken).
    #[error(
        "not sent: the budget of these credentials (spec.budget of the connection) has no call free now; the next is free in {}s",
        retry_in.as_secs() + u64::from(retry_in.subsec_nanos() > 0)
    )]
    BudgetExhausted { retry_in: Duration },
    /// The call was refused before sending: a parameter is out of range.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Not sent: the caller's deadline (the call window of its batch) came
    /// before the write budget of these credentials had a slot for it.
    #[error(
        "not sent: the call window of its batch ended before the write budget had a slot for it"
    )]
    NotSent,
    /// Not sent: these credentials were rejected (401/403) several times in
    /// a row, so calls with them pause (see `breaker`).
    #[error(
        "not sent: the credentials were rejected {rejections} time(s) in a row (last: HTTP {last_status} {last_code}, X-Request-Id: {}), so calls with them pause for {}s; fix the access key, secret key or project id (a changed Secret is tried at once)",
        last_request_id.as_deref().unwrap_or("none"),
        retry_in.as_secs().max(1)
    )]
    CredentialsSuspended {
        retry_in: Duration,
        rejections: u32,
        last_status: u16,
        last_code: String,
        last_request_id: Option<String>,
    },
}

impl ApiError {
    /// The HTTP status; for a call held back by the credentials breaker,
    /// that of the last rejection.
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            ApiErrorKind::Service { status, .. }
            | ApiErrorKind::Decode { status, .. }
            | ApiErrorKind::Redirected { status, .. } => Some(*status),
            ApiErrorKind::CredentialsSuspended { last_status, .. } => Some(*last_status),
            _ => None,
        }
    }

    pub fn error_code(&self) -> Option<&str> {
        match &self.kind {
            ApiErrorKind::Service { code, .. } if !code.is_empty() => Some(code),
            _ => None,
        }
    }

    pub fn request_id(&self) -> Option<&str> {
        match &self.kind {
            ApiErrorKind::Service { request_id, .. }
            | ApiErrorKind::Decode { request_id, .. }
            | ApiErrorKind::Redirected { request_id, .. }
            | ApiErrorKind::Protocol { request_id, .. }
            | ApiErrorKind::TooManyCodes { request_id, .. } => request_id.as_deref(),
            ApiErrorKind::CredentialsSuspended {
                last_request_id, ..
            } => last_request_id.as_deref(),
            _ => None,
        }
    }

    /// 401 or 403: the credentials were rejected or lack permission.
    pub fn is_auth_failure(&self) -> bool {
        matches!(self.status(), Some(401 | 403))
    }

    /// 429: the service or gateway applied flow control.
    pub fn is_rate_limited(&self) -> bool {
        self.status() == Some(429)
    }

    /// How long the caller should wait before trying again: the server's
    /// `Retry-After`, or the rest of a credentials pause.
    pub fn retry_after(&self) -> Option<Duration> {
        match &self.kind {
            ApiErrorKind::Service { retry_after, .. } => *retry_after,
            ApiErrorKind::CredentialsSuspended { retry_in, .. }
            | ApiErrorKind::BudgetExhausted { retry_in } => Some(*retry_in),
            _ => None,
        }
    }

    /// The request may or may not have been applied: a timeout or a lost
    /// response. The caller has to look at the remote state to know.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self.kind,
            ApiErrorKind::Timeout { .. } | ApiErrorKind::ResponseLost { .. }
        )
    }

    /// The server may have applied the call: no answer came, or it answered
    /// with a server error (a gateway may time out on a call the service
    /// still completes).
    pub fn may_have_applied(&self) -> bool {
        self.outcome_unknown() || self.status().is_some_and(|s| s >= 500)
    }

    /// Worth trying again later (by the caller, after this call's own
    /// retries are spent): server faults, flow control, network trouble.
    pub fn is_transient(&self) -> bool {
        match &self.kind {
            ApiErrorKind::Service { status, .. } => *status == 429 || *status >= 500,
            ApiErrorKind::Connect { .. }
            | ApiErrorKind::Timeout { .. }
            | ApiErrorKind::ResponseLost { .. }
            | ApiErrorKind::ListingTooSlow { .. }
            | ApiErrorKind::BudgetExhausted { .. } => true,
            ApiErrorKind::Decode { .. }
            | ApiErrorKind::Redirected { .. }
            | ApiErrorKind::Protocol { .. }
            | ApiErrorKind::TooManyCodes { .. }
            | ApiErrorKind::InvalidRequest(_)
            | ApiErrorKind::NotSent
            | ApiErrorKind::CredentialsSuspended { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_error_names_operation_status_code_message_and_request_id() {
        let err = ApiError {
            operation: Operation::ResetActiveCode,
            attempts: 1,
            kind: ApiErrorKind::Service {
                status: 400,
                code: "MSS.00000003".into(),
                message: "Invalid parameter".into(),
                request_id: Some("req-1".into()),
                retry_after: None,
            },
        };
        assert_eq!(
            err.to_string(),
            "ResetActiveCode failed after 1 attempt(s): HTTP 400 MSS.00000003: Invalid parameter (X-Request-Id: req-1)"
        );
        assert_eq!(err.error_code(), Some("MSS.00000003"));
        assert_eq!(err.request_id(), Some("req-1"));
        assert!(!err.is_transient());
    }

    #[test]
    fn only_list_show_and_update_are_idempotent() {
        let idempotent: Vec<_> = Operation::ALL
            .iter()
            .filter(|op| op.is_idempotent())
            .collect();
        assert_eq!(
            idempotent,
            [
                &Operation::ListActiveCode,
                &Operation::ShowActiveCode,
                &Operation::UpdateActiveCode
            ]
        );
    }
}
