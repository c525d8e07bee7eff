//! The ledger: the token each code was last reset for and, for a resource
//! with spec.count, every code of its room, each marked created by this
//! resource or found there. It outlives listings: a code left out of the
//! selection keeps its token entry, and a code missing from a listing keeps
//! its entries too, for [`RETENTION`] after complete listings first lacked
//! it. An incomplete listing forgets nothing. Each id is on record once,
//! so the status stays bounded.

use crate::crd::{ActivationCodeStatus, LedgerEntry, MissingCodes};
use crate::metastudio::Listing;
use jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// How long a code's entry is kept after complete listings stopped showing
/// it (deleted, or hidden by a fault of the service).
pub const RETENTION: SignedDuration = SignedDuration::from_hours(24 * 7);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    tokens: BTreeMap<String, String>,
    /// Codes this resource created.
    created: BTreeSet<String>,
    /// The other codes of a counted resource's room, as last listed, that
    /// no token names.
    found: BTreeSet<String>,
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
            if entry.created {
                ledger.created.extend(entry.codes.iter().cloned());
            }
        }
        ledger.created.extend(status.created_codes.iter().cloned());
        ledger.found.extend(
            status
                .found_codes
                .iter()
                .filter(|id| !ledger.created.contains(*id))
                .cloned(),
        );
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

    /// Records that `code_id` was reset for `token` (a found code is then
    /// on record by its token).
    pub fn record(&mut self, code_id: &str, token: &str) {
        self.found.remove(code_id);
        self.tokens.insert(code_id.to_owned(), token.to_owned());
    }

    /// Whether this resource created `code_id`.
    pub fn created(&self, code_id: &str) -> bool {
        self.created.contains(code_id)
    }

    /// The codes this resource created, sorted.
    pub fn created_ids(&self) -> impl Iterator<Item = &str> {
        self.created.iter().map(String::as_str)
    }

    /// Whether any list names `code_id`: a code of a counted resource's
    /// room that is not known is new since the last listing on record.
    pub fn known(&self, code_id: &str) -> bool {
        self.tokens.contains_key(code_id)
            || self.created.contains(code_id)
            || self.found.contains(code_id)
    }

    /// Records that this resource created `code_id`, fresh for `token` (the
    /// reset.token of its creation, if any).
    pub fn adopt(&mut self, code_id: &str, token: Option<&str>) {
        self.found.remove(code_id);
        self.missing.remove(code_id);
        self.created.insert(code_id.to_owned());
        if let Some(token) = token {
            self.record(code_id, token);
        }
    }

    /// Takes in the codes of a counted resource's room, as listed: those no
    /// list names are found there. A complete listing is the room as it
    /// is, so found codes it lacks are forgotten (created ones and tokens
    /// follow [`Ledger::observe`]).
    pub fn note_room<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>, complete: bool) {
        let listed: BTreeSet<&str> = ids.into_iter().collect();
        if complete {
            self.found.retain(|id| listed.contains(id.as_str()));
        }
        for id in listed {
            if !self.known(id) {
                self.found.insert(id.to_owned());
            }
        }
    }

    /// Forgets the found codes: the resource no longer counts its room.
    pub fn forget_found(&mut self) {
        self.found.clear();
    }

    /// Forgets `code_id` altogether: it was deleted.
    pub fn forget(&mut self, code_id: &str) {
        self.tokens.remove(code_id);
        self.created.remove(code_id);
        self.found.remove(code_id);
        self.missing.remove(code_id);
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
        for id in self.tokens.keys().chain(&self.created) {
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
            self.forget(id);
        }
        expired
    }

    /// Whether a complete listing lacked `code_id`, and since when.
    pub fn missing_since(&self, code_id: &str) -> Option<Timestamp> {
        self.missing.get(code_id).copied()
    }

    /// Writes the ledger into `status` (ids sorted, grouped by token and by
    /// whether this resource created them, and by the time they went
    /// missing; each id once) and drops the deprecated per-code list.
    pub fn store(&self, status: &mut ActivationCodeStatus) {
        let mut by_token: BTreeMap<(&str, bool), Vec<String>> = BTreeMap::new();
        for (id, token) in &self.tokens {
            let created = self.created.contains(id);
            by_token
                .entry((token, created))
                .or_default()
                .push(id.clone());
        }
        status.reset_ledger = by_token
            .into_iter()
            .map(|((token, created), codes)| LedgerEntry {
                token: token.to_owned(),
                codes,
                created,
            })
            .collect();
        status.created_codes = self
            .created
            .iter()
            .filter(|id| !self.tokens.contains_key(*id))
            .cloned()
            .collect();
        status.found_codes = self.found.iter().cloned().collect();
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
    fn a_counted_room_is_on_record_once_per_code_created_or_found() {
        let t0 = at("2026-12-01T00:00:00Z");
        let mut ledger = Ledger::default();
        ledger.note_room(["f1", "f2", "c1"], true);
        ledger.adopt("c1", Some("t1"));
        ledger.adopt("c2", None);
        ledger.record("f2", "t1");
        assert!(ledger.known("f1") && ledger.known("c2") && !ledger.known("new"));
        let mut status = ActivationCodeStatus::default();
        ledger.store(&mut status);
        // Each id once: by token (marked created or not), else in the
        // created or found list.
        let entries: Vec<(&str, bool, &[String])> = status
            .reset_ledger
            .iter()
            .map(|e| (e.token.as_str(), e.created, &e.codes[..]))
            .collect();
        assert_eq!(
            entries,
            [
                ("t1", false, &["f2".to_owned()][..]),
                ("t1", true, &["c1".to_owned()][..])
            ]
        );
        assert_eq!(status.created_codes, ["c2"]);
        assert_eq!(status.found_codes, ["f1"]);
        assert_eq!(
            status.created_code_ids().into_iter().collect::<Vec<_>>(),
            ["c1", "c2"]
        );
        assert_eq!(Ledger::of(&status), ledger);
        // A complete listing is the room: a found code it lacks is
        // forgotten, a created one is missing (kept for the retention).
        ledger.note_room(["f2", "c1"], true);
        ledger.observe(&listing(&["f2", "c1"], true), t0);
        assert!(!ledger.known("f1"));
        assert_eq!(ledger.missing_since("c2"), Some(t0));
        assert!(ledger.created("c2"));
        // A deleted code is forgotten at once.
        ledger.forget("c1");
        assert!(!ledger.known("c1") && ledger.token("c1").is_none());
        // An earlier version's status names none of this: nothing is lost.
        ledger.forget_found();
        assert!(!ledger.known("f1") && ledger.known("f2"));
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
