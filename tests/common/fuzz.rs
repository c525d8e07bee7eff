//! Settings of the proptest fuzz targets (`tests/fuzz_*.rs`).
//!
//! Each target runs a few hundred to a thousand cases from a fixed seed, so
//! CI runs are short and reproducible. Longer runs:
//!
//! ```text
//! FUZZ_CASES=100000 cargo nextest run --test fuzz_responses --test fuzz_manifests --test fuzz_signer
//! FUZZ_SEED=42 FUZZ_CASES=20000 cargo nextest run --test fuzz_signer   # another sequence
//! ```
//!
//! A failure prints the minimal input proptest shrank it to; rerunning with
//! the same `FUZZ_SEED` (and `FUZZ_CASES`) reproduces it.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// The seed of CI runs.
pub const DEFAULT_SEED: u64 = 0x6d65_7461_7374_7564;

/// A proptest configuration with `default_cases` cases (or `FUZZ_CASES`)
/// from a fixed seed (or `FUZZ_SEED`).
pub fn config(default_cases: u32) -> Config {
    let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    Config {
        cases: number("FUZZ_CASES").map_or(default_cases, |n| n.min(u64::from(u32::MAX)) as u32),
        rng_seed: RngSeed::Fixed(number("FUZZ_SEED").unwrap_or(DEFAULT_SEED)),
        // Regressions are reproduced by the fixed seed, not by files.
        failure_persistence: None,
        ..Config::default()
    }
}

/// `len` characters from `set`: much cheaper than a regex strategy in a
/// debug build.
pub fn chars_of(set: &'static str, len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    let chars: Vec<char> = set.chars().collect();
    proptest::collection::vec(proptest::sample::select(chars), len).prop_map(String::from_iter)
}

pub const LOWER_DIGITS: &str = "abcdefghijklmnopqrstuvwxyz0123456789";
pub const HEX: &str = "0123456789abcdef";
