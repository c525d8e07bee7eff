//! The status of an `ActivationCode`: what the operator observed and did.
//! Bounded whatever the number of codes: a few counts, at most
//! [`MAX_DRIFT_SHOWN`] drift entries, the intents of one batch, and a
//! ledger of one short entry per code (its id, grouped by the token it was
//! last reset for and, with spec.count, by whether this resource created
//! it): each id is on record once. 10,000 codes of 32-character ids stay
//! well under 512 KiB.

use super::{count_schema, date_time_schema, days_schema};
use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The most drift entries status lists; `driftCount` has the total.
pub const MAX_DRIFT_SHOWN: usize = 20;

/// Observed state, written by the operator.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivationCodeStatus {
    /// The metadata.generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Ready: the last sync completed and the codes match the spec (or, in
    /// Observe, were observed). Synced: the remote codes match the spec.
    #[serde(default)]
    pub conditions: Vec<Condition>,

    /// How many codes this resource manages, as of the last sync: with
    /// spec.count, the codes its room holds (those it created included).
    /// The scale subresource's status replicas, what `kubectl get` shows
    /// as Codes beside Desired (spec.count).
    #[serde(default)]
    #[schemars(schema_with = "count_schema")]
    pub managed_codes: u32,

    /// The earliest expiry among the managed codes; absent when every
    /// managed code is permanent. `metastudio-operator codes list` shows
    /// each code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub next_expire_time: Option<Timestamp>,

    /// Deprecated: the per-code entries of operator versions before the
    /// reset ledger. Read once into resetLedger (so no code is reset twice
    /// for a token across the upgrade) and no longer written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<CodeStatus>,

    /// Differences between the remote codes and the spec that are not (yet)
    /// fixed: in Observe every difference, in Enforce those that failed. At
    /// most 20 are listed; driftCount has how many there are.
    #[serde(default)]
    pub drift: Vec<Drift>,

    /// How many differences there are (drift lists at most 20 of them).
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(schema_with = "count_schema")]
    pub drift_count: u32,

    /// The reset.token being rolled out, when this operator first saw it,
    /// and how far its rotation has come. Codes created after that moment
    /// are fresh already: they are not reset for this token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_token: Option<TokenRollout>,

    /// The token each code was last reset for, as the ids of the codes
    /// grouped by token: what makes a token apply exactly once per code. A
    /// code's entry is kept while the code is left out of the selection,
    /// and for 7 days while it is missing from complete listings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reset_ledger: Vec<LedgerEntry>,

    /// Codes this resource created (spec.count) that resetLedger does not
    /// list (it marks the ones it lists as created), sorted. Kept while the
    /// code exists, and for 7 days after complete listings first lacked
    /// it. A surplus deletion takes these first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created_codes: Vec<String>,

    /// The other codes of the room of a resource with spec.count, that
    /// resetLedger does not list, sorted: every code of the room is on
    /// record once, so a code that a later listing shows and no list names
    /// is new since (a create whose answer was lost).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub found_codes: Vec<String>,

    /// Codes of the reset ledger that complete listings no longer show,
    /// grouped by when they were first missed. Their entries are dropped 7
    /// days after that; a code that shows up again is taken off this list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_codes: Vec<MissingCodes>,

    /// Resets started but not yet confirmed, at most one batch of them. A
    /// reset mints a new code, so the intent is recorded before the call;
    /// after a crash or a lost answer the operator checks the remote code
    /// to learn whether it happened, so each code is reset exactly once per
    /// token.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_resets: Vec<ResetIntent>,

    /// Creates started but not yet confirmed (spec.count), at most one
    /// batch. A create is not idempotent and takes no client token, so the
    /// intent is recorded before the call; no further create is made until
    /// it is settled from a complete listing: the codes of its room that no
    /// list of this status names are the ones it created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_creates: Vec<CreateIntent>,

    /// Deletes started but not yet confirmed (spec.surplus Delete), at
    /// most one batch: recorded before the call, settled from the next
    /// complete listing (a code it lacks was deleted). No create or delete
    /// is made while one is in doubt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_deletes: Vec<DeleteIntent>,

    /// When the remote codes were last listed and compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub last_sync_time: Option<Timestamp>,

    /// The robot (spec.robotId) this status, its reset ledger and pending
    /// resets belong to, recorded by the first reconcile. spec.robotId is
    /// immutable: where the API server does not enforce that (before
    /// Kubernetes 1.25), a spec naming another robot stops the resource
    /// with InvalidSpec instead of applying this ledger to another robot's
    /// codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub robot_id: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A kstatus-style condition.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready, Synced, Reconciling or Stalled.
    #[serde(rename = "type")]
    pub type_: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    /// One word, CamelCase, that names the cause (e.g. CredentialsNotFound).
    pub reason: String,
    /// What happened and what to do about it.
    pub message: String,
    /// When status last changed.
    #[schemars(schema_with = "date_time_schema")]
    pub last_transition_time: Timestamp,
    /// The metadata.generation this condition describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One managed code as an earlier operator version recorded it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CodeStatus {
    /// Activation code id.
    pub id: String,
    /// Interactive dialog (room) of the code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    /// Validity in days (0 = permanent).
    #[schemars(schema_with = "days_schema")]
    pub valid_period: u16,
    /// When the code expires; absent for permanent codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub expire_time: Option<Timestamp>,
    /// When MetaStudio last changed the code.
    #[schemars(schema_with = "date_time_schema")]
    pub update_time: Timestamp,
    /// The last reset this operator made, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reset: Option<LastReset>,
}

