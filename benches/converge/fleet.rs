//! The fleet: its shape, the simulator seed that holds it remotely, the
//! ActivationCodes that declare it, and the fewest calls that converge it.

use metastudio_operator::crd::{ActivationCode, ActivationCodeSpec};
use metastudio_operator::metastudio::client::MAX_PAGE_SIZE;
use metastudio_operator::offline::manifests::Loaded;
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// The validPeriod every resource asks for.
pub const DESIRED_DAYS: u16 = 30;
/// The validPeriod drifted codes start with.
pub const DRIFTED_DAYS: u16 = 7;
/// The namespace of every resource.
pub const NAMESPACE: &str = "bench";

/// Robots x codes, of which `drifted_per_robot` per robot differ from the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub robots: u32,
    pub codes_per_robot: u32,
    pub drifted_per_robot: u32,
}

/// Remote calls by operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    pub list: u64,
    pub update: u64,
}

impl Calls {
    pub fn total(&self) -> u64 {
        self.list + self.update
    }
}

impl Shape {
    pub fn new(robots: u32, codes_per_robot: u32, drift_share: f64) -> Self {
        let drifted = (f64::from(codes_per_robot) * drift_share).round() as u32;
        Self {
            robots,
            codes_per_robot,
            drifted_per_robot: drifted.min(codes_per_robot),
        }
    }

    pub fn codes(&self) -> u64 {
        u64::from(self.robots) * u64::from(self.codes_per_robot)
    }

    /// List pages of one robot: one per 100 codes, at least one.
    pub fn pages_per_robot(&self) -> u64 {
        u64::from(self.codes_per_robot.div_ceil(MAX_PAGE_SIZE).max(1))
    }

    /// The fewest calls that converge the fleet: every page listed once,
    /// every drifted code updated once.
    pub fn converge_bound(&self) -> Calls {
        Calls {
            list: u64::from(self.robots) * self.pages_per_robot(),
            update: u64::from(self.robots) * u64::from(self.drifted_per_robot),
        }
    }

    /// The fewest calls that check a converged fleet: the pages, no write.
    pub fn steady_bound(&self) -> Calls {
        Calls {
            list: u64::from(self.robots) * self.pages_per_robot(),
            update: 0,
        }
    }

    /// Calls one resource must make one after another: its pages in turn,
    /// then its updates `code_concurrency` at a time.
    pub fn rounds_per_robot(&self, code_concurrency: u32, converging: bool) -> u64 {
        let updates = if converging {
            u64::from(self.drifted_per_robot.div_ceil(code_concurrency.max(1)))
        } else {
            0
        };
        self.pages_per_robot() + updates
    }

    /// The simulator seed: each robot twice, once with its drifted codes
    /// and once with the rest, so a robot lists its drifted codes first.
    pub fn seed_yaml(&self) -> String {
        let mut text = String::from(
            "apiVersion: simulator.metastudio-operator.dev/v1alpha1\nkind: SimulatorSeed\nspec:\n  robots:\n",
        );
        let in_sync = self.codes_per_robot - self.drifted_per_robot;
        for i in 0..self.robots {
            let robot = robot_id(i);
            for (count, days) in [
                (self.drifted_per_robot, DRIFTED_DAYS),
                (in_sync, DESIRED_DAYS),
            ] {
                if count > 0 {
                    let _ = writeln!(
                        text,
                        "    - {{robotId: {robot}, generate: {{count: {count}, validPeriod: {days}}}}}"
                    );
                }
            }
        }
        text
    }

    /// One ActivationCode per robot, as `reconcile -f` would load them.
    pub fn resources(&self) -> Vec<Loaded> {
        (0..self.robots)
            .map(|i| {
                let spec: ActivationCodeSpec = serde_json::from_value(serde_json::json!({
                    "robotId": robot_id(i),
                    "validPeriod": DESIRED_DAYS,
                }))
                .expect("a valid spec");
                let mut resource = ActivationCode::new(&format!("fleet-{i:06}"), spec);
                resource.metadata.namespace = Some(NAMESPACE.to_owned());
                Loaded {
                    resource,
                    origin: format!("bench#{i}"),
                }
            })
            .collect()
    }
}

pub fn robot_id(i: u32) -> String {
    format!("robot-{i:06}")
}
