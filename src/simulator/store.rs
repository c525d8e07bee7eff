//! The simulator's in-memory MetaStudio: codes by id, indexed by robot, and
//! once-codes. Behaviour follows the API pages in `shared/api/`:
//! update and reset restart the validity window at the moment of the call,
//! reset mints a new code value, once-codes are single-use for 5 minutes.

use crate::metastudio::models::{ActiveCode, ActiveCodePage};
use crate::secret::Secret;
use jiff::{SignedDuration, Timestamp};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{HashMap, HashSet};

pub const ONCE_CODE_TTL: SignedDuration = SignedDuration::from_secs(5 * 60);

/// A store-level refusal, mapped to an HTTP error by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// `MSS.47010041`: no code with that id.
    UnknownCode(String),
    /// `MSS.00000003`: a parameter is out of range or missing.
    InvalidParameter(&'static str),
}

#[derive(Debug)]
pub struct Store {
    codes: HashMap<String, ActiveCode>,
    /// Code ids of each robot, in creation order (the list order).
    by_robot: HashMap<String, Vec<String>>,
    once_codes: HashMap<String, OnceCodeState>,
    rng: StdRng,
    /// Added to the wall clock, so tests can move time forward.
    clock_offset: SignedDuration,
    /// Codes left out of list pages yet counted in `count`, as a code is
    /// when the list shifts under a caller paging through it.
    missed_by_listings: HashSet<String>,
}

#[derive(Debug)]
struct OnceCodeState {
    expires: Timestamp,
    used: bool,
}

/// What using a once-code found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnceCodeUse {
    Accepted,
    AlreadyUsed,
    Expired,
    Unknown,
}

impl Store {
    pub fn new(seed: u64) -> Self {
        Self {
            codes: HashMap::new(),
            by_robot: HashMap::new(),
            once_codes: HashMap::new(),
            rng: StdRng::seed_from_u64(seed ^ 0x5EED_C0DE),
            clock_offset: SignedDuration::ZERO,
            missed_by_listings: HashSet::new(),
        }
    }

    /// Leaves `id` out of list pages (`missed`) or lists it again; `count`
    /// keeps counting it, so a caller sees an incomplete listing.
    pub fn miss_in_listings(&mut self, id: &str, missed: bool) {
        if missed {
            self.missed_by_listings.insert(id.to_owned());
        } else {
            self.missed_by_listings.remove(id);
        }
    }

    /// Now, to the second (the API's times carry no fractions).
    pub fn now(&self) -> Timestamp {
        let now = Timestamp::now() + self.clock_offset;
        Timestamp::from_second(now.as_second()).expect("now is in range")
    }

    pub fn advance_clock(&mut self, by: SignedDuration) {
        self.clock_offset += by;
    }

