//! The reset ledger: the token each code was last reset for. It outlives
//! listings: a code left out of the selection keeps its entry, and a code
//! missing from a listing keeps it too, for [`RETENTION`] after complete
//! listings first lacked it. An incomplete listing forgets nothing.

use crate::crd::{ActivationCodeStatus, LedgerEntry, MissingCodes};
use crate::metastudio::Listing;
use jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, HashSet};

/// How long a code's entry is kept after complete listings stopped showing
/// it (deleted, or hidden by a fault of the service).
pub const RETENTION: SignedDuration = SignedDuration::from_hours(24 * 7);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    tokens: BTreeMap<String, String>,
    missing: BTreeMap<String, Timestamp>,
}

impl Ledger {
    /// The ledger a status holds, with the per-code entries of an earlier
    /// operator version folded in (the ledger wins where both name a code).
    pub fn of(status: &ActivationCodeStatus) -> Self {
        let mut ledger = Ledger::default();
        for legacy in &status.codes {
            if let Some(token) = legacy.last_reset.as_ref().and_then(|r| r.token.as_deref()) {
                ledger.record(&legacy.id, token);
            }
        }
        for entry in &status.reset_ledger {
            for id in &entry.codes {
                ledger.tokens.insert(id.clone(), entry.token.clone());
            }
        }
        for group in &status.missing_codes {
            for id in &group.codes {
                ledger.missing.insert(id.clone(), group.since);
            }
        }
        ledger
    }

    /// The token `code_id` was last reset for.
    pub fn token(&self, code_id: &str) -> Option<&str> {
        self.tokens.get(code_id).map(String::as_str)
    }

    /// Records that `code_id` was reset for `token`.
    pub fn record(&mut self, code_id: &str, token: &str) {
        self.tokens.insert(code_id.to_owned(), token.to_owned());
    }

    /// Takes a listing into account: codes it shows are present; when it
    /// is complete, entries it lacks are missing from `now` on and dropped
    /// once missing for longer than [`RETENTION`]. Returns the ids dropped.
    pub fn observe(&mut self, listing: &Listing, now: Timestamp) -> Vec<String> {
        let present: HashSet<&str> = listing
            .codes
            .iter()
            .map(|c| c.active_code_id.as_str())
            .collect();
        self.missing.retain(|id, _| !present.contains(id.as_str()));
        if !listing.complete {
            return Vec::new();
        }
        for id in self.tokens.keys() {
            if !present.contains(id.as_str()) {
                self.missing.entry(id.clone()).or_insert(now);
            }
        }
        let expired: Vec<String> = self
            .missing
            .iter()
            .filter(|(_, since)| now.duration_since(**since) > RETENTION)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            self.missing.remove(id);
            self.tokens.remove(id);
        }
        expired
    }

    /// Whether a complete listing lacked `code_id`, and since when.
    pub fn missing_since(&self, code_id: &str) -> Option<Timestamp> {
        self.missing.get(code_id).copied()
    }

    /// Writes the ledger into `status` (ids sorted, grouped by token and by
    /// the time they went missing) and drops the deprecated per-code list.
    pub fn store(&self, status: &mut ActivationCodeStatus) {
        let mut by_token: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (id, token) in &self.tokens {
            by_token.entry(token).or_default().push(id.clone());
        }
        status.reset_ledger = by_token
            .into_iter()
            .map(|(token, codes)| LedgerEntry {
                token: token.to_owned(),
                codes,
            })
            .collect();
        let mut by_time: BTreeMap<Timestamp, Vec<String>> = BTreeMap::new();
        for (id, since) in &self.missing {
            by_time.entry(*since).or_default().push(id.clone());
        }
        status.missing_codes = by_time
            .into_iter()
            .map(|(since, codes)| MissingCodes { since, codes })
            .collect();
        status.codes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{CodeStatus, LastReset};
    use crate::metastudio::ActiveCode;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn listing(ids: &[&str], complete: bool) -> Listing {
        let codes = ids
            .iter()
            .map(|id| {
                serde_json::from_value::<ActiveCode>(serde_json::json!({
                    "active_code_id": id, "active_code": "v", "robot_id": "r", "valid_period": 1,
                    "create_time": "2026-01-01T00:00:00Z", "update_time": "2026-01-01T00:00:00Z"
                }))
                .unwrap()
            })
            .collect();
        Listing { codes, complete }
    }

    #[test]
    fn entries_outlive_incomplete_listings_and_expire_after_retention() {
        let t0 = at("2026-12-01T00:00:00Z");
        let mut ledger = Ledger::default();
        ledger.record("a", "t1");
        ledger.record("b", "t1");
        // An incomplete listing without b: nothing is missing.
        assert!(ledger.observe(&listing(&["a"], false), t0).is_empty());
        assert_eq!(ledger.missing_since("b"), None);
        // A complete one: b is missing from now on, still in the ledger.
        assert!(ledger.observe(&listing(&["a"], true), t0).is_empty());
        assert_eq!(ledger.missing_since("b"), Some(t0));
        assert_eq!(ledger.token("b"), Some("t1"));
        // Back within the retention: present again.
        ledger.observe(&listing(&["a", "b"], false), t0 + RETENTION);
        assert_eq!(ledger.missing_since("b"), None);
        // Missing for longer than the retention: dropped.
        ledger.observe(&listing(&["a"], true), t0 + RETENTION);
        let dropped = ledger.observe(
            &listing(&["a"], true),
            t0 + RETENTION * 2 + SignedDuration::from_secs(1),
        );
        assert_eq!(dropped, ["b"]);
        assert_eq!(ledger.token("b"), None);
        assert_eq!(ledger.token("a"), Some("t1"));
    }

    #[test]
    fn round_trips_through_status_and_folds_in_legacy_entries() {
        let t0 = at("2026-12-01T00:00:00Z");
        let legacy = |id: &str, token: Option<&str>| CodeStatus {
            id: id.into(),
            room_id: None,
            valid_period: 1,
            expire_time: None,
            update_time: t0,
            last_reset: Some(LastReset {
                token: token.map(str::to_owned),
                time: t0,
            }),
        };
        let mut status = ActivationCodeStatus {
            codes: vec![legacy("old", Some("t0")), legacy("expiry-only", None)],
            ..Default::default()
        };
        let mut ledger = Ledger::of(&status);
        assert_eq!(ledger.token("old"), Some("t0"));
        assert_eq!(ledger.token("expiry-only"), None);
        ledger.record("z", "t1");
        ledger.record("a", "t1");
        ledger.observe(&listing(&["a", "z"], true), t0);
        ledger.store(&mut status);
        assert!(status.codes.is_empty());
        assert_eq!(status.reset_ledger.len(), 2);
        assert_eq!(status.reset_ledger[1].codes, ["a", "z"]);
        assert_eq!(status.missing_codes[0].codes, ["old"]);
        assert_eq!(Ledger::of(&status), ledger);
    }
}
