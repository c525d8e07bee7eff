//! Who each resource called as at its last reconcile, kept in memory, so
//! that conflict detection reads nothing per reconcile: an older resource
//! that selects the same codes is a rival only if it called with the same
//! endpoint, project and credentials ([`CredentialsId`]). Recorded before
//! the listing, at every reconcile that gets that far:
//!
//! * connected: the [`CredentialsId`] it called with;
//! * stopped for a lasting reason (an invalid spec, suspension, deletion,
//!   a refused connection, credentials missing or malformed): no caller, it
//!   touches nothing and is no rival;
//! * stopped for a passing one (its Secret could not be read now): the
//!   last record stands.
//!
//! A resource not reconciled since the process started has no record: its
//! Secret is read to tell (see [`super::connect::same_caller`]), once per
//! such resource until its first reconcile records it, which every
//! resource has soon after the start. Squatters that never connect are thus
//! no rival and cost nothing, however many.

use crate::crd::ActivationCode;
use crate::metastudio::breaker::CredentialsId;
use kube::ResourceExt;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

/// What a resource's last reconcile recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// It connected with these credentials.
    Calls(CredentialsId),
    /// It stopped before connecting, for a reason that lasts.
    Nobody,
}

/// The records, by resource (its uid, or `namespace/name` without one).
#[derive(Debug, Default)]
pub struct Callers(Mutex<HashMap<String, Caller>>);

impl Callers {
    pub fn record(&self, resource: &ActivationCode, caller: Caller) {
        self.map().insert(key(resource), caller);
    }

    /// The record of `resource`'s last reconcile; `None` before its first
    /// since the process started.
    pub fn of(&self, resource: &ActivationCode) -> Option<Caller> {
        self.map().get(&key(resource)).copied()
    }

    /// Forgets the resources whose uid is not in `uids` (deleted).
    pub fn retain(&self, uids: &HashSet<String>) {
        self.map().retain(|key, _| uids.contains(key));
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Caller>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn key(resource: &ActivationCode) -> String {
    resource.uid().unwrap_or_else(|| {
        format!(
            "{}/{}",
            resource.namespace().unwrap_or_default(),
            resource.name_any()
        )
    })
}