    fn random_string(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| alphabet[self.rng.random_range(0..alphabet.len())] as char)
            .collect()
    }

    fn new_id(&mut self) -> String {
        loop {
            let id = self.random_string(b"0123456789abcdef", 32);
            if !self.codes.contains_key(&id) {
                return id;
            }
        }
    }

    fn new_code_value(&mut self) -> Secret {
        Secret::new(self.random_string(b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789", 9))
    }

    fn expiry(from: Timestamp, valid_period: u16) -> Option<Timestamp> {
        (valid_period > 0).then(|| from + SignedDuration::from_hours(24 * i64::from(valid_period)))
    }

    /// Adds a code as if it was created or last changed `updated_at`.
    pub fn insert(
        &mut self,
        id: Option<String>,
        robot_id: &str,
        room_id: Option<String>,
        valid_period: u16,
        updated_at: Timestamp,
    ) -> ActiveCode {
        let id = id.unwrap_or_else(|| self.new_id());
        let code = ActiveCode {
            active_code_id: id.clone(),
            active_code: self.new_code_value(),
            robot_id: robot_id.to_owned(),
            room_id,
            valid_period,
            expire_time: Self::expiry(updated_at, valid_period),
            create_time: updated_at,
            update_time: updated_at,
        };
        if self.codes.insert(id.clone(), code.clone()).is_none() {
            self.by_robot
                .entry(robot_id.to_owned())
                .or_default()
                .push(id);
        }
        code
    }

    pub fn create(
        &mut self,
        robot_id: &str,
        room_id: Option<String>,
        valid_period: u16,
    ) -> Result<ActiveCode, StoreError> {
        if robot_id.is_empty() {
            return Err(StoreError::InvalidParameter("robot_id"));
        }
        let now = self.now();
        Ok(self.insert(None, robot_id, room_id, valid_period, now))
    }

    pub fn list(&self, robot_id: &str, offset: u32, limit: u32) -> ActiveCodePage {
        let ids = self
            .by_robot
            .get(robot_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let data = ids
            .iter()
            .skip(offset as usize)
            .take(limit as usize)
            .filter(|id| !self.missed_by_listings.contains(*id))
            .map(|id| self.codes[id].clone())
            .collect();
        ActiveCodePage {
            offset,
            limit,
            count: ids.len() as u32,
            data,
        }
    }

    pub fn show(&self, id: &str) -> Result<ActiveCode, StoreError> {
        self.codes
            .get(id)
            .cloned()
            .ok_or_else(|| StoreError::UnknownCode(id.to_owned()))
    }

    pub fn update(
        &mut self,
        id: &str,
        valid_period: Option<u16>,
    ) -> Result<ActiveCode, StoreError> {
        let now = self.now();
        let code = self
            .codes
            .get_mut(id)
            .ok_or_else(|| StoreError::UnknownCode(id.to_owned()))?;
        if let Some(days) = valid_period {
            code.valid_period = days;
        }
        code.update_time = now;
        code.expire_time = Self::expiry(now, code.valid_period);
        Ok(code.clone())
    }

    pub fn reset(&mut self, id: &str) -> Result<ActiveCode, StoreError> {
        if !self.codes.contains_key(id) {
            return Err(StoreError::UnknownCode(id.to_owned()));
        }
        let now = self.now();
        let value = self.new_code_value();
        let code = self.codes.get_mut(id).expect("checked above");
        code.active_code = value;
        code.update_time = now;
        code.expire_time = Self::expiry(now, code.valid_period);
        Ok(code.clone())
    }

    /// Deletes all the ids or, when one is unknown, none.
    pub fn delete(&mut self, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Err(StoreError::InvalidParameter("body"));
        }
        if let Some(unknown) = ids.iter().find(|id| !self.codes.contains_key(*id)) {
            return Err(StoreError::UnknownCode(unknown.clone()));
        }
        for id in ids {
            if let Some(code) = self.codes.remove(id)
                && let Some(list) = self.by_robot.get_mut(&code.robot_id)
            {
                list.retain(|x| x != id);
            }
        }
        Ok(())
    }

    pub fn once_code(&mut self) -> Secret {
        let value = self.random_string(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            64,
        );
        let now = self.now();
        // Expired and used once-codes can never be accepted again: keep
        // only what a client could still use (and what it just used, so a
        // second use is told `already_used` until the code expires).
        self.once_codes.retain(|_, state| state.expires > now);
        let expires = now + ONCE_CODE_TTL;
        self.once_codes.insert(
            value.clone(),
            OnceCodeState {
                expires,
                used: false,
            },
        );
        Secret::new(value)
    }

    /// Uses a once-code, as a chat client would.
    pub fn use_once_code(&mut self, value: &str) -> OnceCodeUse {
        let now = self.now();
        match self.once_codes.get_mut(value) {
            None => OnceCodeUse::Unknown,
            Some(state) if state.used => OnceCodeUse::AlreadyUsed,
            Some(state) if state.expires <= now => OnceCodeUse::Expired,
            Some(state) => {
                state.used = true;
                OnceCodeUse::Accepted
            }
        }
    }

    pub fn code_count(&self) -> usize {
        self.codes.len()
    }

    /// Every code, in no particular order (for tests).
    pub fn all_codes(&self) -> Vec<ActiveCode> {
        self.codes.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_code(valid_period: u16) -> (Store, String) {
        let mut store = Store::new(1);
        let t = "2023-09-01T06:34:21Z".parse().unwrap();
        let code = store.insert(None, "robot", Some("room".into()), valid_period, t);
        (store, code.active_code_id)
    }

    #[test]
    fn update_restarts_the_window_at_the_call() {
        let (mut store, id) = store_with_code(3);
        let updated = store.update(&id, Some(10)).unwrap();
        assert_eq!(updated.valid_period, 10);
        assert_eq!(
            updated.expire_time.unwrap(),
            updated.update_time + SignedDuration::from_hours(240)
        );
        let permanent = store.update(&id, Some(0)).unwrap();
        assert_eq!(permanent.expire_time, None);
    }

    #[test]
    fn reset_mints_a_new_value_and_keeps_id_period_and_creation() {
        let (mut store, id) = store_with_code(3);
        let before = store.show(&id).unwrap();
        let after = store.reset(&id).unwrap();
        assert_eq!(after.active_code_id, before.active_code_id);
        assert_ne!(after.active_code, before.active_code);
        assert_eq!(after.valid_period, 3);
        assert_eq!(after.create_time, before.create_time);
        assert!(after.update_time > before.update_time);
    }

    #[test]
    fn pages_follow_creation_order() {
        let mut store = Store::new(7);
        let t = Timestamp::now();
        let ids: Vec<String> = (0..25)
            .map(|_| store.insert(None, "r", None, 1, t).active_code_id)
            .collect();
        let page = store.list("r", 20, 10);
        assert_eq!(page.count, 25);
        let got: Vec<_> = page.data.iter().map(|c| c.active_code_id.clone()).collect();
        assert_eq!(got, ids[20..]);
        assert_eq!(store.list("other", 0, 10).count, 0);
    }

    #[test]
    fn delete_is_all_or_nothing() {
        let (mut store, id) = store_with_code(1);
        assert_eq!(
            store.delete(&[id.clone(), "nope".into()]),
            Err(StoreError::UnknownCode("nope".into()))
        );
        assert!(store.show(&id).is_ok());
        store.delete(std::slice::from_ref(&id)).unwrap();
        assert!(store.show(&id).is_err());
        assert_eq!(store.list("robot", 0, 10).count, 0);
    }

    #[test]
    fn once_codes_are_single_use_and_expire_after_five_minutes() {
        let mut store = Store::new(3);
        let first = store.once_code();
        assert_eq!(first.expose().len(), 64);
        assert_eq!(store.use_once_code(first.expose()), OnceCodeUse::Accepted);
        assert_eq!(
            store.use_once_code(first.expose()),
            OnceCodeUse::AlreadyUsed
        );
        let second = store.once_code();
        store.advance_clock(SignedDuration::from_secs(301));
        assert_eq!(store.use_once_code(second.expose()), OnceCodeUse::Expired);
        assert_eq!(store.use_once_code("never-issued"), OnceCodeUse::Unknown);
        // Issuing forgets the expired ones: memory stays bounded by the
        // codes of the last five minutes, however long the simulator runs.
        let third = store.once_code();
        assert_eq!(store.once_codes.len(), 1);
        assert_eq!(store.use_once_code(third.expose()), OnceCodeUse::Accepted);
    }
}
