//! From an authorised request to a code: the connection the caller's
//! namespace may use (the same tenancy rules as ActivationCodes), its
//! credentials, read now, those credentials' share of the quota, and the
//! CreateOnceCode call.

use super::contract::{Denial, ONCE_CODE_VALIDITY, OnceCodeGrant, reason};
use super::limits::Limits;
use crate::engine::conditions::reason::CONNECTION_NOT_FOUND;
use crate::engine::connect::connect_grant;
use crate::engine::host::SecretSource;
use crate::metastudio::Transport;
use crate::tenancy::{self, Directory, OperatorDefaults};
use std::sync::Arc;

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
        let grant =
            tenancy::once_code_grant(namespace, name, &self.directory).map_err(|refusal| {
                if refusal.reason == CONNECTION_NOT_FOUND {
                    Denial::new(404, reason::CONNECTION_NOT_FOUND, refusal.message)
                } else {
                    Denial::new(403, reason::CONNECTION_NOT_ALLOWED, refusal.message)
                }
            })?;
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
            .once_code()
            .await
            .map_err(|err| {
                Denial::new(
                    502,
                    reason::METASTUDIO_ERROR,
                    format!("CreateOnceCode through {} failed: {err}", grant.via),
                )
            })?;
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
