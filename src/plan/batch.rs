//! Batches of a progressive rotation (`spec.reset.rollout`): at most
//! `maxCodes` token resets per `interval`, the first batch at once. A
//! batch window opens when resets are due and the last one has run its
//! interval; resets count when their intents are recorded, and a reset
//! that surely did not happen gives its place back.

use crate::crd::{Rollout, TokenRollout};
use jiff::{SignedDuration, Timestamp};

/// How many token resets may start now (`None`: no limit), opening a new
/// batch window when `due` resets wait and the last window is over.
pub fn allowance(
    policy: Option<&Rollout>,
    rollout: &mut TokenRollout,
    due: u32,
    now: Timestamp,
) -> Option<u32> {
    let Some((size, interval)) = policy.and_then(|p| batch_of(p, rollout.total)) else {
        rollout.batch_started_at = None;
        rollout.batch_resets = 0;
        return None;
    };
    let over = rollout
        .batch_started_at
        .is_none_or(|started| now.duration_since(started) >= interval);
    if over && due > 0 {
        rollout.batch_started_at = Some(now);
        rollout.batch_resets = 0;
    }
    Some(size.saturating_sub(rollout.batch_resets))
}

/// The batch size and interval of a valid policy.
fn batch_of(policy: &Rollout, total: u32) -> Option<(u32, SignedDuration)> {
    let size = policy.max_codes.parse().ok()?.of(total);
    let interval = SignedDuration::try_from(policy.interval.0).unwrap_or(SignedDuration::MAX);
    Some((size, interval))
}

/// Takes one place of the allowance; `false` when none is left.
pub fn take(allowance: &mut Option<u32>) -> bool {
    match allowance {
        None => true,
        Some(0) => false,
        Some(left) => {
            *left -= 1;
            true
        }
    }
}

/// When the next batch may start, while `deferred` resets wait for one.
pub fn schedule(policy: Option<&Rollout>, rollout: &mut TokenRollout, deferred: u32) {
    rollout.next_batch_time = policy
        .and_then(|p| batch_of(p, rollout.total))
        .zip(rollout.batch_started_at)
        .filter(|_| deferred > 0)
        .and_then(|((_, interval), started)| started.checked_add(interval).ok());
}

/// Counts token resets whose intents were recorded (`started`), or gives
/// places back for ones that surely did not happen (negative).
pub fn count(rollout: &mut TokenRollout, started: i64) {
    let resets = i64::from(rollout.batch_resets) + started;
    rollout.batch_resets = resets.clamp(0, i64::from(u32::MAX)) as u32;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::MaxCodes;

    fn at(minutes: i64) -> Timestamp {
        "2026-12-01T00:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_mins(minutes)
    }

    fn policy(max: MaxCodes) -> Rollout {
        serde_json::from_value(serde_json::json!({"maxCodes": max, "interval": "1h"})).unwrap()
    }

    fn rollout(total: u32) -> TokenRollout {
        TokenRollout {
            token: "t".into(),
            observed_at: at(0),
            done: 0,
            total,
            progress: String::new(),
            batch_started_at: None,
            batch_resets: 0,
            next_batch_time: None,
        }
    }

    #[test]
    fn batches_open_once_per_interval_and_count_recorded_resets() {
        let p = policy(MaxCodes::Count(30));
        let mut r = rollout(120);
        // The first batch at once.
        assert_eq!(allowance(Some(&p), &mut r, 120, at(0)), Some(30));
        count(&mut r, 30);
        schedule(Some(&p), &mut r, 90);
        assert_eq!(r.next_batch_time, Some(at(60)));
        // Within the hour: nothing left; one failure gives a place back.
        assert_eq!(allowance(Some(&p), &mut r, 90, at(59)), Some(0));
        count(&mut r, -1);
        assert_eq!(allowance(Some(&p), &mut r, 91, at(59)), Some(1));
        // After the interval: a new batch.
        assert_eq!(allowance(Some(&p), &mut r, 90, at(60)), Some(30));
        assert_eq!(r.batch_started_at, Some(at(60)));
        // Nothing deferred: no next batch.
        schedule(Some(&p), &mut r, 0);
        assert_eq!(r.next_batch_time, None);
    }

    #[test]
    fn a_percentage_is_of_the_codes_the_token_resets_and_no_policy_is_no_limit() {
        let mut r = rollout(120);
        let p = policy(MaxCodes::Text("10%".into()));
        assert_eq!(allowance(Some(&p), &mut r, 120, at(0)), Some(12));
        assert_eq!(allowance(None, &mut r, 120, at(0)), None);
        assert_eq!(r.batch_started_at, None);
        let mut unlimited = None;
        assert!(take(&mut unlimited) && take(&mut unlimited));
        let mut one = Some(1);
        assert!(take(&mut one) && !take(&mut one));
    }

    #[test]
    fn no_window_opens_while_nothing_is_due() {
        let p = policy(MaxCodes::Count(5));
        let mut r = rollout(10);
        assert_eq!(allowance(Some(&p), &mut r, 0, at(0)), Some(5));
        assert_eq!(r.batch_started_at, None);
    }
}
