//! Maps keyed by who calls (one entry per set of credentials: a pacer, a
//! breaker) that forget entries nobody used for [`FORGET_AFTER`], so that
//! credentials edited or abandoned over months (each Secret or projectId
//! edit is a new key) do not pile up. An hour unused, an entry has nothing
//! left to remember: a pacer's burst is whole again and its 429 cuts
//! recovered, a breaker's longest pause is over.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;
use tokio::time::Instant;

/// How long an entry may go unused before it is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// How often the map looks for such entries (when it is used).
const SWEEP_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(super) struct Recent<K, V> {
    entries: HashMap<K, (V, Instant)>,
    swept: Option<Instant>,
}

impl<K, V> Default for Recent<K, V> {
    fn default() -> Self {
        Self {
            entries: HashMap::new(),
            swept: None,
        }
    }
}

impl<K: Hash + Eq, V> Recent<K, V> {
    /// The entry of `key`, made by `make` when there is none, marked used
    /// now. First, at most once a [`SWEEP_EVERY`], the entries unused for
    /// [`FORGET_AFTER`] that `idle` says hold nothing in use are forgotten.
    pub fn touch(&mut self, key: K, make: impl FnOnce() -> V, idle: impl Fn(&V) -> bool) -> &mut V {
        let now = Instant::now();
        if self.swept.is_none_or(|at| now - at >= SWEEP_EVERY) {
            self.swept = Some(now);
            self.entries
                .retain(|_, (value, used)| now - *used < FORGET_AFTER || !idle(value));
        }
        let (value, used) = self.entries.entry(key).or_insert_with(|| (make(), now));
        *used = now;
        value
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key).map(|(value, _)| value)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.entries.get_mut(key).map(|(value, _)| value)
    }

    pub fn remove(&mut self, key: &K) {
        self.entries.remove(key);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn entries_unused_for_an_hour_and_idle_are_forgotten() {
        let mut map: Recent<&str, bool> = Recent::default();
        let idle = |in_use: &bool| !in_use;
        map.touch("old", || false, idle);
        map.touch("held", || true, idle);
        tokio::time::advance(FORGET_AFTER - Duration::from_secs(1)).await;
        map.touch("used", || false, idle);
        assert_eq!(map.len(), 3, "nothing is an hour old yet");
        tokio::time::advance(SWEEP_EVERY).await;
        map.touch("new", || false, idle);
        assert!(map.get(&"old").is_none(), "an hour unused: forgotten");
        assert!(map.get(&"held").is_some(), "still in use: kept");
        assert!(map.get(&"used").is_some(), "used within the hour: kept");
        assert_eq!(map.len(), 3);
    }
}
