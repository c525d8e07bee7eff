//! From an authorised request to a code: the connection the caller's
//! namespace may use (the same tenancy rules as ActivationCodes), its
//! credentials, read now, those credentials' share of the quota, and the
//! CreateOnceCode call, which waits for a call of the budget at most
//! [`BUDGET_PATIENCE`] and retries nothing: a budget with no call free by
//! then, or MetaStudio's own 429, is the caller's 429 with `Retry-After`
//! (see [`super::limits`]).

use super::contract::{Denial, ONCE_CODE_VALIDITY, OnceCodeGrant, reason};
use super::limits::Limits;
use crate::engine::conditions::reason::{CONNECTION_NOT_FOUND, NAMESPACE_LABELS_UNKNOWN};
use crate::engine::connect::connect_grant;
use crate::engine::host::SecretSource;
use crate::metastudio::{ApiError, ApiErrorKind, Transport};
use crate::tenancy::{self, Directory, OperatorDefaults, Refusal};
use std::sync::Arc;
use std::time::Duration;

/// When a namespace whose labels the broker has not seen yet may ask
/// again: its watch usually sees a new namespace within a second or two.
pub const LABELS_RETRY: Duration = Duration::from_secs(5);

/// The longest a once-code request waits for a call of its connection's
/// budget (shared with the operator's listings of the same credentials):
/// a slot expected later is a 429 with `Retry-After` at once, so a slow
/// budget holds none of the broker's connections.
pub const BUDGET_PATIENCE: Duration = Duration::from_secs(2);

/// Where the broker finds connections, their Secrets, and MetaStudio.
pub struct Issuer<D, S> {
    pub directory: D,
    pub secrets: S,
    pub transport: Arc<Transport>,
}

/// A code and the connection that issued it (for the audit line).
#[derive(Debug)]
pub struct Issued {
    pub grant: OnceCodeGrant,
    /// `MetaStudioConnection retail/main`, `ClusterMetaStudioConnection shared`.
    pub via: String,
}

impl<D: Directory + Sync, S: SecretSource> Issuer<D, S> {
    /// A once-code from the connection `name`, for a workload of `namespace`.
    pub async fn issue(
        &self,
        namespace: &str,
        name: &str,
        limits: &Limits,
    ) -> Result<Issued, Denial> {
        let grant = tenancy::once_code_grant(namespace, name, &self.directory).map_err(refused)?;
        // Connection resources take no operator default; the operator's own
        // credentials never serve the broker.
        let connection = connect_grant(&grant, &self.secrets, &OperatorDefaults::default())
            .await
            .map_err(|(_, message, _)| Denial::new(503, reason::CONNECTION_NOT_READY, message))?;
        limits.admit_project(&connection)?;
        let issued_at = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
            .expect("now is a valid time");
        let reply = self
            .transport
            .client(connection)
            .waiting_at_most(BUDGET_PATIENCE)
            .once_code()
            .await
            .map_err(|err| failed(&err, &grant.via))?;
        let expires_at = issued_at
            .checked_add(ONCE_CODE_VALIDITY)
            .expect("five minutes from now is a valid time");
        Ok(Issued {
            grant: OnceCodeGrant {
                once_code: reply.value.once_code,
                expires_at: expires_at.to_string(),
                request_id: reply.request_id.unwrap_or_default(),
            },
            via: grant.via,
        })
    }
}

/// The denial of a connection the tenancy rules refuse: 404 when there is
/// none of that name, 503 (ask again soon) while the namespace's labels are
/// not seen yet, 403 otherwise.
fn refused(refusal: Refusal) -> Denial {
    match refusal.reason {
        CONNECTION_NOT_FOUND => Denial::new(404, reason::CONNECTION_NOT_FOUND, refusal.message),
        NAMESPACE_LABELS_UNKNOWN => Denial {
            retry_after: Some(LABELS_RETRY),
            ..Denial::new(503, reason::NAMESPACE_LABELS_UNKNOWN, refusal.message)
        },
        _ => Denial::new(403, reason::CONNECTION_NOT_ALLOWED, refusal.message),
    }
}

/// The denial of a CreateOnceCode call that brought no code: 429 when the
/// credentials' budget had no call free or MetaStudio throttled it (with
/// when to come back), 502 otherwise.
fn failed(err: &ApiError, via: &str) -> Denial {
    let throttled = match err.kind {
        ApiErrorKind::BudgetExhausted { retry_in } => Some((
            retry_in,
            format!(
                "the budget of {via} (its spec.budget readsPerSecond, share and burst) has no call free now: try again after Retry-After"
            ),
        )),
        _ if err.is_rate_limited() => Some((
            err.retry_after().unwrap_or(Duration::from_secs(1)),
            format!(
                "MetaStudio throttled CreateOnceCode through {via} ({err}): try again after Retry-After"
            ),
        )),
        _ => None,
    };
    match throttled {
        Some((wait, message)) => Denial::too_many(reason::QUOTA_EXHAUSTED, message, wait),
        None => Denial::new(
            502,
            reason::METASTUDIO_ERROR,
            format!("CreateOnceCode through {via} failed: {err}"),
        ),
    }
}
