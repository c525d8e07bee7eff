//! Durations as Kubernetes users write them: `90s`, `10m`, `24h`, `1h30m`,
//! `7d`, `250ms`. Used by the CRD (`syncInterval`, `reset.beforeExpiry`)
//! and by command-line flags.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The pattern the CRD schema checks, so `kubectl apply` rejects a bad
/// duration before the operator ever sees it. Units come in order, each at
/// most once, with bounded digits: whatever the API server admits must
/// parse (at most 9999d + 99999h + 99999m + 99999s + 99999ms, well under
/// [`MAX`]), because one object that fails to deserialise breaks the
/// controller's list of every ActivationCode.
pub const PATTERN: &str =
    r"^([0-9]{1,4}d)?([0-9]{1,5}h)?([0-9]{1,5}m)?([0-9]{1,5}s)?([0-9]{1,5}ms)?$";

/// The longest accepted duration, 100000 days (about 274 years): longer
/// than any validity (`validPeriod` is at most 65535 days), short enough
/// that adding it to a clock never overflows.
pub const MAX: Duration = Duration::from_secs(100_000 * 86_400);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a duration: {reason}; write it like 90s, 10m, 24h, 1h30m or 7d")]
pub struct ParseDurationError {
    pub input: String,
    pub reason: &'static str,
}

impl FromStr for HumanDuration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason| ParseDurationError {
            input: input.chars().take(64).collect(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(fail("it is empty"));
        }
        if s.starts_with('-') {
            return Err(fail("it is negative"));
        }
        let too_long = || fail("it is longer than 100000d");
        let max_ms = MAX.as_millis();
        let mut total_ms: u128 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(fail("a number must come before each unit"));
            }
            // More digits than a u64 holds is far beyond the maximum anyway.
            let value: u64 = rest[..digits].parse().map_err(|_| too_long())?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit_ms: u128 = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "" => return Err(fail("a unit (ms, s, m, h or d) must follow each number")),
                _ => return Err(fail("units are ms, s, m, h and d")),
            };
            rest = &rest[unit_len..];
            // u64 x 86_400_000 fits a u128; the sum stays below max_ms.
            total_ms += u128::from(value) * unit_ms;
            if total_ms > max_ms {
                return Err(too_long());
            }
        }
        let total = Duration::from_millis(u64::try_from(total_ms).map_err(|_| too_long())?);
        Ok(HumanDuration(total))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": PATTERN,
            "minLength": 2,
            "maxLength": 32,
        })
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        for (text, secs) in [
            ("90s", 90),
            ("10m", 600),
            ("24h", 86_400),
            ("1h30m", 5400),
            ("7d", 604_800),
        ] {
            assert_eq!(
                text.parse::<HumanDuration>().unwrap().0,
                Duration::from_secs(secs),
                "{text}"
            );
        }
        assert_eq!(
            "250ms".parse::<HumanDuration>().unwrap().0,
            Duration::from_millis(250)
        );
    }

    #[test]
    fn rejects_with_a_reason_and_an_example() {
        for bad in [
            "",
            "-5m",
            "10",
            "m",
            "5x",
            "1.5h",
            "99999999999999999999s",
            "4294967295d4294967295d",
            "100001d",
            "1y",
        ] {
            let err = bad.parse::<HumanDuration>().unwrap_err();
            assert!(err.to_string().contains("like 90s"), "{bad}: {err}");
        }
    }

    #[test]
    fn large_counts_of_small_units_are_fine() {
        assert_eq!(
            "5000000000ms".parse::<HumanDuration>().unwrap().0,
            Duration::from_millis(5_000_000_000)
        );
    }

    #[test]
    fn the_longest_duration_is_100000_days() {
        assert_eq!("100000d".parse::<HumanDuration>().unwrap().0, MAX);
        // The longest value the CRD's pattern admits parses.
        let widest = "9999d99999h99999m99999s99999ms";
        assert!(widest.len() <= 32);
        assert!(widest.parse::<HumanDuration>().unwrap().0 < MAX);
        assert_eq!("99999d24h".parse::<HumanDuration>().unwrap().0, MAX);
        let err = "99999d24h1ms".parse::<HumanDuration>().unwrap_err();
        assert!(err.to_string().contains("longer than 100000d"), "{err}");
    }

    #[test]
    fn display_round_trips() {
        for text in ["0s", "26h3m4s5ms", "10m", "24h"] {
            let d: HumanDuration = text.parse().unwrap();
            assert_eq!(d.to_string(), text);
        }
    }
}
