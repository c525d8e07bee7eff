//! One request, step by step (see [`crate::broker`]): each step refuses
//! with its own [`Denial`] before the next, and nothing remote happens
//! before the caller is authenticated, within its bucket and authorised.

use super::contract::{Denial, reason};
use super::issuer::{Issued, Issuer};
use super::limits::Limits;
use super::review::{Caller, Reviewer};
use super::route::{RequestHead, route};
use crate::engine::host::SecretSource;
use crate::tenancy::Directory;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The broker's state: who reviews, who issues, the limits, whether its
/// caches are synced, and which namespaces it serves.
pub struct Broker<R, D, S> {
    pub reviewer: R,
    pub issuer: Issuer<D, S>,
    pub limits: Limits,
    /// Set once the connection caches have their first list.
    pub ready: Arc<AtomicBool>,
    /// The operator's watched namespaces; empty: all.
    pub namespaces: Vec<String>,
}

/// What a request came to: the caller when it was authenticated, and the
/// code or why not.
pub struct Outcome {
    pub caller: Option<Caller>,
    pub connection: Option<String>,
    pub result: Result<Issued, Denial>,
}

impl<R: Reviewer, D: Directory + Sync, S: SecretSource> Broker<R, D, S> {
    /// Answers one request: its head and its `Authorization` header.
    pub async fn answer(&self, head: RequestHead<'_>, authorization: Option<&[u8]>) -> Outcome {
        let (mut caller, mut connection) = (None, None);
        let result = self
            .steps(head, authorization, &mut caller, &mut connection)
            .await;
        Outcome {
            caller,
            connection,
            result,
        }
    }

    /// The steps; `seen_caller` and `seen_connection` get what the request
    /// turned out to be as soon as it is known (for the audit line).
    async fn steps(
        &self,
        head: RequestHead<'_>,
        authorization: Option<&[u8]>,
        seen_caller: &mut Option<Caller>,
        seen_connection: &mut Option<String>,
    ) -> Result<Issued, Denial> {
        let connection = route(head)?;
        *seen_connection = Some(connection.to_owned());
        if !self.ready.load(Ordering::Acquire) {
            return Err(Denial::new(
                503,
                reason::NOT_READY,
                "the broker is starting (its caches of connection resources are not synced): try again in a few seconds",
            ));
        }
        let token = bearer_token(authorization)?;
        let caller = self.reviewer.authenticate(token).await?;
        *seen_caller = Some(caller.clone());
        self.serves(&caller.namespace)?;
        self.limits.admit_caller(&caller.id())?;
        self.reviewer.authorize(&caller, connection).await?;
        self.issuer
            .issue(&caller.namespace, connection, &self.limits)
            .await
    }

    /// Whether this operator serves `namespace` (its watched namespaces).
    fn serves(&self, namespace: &str) -> Result<(), Denial> {
        if self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace) {
            return Ok(());
        }
        Err(Denial::new(
            403,
            reason::CONNECTION_NOT_ALLOWED,
            format!(
                "this operator does not serve namespace {namespace} (it watches {}): ask for a release that watches it",
                self.namespaces.join(", ")
            ),
        ))
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer_token(header: Option<&[u8]>) -> Result<&str, Denial> {
    let missing = || {
        Denial::unauthenticated(
            "send the workload's ServiceAccount token as Authorization: Bearer <token> (a projected token with the broker's audience)",
        )
    };
    let value = std::str::from_utf8(header.ok_or_else(missing)?).map_err(|_| missing())?;
    let (scheme, token) = value.trim().split_once(' ').ok_or_else(missing)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(missing());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bearer_token_is_taken() {
        assert_eq!(bearer_token(Some(b"Bearer abc.def")), Ok("abc.def"));
        assert_eq!(bearer_token(Some(b"bearer  abc")), Ok("abc"));
        for header in [
            None,
            Some(&b"Basic dXNlcjpwYXNz"[..]),
            Some(b"Bearer"),
            Some(b"Bearer "),
            Some(b"Bearer a b"),
            Some(b"abc"),
            Some(b"Bearer \xff"),
        ] {
            let denial = bearer_token(header).unwrap_err();
            assert_eq!(denial.status, 401, "{header:?}");
            assert!(!denial.message.contains("dXNlcjpwYXNz"));
        }
    }
}
