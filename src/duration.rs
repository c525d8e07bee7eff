//! Durations as Kubernetes users write them: `90s`, `10m`, `24h`, `1h30m`,
//! `7d`, `250ms`. Used by the CRD (`syncInterval`, `reset.beforeExpiry`)
//! and by command-line flags.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The pattern the CRD schema checks, so `kubectl apply` rejects a bad
/// duration before the operator ever sees it.
pub const PATTERN: &str = r"^([0-9]+(ms|s|m|h|d))+$";

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
        let mut total = Duration::ZERO;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(fail("a number must come before each unit"));
            }
            let value: u64 = rest[..digits]
                .parse()
                .map_err(|_| fail("a number is too large"))?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = match &rest[..unit_len] {
                "ms" => Duration::from_millis(1),
                "s" => Duration::from_secs(1),
                "m" => Duration::from_secs(60),
                "h" => Duration::from_secs(3600),
                "d" => Duration::from_secs(86_400),
                "" => return Err(fail("a unit (ms, s, m, h or d) must follow each number")),
                _ => return Err(fail("units are ms, s, m, h and d")),
            };
            rest = &rest[unit_len..];
            let part = u32::try_from(value)
                .ok()
                .and_then(|v| unit.checked_mul(v))
                .ok_or_else(|| fail("it is too large"))?;
            total = total
                .checked_add(part)
                .ok_or_else(|| fail("it is too large"))?;
        }
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
        for bad in ["", "-5m", "10", "m", "5x", "1.5h", "99999999999999999999s"] {
            let err = bad.parse::<HumanDuration>().unwrap_err();
            assert!(err.to_string().contains("like 90s"), "{bad}: {err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["0s", "26h3m4s5ms", "10m", "24h"] {
            let d: HumanDuration = text.parse().unwrap();
            assert_eq!(d.to_string(), text);
        }
    }
}
