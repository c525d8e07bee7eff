//! Seeded fault injection: latency, 5xx, 429 with `Retry-After`, dropped
//! connections, responses lost after the change was applied, 200s whose
//! body is cut short, slow replies.

use crate::metastudio::Operation;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeSet;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    /// Added to every answer.
    pub latency: Duration,
    /// Share of calls answered 500 before anything is applied.
    pub server_error_rate: f64,
    /// Share of calls answered 429 (`APIGW.0308`) before anything is applied.
    pub throttle_rate: f64,
    /// The `Retry-After` of injected 429s, in whole seconds.
    pub retry_after_secs: u64,
    /// Share of calls whose connection is closed before anything is applied.
    pub drop_rate: f64,
    /// Share of calls applied and then left without an answer (the
    /// connection closes): the caller cannot know the call succeeded.
    pub lost_response_rate: f64,
    /// Share of calls applied and answered 200 with a body cut short, which
    /// no client can decode: applied, yet the answer says nothing.
    pub garbled_response_rate: f64,
    /// Share of calls delayed by `slow_delay` on top of `latency`.
    pub slow_rate: f64,
    pub slow_delay: Duration,
    /// Only these operations get faults (latency applies to all); empty
    /// means every operation.
    pub operations: BTreeSet<Operation>,
    pub seed: u64,
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            server_error_rate: 0.0,
            throttle_rate: 0.0,
            retry_after_secs: 1,
            drop_rate: 0.0,
            lost_response_rate: 0.0,
            garbled_response_rate: 0.0,
            slow_rate: 0.0,
            slow_delay: Duration::from_secs(2),
            operations: BTreeSet::new(),
            seed: 0,
        }
    }
}

/// What happens to one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    ServerError,
    Throttle,
    Drop,
    LoseResponse,
    GarbleResponse,
}

#[derive(Debug)]
pub struct Faults {
    config: FaultConfig,
    rng: StdRng,
}

impl Faults {
    pub fn new(config: FaultConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        Self { config, rng }
    }

    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// Draws the fault and the extra delay for one call. The same seed and
    /// the same sequence of calls give the same faults.
    pub fn draw(&mut self, operation: Operation) -> (Fault, Duration) {
        let c = &self.config;
        let applies = c.operations.is_empty() || c.operations.contains(&operation);
        let roll: f64 = self.rng.random();
        let slow_roll: f64 = self.rng.random();
        if !applies {
            return (Fault::None, c.latency);
        }
        let delay = if slow_roll < c.slow_rate {
            c.latency + c.slow_delay
        } else {
            c.latency
        };
        let bands = [
            (c.server_error_rate, Fault::ServerError),
            (c.throttle_rate, Fault::Throttle),
            (c.drop_rate, Fault::Drop),
            (c.lost_response_rate, Fault::LoseResponse),
            (c.garbled_response_rate, Fault::GarbleResponse),
        ];
        let mut edge = 0.0;
        let fault = bands
            .into_iter()
            .find_map(|(rate, fault)| {
                edge += rate;
                (roll < edge).then_some(fault)
            })
            .unwrap_or(Fault::None);
        (fault, delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_faults() {
        let config = FaultConfig {
            server_error_rate: 0.2,
            throttle_rate: 0.2,
            drop_rate: 0.2,
            lost_response_rate: 0.2,
            seed: 42,
            ..Default::default()
        };
        let run = || {
            let mut faults = Faults::new(config.clone());
            (0..200)
                .map(|_| faults.draw(Operation::ResetActiveCode).0)
                .collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run());
        for kind in [
            Fault::None,
            Fault::ServerError,
            Fault::Throttle,
            Fault::Drop,
            Fault::LoseResponse,
        ] {
            assert!(first.contains(&kind), "{kind:?} never drawn");
        }
    }

    #[test]
    fn rates_are_respected_roughly_and_filters_apply() {
        let mut faults = Faults::new(FaultConfig {
            server_error_rate: 0.3,
            operations: [Operation::UpdateActiveCode].into(),
            seed: 7,
            ..Default::default()
        });
        let errors = (0..10_000)
            .filter(|_| faults.draw(Operation::UpdateActiveCode).0 == Fault::ServerError)
            .count();
        assert!((2_700..3_300).contains(&errors), "{errors}");
        assert!((0..1000).all(|_| faults.draw(Operation::ListActiveCode).0 == Fault::None));
    }
}
