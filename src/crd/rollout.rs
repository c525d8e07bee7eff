//! `spec.reset.rollout`: how a token's resets are spread over time.

use super::UnknownFields;
use super::bounds::MAX_CODES_COUNT;
use crate::duration::HumanDuration;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// At most `maxCodes` resets per `interval`, the first batch at once.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// How many codes one batch resets: a count from 1 to 100000 (e.g. 50)
    /// or a percentage from 1% to 100% of the codes the token resets (e.g.
    /// "10%", rounded up, at least 1).
    pub max_codes: MaxCodes,
    /// How long after a batch began the next one may start, e.g. 1h; from
    /// 1m to 30d.
    pub interval: HumanDuration,
    /// Fields this operator does not know, e.g. of a newer CRD.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown_fields: UnknownFields,
}

/// A count or a percentage, as Kubernetes writes them (`50` or `"10%"`).
/// Kept as written; [`MaxCodes::parse`] reads it, and validation names the
/// field when it cannot.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum MaxCodes {
    Count(i64),
    Text(String),
}

/// The written forms of `maxCodes` as a string: a count from 1 to 100000
/// or a percentage from 1% to 100%.
pub const MAX_CODES_PATTERN: &str = r"^([1-9][0-9]{0,4}|100000|[1-9][0-9]?%|100%)$";

/// A readable `maxCodes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    Codes(u32),
    /// 1..=100 percent of the codes to reset.
    Percent(u8),
}

impl MaxCodes {
    /// The batch size, or why it is not one (for spec.reset.rollout.maxCodes).
    pub fn parse(&self) -> Result<BatchSize, String> {
        match self {
            MaxCodes::Count(n) => u32::try_from(*n)
                .ok()
                .filter(|n| MAX_CODES_COUNT.contains(n))
                .map(BatchSize::Codes)
                .ok_or_else(|| {
                    format!(
                        "{n} is not a count of codes: use {} to {}, or a percentage such as \"10%\"",
                        MAX_CODES_COUNT.start(),
                        MAX_CODES_COUNT.end()
                    )
                }),
            MaxCodes::Text(text) => parse_text(text),
        }
    }
}

fn parse_text(text: &str) -> Result<BatchSize, String> {
    let wrong = || {
        format!(
            "{text:?} is neither a count nor a percentage: write a number of codes from {} to {} such as 50, or a percentage from 1% to 100% such as \"10%\"",
            MAX_CODES_COUNT.start(),
            MAX_CODES_COUNT.end()
        )
    };
    match text.strip_suffix('%') {
        Some(number) => match number.parse::<u8>() {
            Ok(p @ 1..=100) => Ok(BatchSize::Percent(p)),
            _ => Err(wrong()),
        },
        None => match text.parse::<u32>() {
            Ok(n) if MAX_CODES_COUNT.contains(&n) => Ok(BatchSize::Codes(n)),
            _ => Err(wrong()),
        },
    }
}

impl BatchSize {
    /// Codes per batch when the token resets `total` codes: at least 1.
    pub fn of(self, total: u32) -> u32 {
        match self {
            BatchSize::Codes(n) => n,
            BatchSize::Percent(p) => (u64::from(total) * u64::from(p)).div_ceil(100).max(1) as u32,
        }
    }
}

impl JsonSchema for MaxCodes {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MaxCodes".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // Kubernetes' own int-or-string: no type, either form accepted.
        // `minimum`/`maximum` bound the integer form and `pattern` the
        // string form (each applies to its own type only).
        schemars::json_schema!({
            "x-kubernetes-int-or-string": true,
            "minimum": MAX_CODES_COUNT.start(),
            "maximum": MAX_CODES_COUNT.end(),
            "pattern": MAX_CODES_PATTERN,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_percentages_parse_and_size_batches() {
        let cases: [(MaxCodes, Result<BatchSize, ()>, u32); 8] = [
            (MaxCodes::Count(50), Ok(BatchSize::Codes(50)), 50),
            (MaxCodes::Text("50".into()), Ok(BatchSize::Codes(50)), 50),
            (MaxCodes::Text("10%".into()), Ok(BatchSize::Percent(10)), 12),
            (MaxCodes::Text("1%".into()), Ok(BatchSize::Percent(1)), 2),
            (
                MaxCodes::Text("100%".into()),
                Ok(BatchSize::Percent(100)),
                120,
            ),
            (MaxCodes::Count(0), Err(()), 0),
            (MaxCodes::Text("0%".into()), Err(()), 0),
            (MaxCodes::Text("ten".into()), Err(()), 0),
        ];
        for (written, expected, per_120) in cases {
            let parsed = written.parse();
            assert_eq!(parsed.clone().map_err(|_| ()), expected, "{written:?}");
            if let Ok(size) = parsed {
                assert_eq!(size.of(120), per_120, "{written:?}");
            }
        }
        assert_eq!(BatchSize::Percent(1).of(0), 1);
        for too_many in [
            MaxCodes::Count(100_001),
            MaxCodes::Text("4294967295".into()),
        ] {
            let message = too_many.parse().unwrap_err();
            assert!(message.contains("1 to 100000"), "{message}");
        }
        let message = MaxCodes::Text("ten".into()).parse().unwrap_err();
        assert!(message.contains("\"10%\""), "{message}");
    }

    #[test]
    fn every_string_the_schema_pattern_admits_parses() {
        use proptest::strategy::{Strategy, ValueTree};
        let inner = MAX_CODES_PATTERN
            .trim_start_matches('^')
            .trim_end_matches('$');
        let strategy = proptest::string::string_regex(inner).unwrap();
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        for _ in 0..500 {
            let text = strategy.new_tree(&mut runner).unwrap().current();
            assert!(MaxCodes::Text(text.clone()).parse().is_ok(), "{text}");
        }
    }

    #[test]
    fn written_forms_round_trip() {
        let rollout: Rollout =
            serde_json::from_value(serde_json::json!({"maxCodes": "25%", "interval": "1h"}))
                .unwrap();
        assert_eq!(rollout.max_codes, MaxCodes::Text("25%".into()));
        let count: Rollout =
            serde_json::from_value(serde_json::json!({"maxCodes": 5, "interval": "10m"})).unwrap();
        assert_eq!(
            serde_json::to_value(&count).unwrap()["maxCodes"],
            serde_json::json!(5)
        );
    }
}