/// A reset made by an earlier operator version.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastReset {
    /// The latest reset.token this code was reset for (a reset before expiry
    /// keeps it); absent when it was never reset for a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// When the last reset happened (the code's update time after it).
    #[schemars(schema_with = "date_time_schema")]
    pub time: Timestamp,
}

/// The codes last reset for one token.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    /// The reset.token value.
    pub token: String,
    /// Ids of the codes whose latest reset was for this token, sorted.
    pub codes: Vec<String>,
    /// Whether this resource created these codes (spec.count); a code it
    /// creates counts as reset for the token of its creation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub created: bool,
}

/// Ledger codes that complete listings stopped showing at one moment.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MissingCodes {
    /// When a complete listing first lacked them.
    #[schemars(schema_with = "date_time_schema")]
    pub since: Timestamp,
    /// Their ids, sorted.
    pub codes: Vec<String>,
}

/// A reset.token value, when it was first seen, and its rotation's
/// progress.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenRollout {
    /// The reset.token value.
    pub token: String,
    /// When the operator first saw this value.
    #[schemars(schema_with = "date_time_schema")]
    pub observed_at: Timestamp,
    /// Managed codes reset for this token so far.
    #[serde(default)]
    #[schemars(schema_with = "count_schema")]
    pub done: u32,
    /// Managed codes this token resets in all (codes created after it was
    /// first seen are fresh and not counted).
    #[serde(default)]
    #[schemars(schema_with = "count_schema")]
    pub total: u32,
    /// "done/total", for `kubectl get`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub progress: String,
    /// When the current batch of spec.reset.rollout began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub batch_started_at: Option<Timestamp>,
    /// Resets the current batch has started (at most rollout.maxCodes).
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(schema_with = "count_schema")]
    pub batch_resets: u32,
    /// When the next batch may start, while codes are left and this batch
    /// is used up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub next_batch_time: Option<Timestamp>,
}

/// A reset about to be made, recorded before the call.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResetIntent {
    /// Activation code id.
    pub code_id: String,
    /// The token the reset applies; absent for a reset before expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The code's update time before the reset.
    #[schemars(schema_with = "date_time_schema")]
    pub previous_update_time: Timestamp,
    /// A keyed fingerprint of the code value before the reset (not the value;
    /// it cannot be reversed without the credentials). A reset is the only
    /// change that alters the value, so this settles whether it happened.
    pub previous_fingerprint: String,
    /// When the intent was recorded.
    #[schemars(schema_with = "date_time_schema")]
    pub recorded_at: Timestamp,
    /// When the reset's answer was lost (a timeout, a broken connection, a
    /// 5xx, or its call window ran out), or when a run first found the
    /// intent of another run (one in progress elsewhere, or interrupted)
    /// unsettled. The code is not reset again until its call window and
    /// then the reset grace have passed since, as the call may still be
    /// sent and the server may apply it late. Absent while the run that
    /// recorded it is still within its call window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub unanswered_since: Option<Timestamp>,
    /// The call window of the intent's batch, in seconds: the time its
    /// resets take at the write rate, half as long again, and one request
    /// timeout. The run that recorded it sends none of its calls after this
    /// has passed on its own clock since the intent was recorded (it cuts
    /// any still waiting and records what is left anew); another run counts
    /// it from unansweredSince, its own first sight, so no two clocks are
    /// compared. Absent once the call has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "count_schema")]
    pub call_window_seconds: Option<u32>,
}

