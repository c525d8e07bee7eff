//! What the simulator saw: calls by operation and status, and the changes
//! it applied to each code. Tests and benchmarks read these to prove, for
//! example, that a code was reset exactly once.

use crate::metastudio::Operation;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Status label of a call that got no HTTP answer.
pub const DROPPED: &str = "dropped";
/// Status label of a call that was applied but whose answer was lost.
pub const LOST: &str = "lost";

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Operation name, then HTTP status (or `dropped` / `lost`), to calls.
    pub calls: BTreeMap<String, BTreeMap<String, u64>>,
    /// Applied resets per code id (including those whose answer was lost).
    pub resets: BTreeMap<String, u64>,
    /// Applied updates per code id (including those whose answer was lost).
    pub updates: BTreeMap<String, u64>,
    /// Codes created, by id (each once; including those whose answer was
    /// lost).
    #[serde(default)]
    pub creates: BTreeMap<String, u64>,
    /// Applied deletes per code id (including those whose answer was lost).
    #[serde(default)]
    pub deletes: BTreeMap<String, u64>,
}

impl Counters {
    pub(crate) fn record_call(&mut self, operation: Operation, status: &str) {
        *self
            .calls
            .entry(operation.name().to_owned())
            .or_default()
            .entry(status.to_owned())
            .or_default() += 1;
    }

    pub(crate) fn record_change(&mut self, operation: Operation, code_id: &str) {
        let map = match operation {
            Operation::ResetActiveCode => &mut self.resets,
            Operation::UpdateActiveCode => &mut self.updates,
            Operation::CreateActiveCode => &mut self.creates,
            Operation::DeleteActiveCode => &mut self.deletes,
            _ => return,
        };
        *map.entry(code_id.to_owned()).or_default() += 1;
    }

    /// Calls of one operation, whatever their outcome.
    pub fn calls_of(&self, operation: Operation) -> u64 {
        self.calls
            .get(operation.name())
            .map_or(0, |by_status| by_status.values().sum())
    }

    /// Calls of one operation with one status label (`"200"`, `"lost"`, ...).
    pub fn calls_with(&self, operation: Operation, status: &str) -> u64 {
        self.calls
            .get(operation.name())
            .and_then(|by_status| by_status.get(status))
            .copied()
            .unwrap_or(0)
    }

    /// Calls of every operation with one status label (`"429"`, ...).
    pub fn answered(&self, status: &str) -> u64 {
        self.calls
            .values()
            .filter_map(|by_status| by_status.get(status))
            .sum()
    }

    pub fn total_calls(&self) -> u64 {
        self.calls.values().flat_map(|m| m.values()).sum()
    }

    pub fn resets_of(&self, code_id: &str) -> u64 {
        self.resets.get(code_id).copied().unwrap_or(0)
    }

    pub fn updates_of(&self, code_id: &str) -> u64 {
        self.updates.get(code_id).copied().unwrap_or(0)
    }

    pub fn total_resets(&self) -> u64 {
        self.resets.values().sum()
    }

    pub fn total_updates(&self) -> u64 {
        self.updates.values().sum()
    }

    /// Codes created so far.
    pub fn total_creates(&self) -> u64 {
        self.creates.values().sum()
    }

    /// Deletes applied so far (a code deleted twice counts twice).
    pub fn total_deletes(&self) -> u64 {
        self.deletes.values().sum()
    }
}
