//! What the broker answers: a grant, or a denial with its HTTP status, a
//! machine-readable reason and a message that says what to do. Neither
//! carries the caller's token; only a grant carries a code.

use crate::secret::Secret;
use serde::Serialize;
use std::time::Duration;

/// How long MetaStudio keeps a once-code valid (CreateOnceCode: "valid for
/// five minutes and can be used only once").
pub const ONCE_CODE_VALIDITY: Duration = Duration::from_secs(5 * 60);

/// The body of a 200 answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OnceCodeGrant {
    /// The code: only here, never in a log line.
    #[serde(serialize_with = "expose")]
    pub once_code: Secret,
    /// RFC 3339, five minutes after MetaStudio issued it.
    pub expires_at: String,
    /// The X-Request-Id of the CreateOnceCode call.
    pub request_id: String,
}

fn expose<S: serde::Serializer>(secret: &Secret, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose())
}

/// Why a request gets no code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {reason}: {message}")]
pub struct Denial {
    pub status: u16,
    /// CamelCase, stable: callers and alerts match on it.
    pub reason: &'static str,
    /// Names what is wrong and the fix; never a token or a code.
    pub message: String,
    /// For 429 and a transient 503: when to try again.
    pub retry_after: Option<Duration>,
}

/// The reasons, by status.
pub mod reason {
    /// 400
    pub const BAD_REQUEST: &str = "BadRequest";
    /// 401: no token, or one the API server did not authenticate for the
    /// broker's audience.
    pub const UNAUTHENTICATED: &str = "Unauthenticated";
    /// 403: a token of something else than a ServiceAccount.
    pub const NOT_A_SERVICE_ACCOUNT: &str = "NotAServiceAccount";
    /// 403: RBAC does not let the caller create `oncecodes` of this name.
    pub const FORBIDDEN: &str = "Forbidden";
    /// 403: a ClusterMetaStudioConnection that does not admit the namespace.
    pub const CONNECTION_NOT_ALLOWED: &str = "ConnectionNotAllowed";
    /// 404: no such path, or no connection of that name for the caller.
    pub const NOT_FOUND: &str = "NotFound";
    pub const CONNECTION_NOT_FOUND: &str = "ConnectionNotFound";
    /// 405
    pub const METHOD_NOT_ALLOWED: &str = "MethodNotAllowed";
    /// 429: the caller's own bucket.
    pub const CALLER_RATE_LIMITED: &str = "CallerRateLimited";
    /// 429: the connection's credentials' share of CreateOnceCode's quota
    /// (`--broker-quota`), their budget (the connection's `spec.budget`),
    /// or MetaStudio's own quota (it answered 429) is used up.
    pub const QUOTA_EXHAUSTED: &str = "QuotaExhausted";
    /// 429: more tokens the broker has not authenticated before than its
    /// budget of TokenReviews allows; no review was asked.
    pub const REVIEW_RATE_LIMITED: &str = "ReviewRateLimited";
    /// 502: MetaStudio answered with an error, or did not answer.
    pub const METASTUDIO_ERROR: &str = "MetaStudioError";
    /// 503: the broker's caches are not synced yet.
    pub const NOT_READY: &str = "NotReady";
    /// 503: the API server could not review the request.
    pub const REVIEW_UNAVAILABLE: &str = "ReviewUnavailable";
    /// 503: the connection has no usable credentials or endpoint.
    pub const CONNECTION_NOT_READY: &str = "ConnectionNotReady";
    /// 503: a ClusterMetaStudioConnection admits namespaces by their labels
    /// and the broker has not seen the caller's namespace yet (just
    /// created); `Retry-After` says when to ask again.
    pub const NAMESPACE_LABELS_UNKNOWN: &str = "NamespaceLabelsUnknown";
}

impl Denial {
    pub fn new(status: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(401, reason::UNAUTHENTICATED, message)
    }

    pub fn too_many(reason: &'static str, message: impl Into<String>, wait: Duration) -> Self {
        Self {
            retry_after: Some(wait),
            ..Self::new(429, reason, message)
        }
    }

    /// The JSON body: `{"reason": ..., "message": ...}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"reason": self.reason, "message": self.message})
    }

    /// The `Retry-After` header value: whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after
            .map(|wait| wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            .map(|secs| secs.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_shows_the_code_in_its_body_only() {
        let grant = OnceCodeGrant {
            once_code: Secret::new("code-value".to_owned()),
            expires_at: "2026-12-01T00:05:00Z".into(),
            request_id: "req-1".into(),
        };
        let body = serde_json::to_value(&grant).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"onceCode": "code-value", "expiresAt": "2026-12-01T00:05:00Z", "requestId": "req-1"})
        );
        assert!(!format!("{grant:?}").contains("code-value"));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let wait = |ms| Denial::too_many(reason::QUOTA_EXHAUSTED, "", Duration::from_millis(ms));
        assert_eq!(wait(1).retry_after_secs(), Some(1));
        assert_eq!(wait(1000).retry_after_secs(), Some(1));
        assert_eq!(wait(1001).retry_after_secs(), Some(2));
        assert_eq!(wait(0).retry_after_secs(), Some(1));
        assert_eq!(Denial::unauthenticated("x").retry_after_secs(), None);
    }
}