/// Creates about to be made in the room (spec.count), recorded before the
/// calls.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateIntent {
    /// The room the codes are created in.
    pub room_id: String,
    /// How many creates may have happened: those started and not answered.
    #[schemars(schema_with = "count_schema")]
    pub count: u32,
    /// The reset.token when they were recorded: a code they created counts
    /// as reset for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// When the intent was recorded.
    #[schemars(schema_with = "date_time_schema")]
    pub recorded_at: Timestamp,
    /// When the answers were lost, or when a run first found the intent of
    /// another run unsettled; as a reset intent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub unanswered_since: Option<Timestamp>,
    /// The call window of the batch, in seconds; as a reset intent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "count_schema")]
    pub call_window_seconds: Option<u32>,
}

/// Deletes about to be made (spec.surplus Delete), recorded before the
/// calls.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeleteIntent {
    /// The codes to delete, sorted.
    pub code_ids: Vec<String>,
    /// When the intent was recorded.
    #[schemars(schema_with = "date_time_schema")]
    pub recorded_at: Timestamp,
    /// When the answers were lost, or when a run first found the intent of
    /// another run unsettled; as a reset intent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "date_time_schema")]
    pub unanswered_since: Option<Timestamp>,
    /// The call window of the batch, in seconds; as a reset intent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "count_schema")]
    pub call_window_seconds: Option<u32>,
}

/// A difference between a remote code and the spec.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Drift {
    /// Activation code id; empty for a code not created yet.
    pub code_id: String,
    /// What differs: validPeriod, reset (a reset is due), expiry (a
    /// renewal is due) or count (a code to create, or one over
    /// spec.count).
    pub field: String,
    /// The remote value.
    pub observed: String,
    /// The value the spec asks for.
    pub desired: String,
}

impl ActivationCodeStatus {
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// The token `code_id` was last reset for, by the ledger (or, before
    /// the first write of this version, by the deprecated per-code list).
    pub fn last_token(&self, code_id: &str) -> Option<&str> {
        self.reset_ledger
            .iter()
            .find(|e| {
                e.codes
                    .binary_search_by(|c| c.as_str().cmp(code_id))
                    .is_ok()
            })
            .map(|e| e.token.as_str())
            .or_else(|| {
                self.codes
                    .iter()
                    .find(|c| c.id == code_id)
                    .and_then(|c| c.last_reset.as_ref()?.token.as_deref())
            })
    }

    /// Whether intents are on record: resets, creates or deletes whose
    /// outcome is not settled yet.
    pub fn has_intents(&self) -> bool {
        !(self.pending_resets.is_empty()
            && self.pending_creates.is_empty()
            && self.pending_deletes.is_empty())
    }

    /// The ids of the codes this resource created (spec.count), sorted:
    /// `createdCodes` and the reset ledger's entries marked created.
    pub fn created_code_ids(&self) -> std::collections::BTreeSet<&str> {
        self.reset_ledger
            .iter()
            .filter(|e| e.created)
            .flat_map(|e| &e.codes)
            .chain(&self.created_codes)
            .map(String::as_str)
            .collect()
    }

    /// How many differences remain (a status of an earlier version has no
    /// driftCount, only its drift list).
    pub fn drift_total(&self) -> u32 {
        self.drift_count.max(self.drift.len() as u32)
    }

    /// Sets `drift` (at most [`MAX_DRIFT_SHOWN`]) and `driftCount`.
    pub fn set_drift(&mut self, drift: impl IntoIterator<Item = Drift>) {
        let mut all = drift.into_iter();
        self.drift = all.by_ref().take(MAX_DRIFT_SHOWN).collect();
        self.drift_count = (self.drift.len() + all.count()) as u32;
    }
}
