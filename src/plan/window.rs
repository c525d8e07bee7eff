//! How long a recorded reset may still happen: the call window its writer
//! gave it, then the grace.
//!
//! A writer records a batch of intents with a call window: the time the
//! batch can take (its resets at the write rate, half as long again for
//! 429s, and one request timeout for the last answer). It sends no attempt
//! of the batch once the window has passed on its own monotonic clock,
//! counted from just before the intent write; what is left waits for a new
//! intent write, which fails if anyone else wrote the status since (see
//! `engine::sync`). So a writer paused mid-batch (SIGSTOP, a stalled node)
//! finds its window over when it resumes, and asks the API server again
//! before it goes on.
//!
//! Anyone else first sees the intents after they were written, so a window
//! counted from that first sight, on the reader's own clock, ends no
//! earlier than the writer's: no clock is compared with another, and a
//! skewed writer clock changes nothing. The grace then covers a call the
//! server applies after its caller stopped waiting.

use crate::crd::{CreateIntent, DeleteIntent, ResetIntent};
use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

/// The longest call window: a batch slower than this (a tiny write
/// budget) is cut and recorded again, rather than keeping its codes from
/// others for longer after a crash.
pub const MAX_CALL_WINDOW_SECONDS: u32 = 3600;

/// The window of intents recorded by a version before call windows: that
/// of a full batch (200 resets) at the lowest documented write rate (3 a
/// second), half as long again, with the default 30 s timeout.
pub const LEGACY_CALL_WINDOW_SECONDS: u32 = 130;

/// The call window, in whole seconds, of a batch of `resets` at
/// `writes_per_second` (0, or anything not a positive number: no limit),
/// each attempt ending within `timeout`: the resets at the write rate,
/// half as long again (a 429 halves the pace for a while), and one timeout
/// for the last answer; at most [`MAX_CALL_WINDOW_SECONDS`].
pub fn call_window(resets: usize, writes_per_second: f64, timeout: Duration) -> u32 {
    let paced = if writes_per_second.is_finite() && writes_per_second > 0.0 {
        1.5 * resets as f64 / writes_per_second
    } else {
        0.0
    };
    let seconds = (paced + timeout.as_secs_f64()).ceil();
    if seconds.is_finite() && seconds < f64::from(MAX_CALL_WINDOW_SECONDS) {
        (seconds as u32).max(1)
    } else {
        MAX_CALL_WINDOW_SECONDS
    }
}

/// An intent of a call whose outcome may be in doubt: a reset, creates or
/// deletes recorded before their calls. They share how long their calls
/// may still happen.
pub trait InDoubt: Clone {
    /// When its answer was lost, or a run first found it unsettled.
    fn unanswered_since(&self) -> Option<Timestamp>;
    /// Its batch's call window, in seconds.
    fn call_window_seconds(&self) -> Option<u32>;
    /// The intent in doubt from `since`, with the window `window`.
    fn in_doubt(&self, since: Timestamp, window: Option<u32>) -> Self;
    /// The intent with the call window `window`.
    fn with_window(&self, window: Option<u32>) -> Self;
}

macro_rules! in_doubt {
    ($($intent:ty),*) => {$(
        impl InDoubt for $intent {
            fn unanswered_since(&self) -> Option<Timestamp> {
                self.unanswered_since
            }
            fn call_window_seconds(&self) -> Option<u32> {
                self.call_window_seconds
            }
            fn in_doubt(&self, since: Timestamp, window: Option<u32>) -> Self {
                Self {
                    unanswered_since: Some(since),
                    ..self.with_window(window)
                }
            }
            fn with_window(&self, window: Option<u32>) -> Self {
                Self {
                    call_window_seconds: window,
                    ..self.clone()
                }
            }
        }
    )*};
}
in_doubt!(ResetIntent, CreateIntent, DeleteIntent);

/// The intent as a reader first finds it unsettled: an intent of a batch in
/// progress (no `unansweredSince`) is in doubt from `now`, for its call
/// window (that of an earlier version's batch: [`LEGACY_CALL_WINDOW_SECONDS`])
/// and then the grace. An intent already in doubt stays as it is.
pub fn first_seen<I: InDoubt>(intent: &I, now: Timestamp) -> I {
    if intent.unanswered_since().is_some() {
        return intent.clone();
    }
    let window = intent
        .call_window_seconds()
        .unwrap_or(LEGACY_CALL_WINDOW_SECONDS);
    intent.in_doubt(now, Some(window))
}

/// Until when the call of an intent in doubt may still happen: its call
/// window, then `grace`, from `unansweredSince`; `None` for an intent not
/// yet in doubt (see [`first_seen`]).
pub fn in_doubt_until<I: InDoubt>(intent: &I, grace: SignedDuration) -> Option<Timestamp> {
    let since = intent.unanswered_since()?;
    let window = SignedDuration::from_secs(i64::from(intent.call_window_seconds().unwrap_or(0)));
    Some(
        since
            .checked_add(window.saturating_add(grace))
            .unwrap_or(Timestamp::MAX),
    )
}

/// The intent seen at `now` and whether its calls may still happen then:
/// `Some` (the intent as it stays on record) while they may.
pub fn still_in_doubt<I: InDoubt>(intent: &I, now: Timestamp, grace: SignedDuration) -> Option<I> {
    let seen = first_seen(intent, now);
    in_doubt_until(&seen, grace)
        .is_some_and(|until| now < until)
        .then_some(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_covers_the_batch_at_the_write_rate_and_one_timeout() {
        let timeout = Duration::from_secs(30);
        // (resets, writes a second, timeout, seconds)
        let table = [
            // 200 resets at cn-east-3's 3 a second: 67 s paced, 100 s with
            // the margin for 429s, and the last answer's 30 s.
            (200, 3.0, timeout, 130),
            (200, 5.0, timeout, 90),
            (10, 20.0, timeout, 31),
            (1, 3.0, timeout, 31),
            // No write budget: the last answer's timeout only.
            (200, 0.0, timeout, 30),
            (200, f64::NAN, timeout, 30),
            (200, -1.0, timeout, 30),
            (200, f64::INFINITY, timeout, 30),
            // Never zero, never longer than the cap.
            (0, 0.0, Duration::ZERO, 1),
            (200, 1e-30, timeout, MAX_CALL_WINDOW_SECONDS),
            (200, 0.01, timeout, MAX_CALL_WINDOW_SECONDS),
            (usize::MAX, 3.0, Duration::MAX, MAX_CALL_WINDOW_SECONDS),
        ];
        for (resets, rate, timeout, seconds) in table {
            assert_eq!(
                call_window(resets, rate, timeout),
                seconds,
                "{resets} resets at {rate}/s, timeout {timeout:?}"
            );
        }
        assert_eq!(
            call_window(200, 3.0, timeout),
            LEGACY_CALL_WINDOW_SECONDS,
            "an earlier version's batch gets a full batch's window at the lowest documented rate"
        );
    }
}
