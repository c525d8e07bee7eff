//! The bounds of the numbers and durations a spec may hold, beyond their
//! types: what a person would ever mean. The CRD's descriptions (what
//! `kubectl explain` prints) and, where OpenAPI can say it, its schema
//! state them; validation ([`crate::validate`]) checks them again, for
//! manifests that never met an API server and for a CRD older than the
//! operator. A connection's `spec.budget` has its bounds beside the
//! arithmetic that uses them ([`crate::metastudio::pacing`]).
//!
//! Durations are strings in the schema (`10m`, `24h`); their pattern bounds
//! them to about 40 years, the ranges here only in the descriptions and in
//! validation.

use std::ops::RangeInclusive;
use std::time::Duration;

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

/// `syncInterval`: from 10 seconds (the API's quotas allow no less for
/// a resource of a few hundred codes) to 30 days.
pub const SYNC_INTERVAL: RangeInclusive<Duration> =
    Duration::from_secs(10)..=Duration::from_secs(30 * 86_400);

/// `reset.beforeExpiry` and `renewBeforeExpiry`: from a minute to ten
/// years, and shorter than `validPeriod` besides.
pub const EXPIRY_WINDOW: RangeInclusive<Duration> = MINUTE..=Duration::from_secs(3650 * 86_400);

/// `reset.rollout.interval`: from a minute to 30 days.
pub const ROLLOUT_INTERVAL: RangeInclusive<Duration> = MINUTE..=Duration::from_secs(30 * 86_400);

/// `reset.rollout.maxCodes` as a count: from 1 to 100,000 (more than the
/// codes one resource can hold; a percentage is 1% to 100%).
pub const MAX_CODES_COUNT: RangeInclusive<u32> = 1..=100_000;

/// `count`: from 0 to the most codes one resource manages
/// ([`crate::engine::limits::MAX_CODES_PER_RESOURCE`]).
pub const COUNT: RangeInclusive<u32> = 0..=crate::engine::limits::MAX_CODES_PER_RESOURCE as u32;

/// A bound as a person writes it: whole days as `30d`, else as
/// [`crate::duration::HumanDuration`] shows it (`10s`, `1h30m`).
pub fn shown(bound: Duration) -> String {
    if !bound.is_zero()
        && bound.as_secs().is_multiple_of(DAY.as_secs())
        && bound.subsec_nanos() == 0
    {
        format!("{}d", bound.as_secs() / DAY.as_secs())
    } else {
        crate::duration::HumanDuration(bound).to_string()
    }
}

/// `from X to Y` for a duration range.
pub fn range_text(range: &RangeInclusive<Duration>) -> String {
    format!("from {} to {}", shown(*range.start()), shown(*range.end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_read_as_they_are_written() {
        assert_eq!(range_text(&SYNC_INTERVAL), "from 10s to 30d");
        assert_eq!(range_text(&EXPIRY_WINDOW), "from 1m to 3650d");
        assert_eq!(range_text(&ROLLOUT_INTERVAL), "from 1m to 30d");
    }

    /// The description of the field at `path` under `spec`, one line.
    fn described(
        crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        path: &[&str],
    ) -> String {
        let root = crd.spec.versions[0].schema.as_ref().unwrap();
        let mut schema = root.open_api_v3_schema.as_ref().unwrap();
        for name in ["spec"].iter().chain(path) {
            schema = &schema.properties.as_ref().unwrap()[*name];
        }
        let text = schema.description.clone().unwrap_or_default();
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn kubectl_explain_states_every_bound() {
        let crd = crate::crd::definition();
        let cases: [(&[&str], String); 7] = [
            (&["syncInterval"], range_text(&SYNC_INTERVAL)),
            (&["reset", "beforeExpiry"], range_text(&EXPIRY_WINDOW)),
            (&["renewBeforeExpiry"], range_text(&EXPIRY_WINDOW)),
            (
                &["reset", "rollout", "interval"],
                range_text(&ROLLOUT_INTERVAL),
            ),
            (
                &["reset", "rollout", "maxCodes"],
                format!(
                    "from {} to {}",
                    MAX_CODES_COUNT.start(),
                    MAX_CODES_COUNT.end()
                ),
            ),
            (&["validPeriod"], "from 0 to 65535".into()),
            (
                &["count"],
                format!("from {} to {}", COUNT.start(), COUNT.end()),
            ),
        ];
        for (path, bounds) in cases {
            let text = described(&crd, path).to_lowercase();
            assert!(
                text.contains(&bounds),
                "{path:?} does not say {bounds}: {text}"
            );
        }
        let connection = crate::crd::connection::definition();
        use crate::metastudio::pacing::{MAX_BURST, MIN_SHARE, RATE_RANGE};
        let rates = format!(
            "0 (no limit) or from {} to {}",
            RATE_RANGE.start(),
            RATE_RANGE.end()
        );
        for (field, bounds) in [
            ("readsPerSecond", rates.clone()),
            ("writesPerSecond", rates),
            ("share", format!("from {MIN_SHARE} to 1")),
            ("burst", format!("from 1 to {MAX_BURST}")),
        ] {
            let text = described(&connection, &["budget", field]);
            assert!(
                text.contains(&bounds),
                "{field} does not say {bounds}: {text}"
            );
        }
    }

    #[test]
    fn every_bound_is_a_duration_the_schema_admits() {
        for range in [SYNC_INTERVAL, EXPIRY_WINDOW, ROLLOUT_INTERVAL] {
            for bound in [range.start(), range.end()] {
                let text = shown(*bound);
                let parsed: crate::duration::HumanDuration = text.parse().unwrap();
                assert_eq!(parsed.0, *bound, "{text}");
                assert!(*bound <= crate::duration::MAX);
            }
        }
    }
}
