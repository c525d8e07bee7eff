//! The fleet: its shape, the simulator seed that holds it remotely, the
//! ActivationCodes that declare it, and the fewest calls that converge it.
//! Either a drifted fleet (codes whose validPeriod differs, one update
//! each) or a scale-up (every resource counts an empty room up to its
//! codes, one create each).

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
/// The room a scale-up's resources count.
pub const ROOM: &str = "bench-room";

/// Robots x codes, of which `drifted_per_robot` per robot differ from the
/// spec; or, in a scale-up, robots whose rooms start empty and count
/// `codes_per_robot` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shape {
    pub robots: u32,
    pub codes_per_robot: u32,
    pub drifted_per_robot: u32,
    pub scale_up: bool,
}

/// Remote calls by operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    pub list: u64,
    pub update: u64,
    pub create: u64,
}

impl Calls {
    pub fn total(&self) -> u64 {
        self.list + self.update + self.create
    }

    /// The calls that spend the write budget.
    pub fn writes(&self) -> u64 {
        self.update + self.create
    }
}

impl Shape {
    pub fn new(robots: u32, codes_per_robot: u32, drift_share: f64) -> Self {
        let drifted = (f64::from(codes_per_robot) * drift_share).round() as u32;
        Self {
            robots,
            codes_per_robot,
            drifted_per_robot: drifted.min(codes_per_robot),
            scale_up: false,
        }
    }

    /// Robots whose rooms start empty, each counting `codes_per_robot`.
    pub fn scale_up(robots: u32, codes_per_robot: u32) -> Self {
        Self {
            robots,
            codes_per_robot,
            drifted_per_robot: 0,
            scale_up: true,
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
    /// every drifted code updated once; in a scale-up, one page of each
    /// empty room and one create per code.
    pub fn converge_bound(&self) -> Calls {
        let robots = u64::from(self.robots);
        if self.scale_up {
            return Calls {
                list: robots,
                update: 0,
                create: robots * u64::from(self.codes_per_robot),
            };
        }
        Calls {
            list: robots * self.pages_per_robot(),
            update: robots * u64::from(self.drifted_per_robot),
            create: 0,
        }
    }

    /// The fewest calls that check a converged fleet: the pages, no write.
    pub fn steady_bound(&self) -> Calls {
        Calls {
            list: u64::from(self.robots) * self.pages_per_robot(),
            ..Calls::default()
        }
    }

    /// Calls one resource must make one after another: its pages in turn,
    /// then its writes `code_concurrency` at a time.
    pub fn rounds_per_robot(&self, code_concurrency: u32, converging: bool) -> u64 {
        let bound = self.converge_bound();
        if !converging {
            return self.pages_per_robot();
        }
        let robots = u64::from(self.robots.max(1));
        let (pages, writes) = (bound.list / robots, bound.writes() / robots);
        pages + writes.div_ceil(u64::from(code_concurrency.max(1)))
    }

    /// The simulator seed: each robot twice, once with its drifted codes
    /// and once with the rest, so a robot lists its drifted codes first.
    pub fn seed_yaml(&self) -> String {
        let mut text = String::from(
            "apiVersion: simulator.metastudio-operator.dev/v1alpha1\nkind: SimulatorSeed\nspec:\n  robots:\n",
        );
        if self.scale_up {
            // Empty rooms: the robots have no code yet.
            text.push_str("    []\n");
            return text;
        }
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
                let mut spec = serde_json::json!({
                    "robotId": robot_id(i),
                    "validPeriod": DESIRED_DAYS,
                });
                if self.scale_up {
                    spec["roomId"] = ROOM.into();
                    spec["count"] = self.codes_per_robot.into();
                }
                let spec: ActivationCodeSpec = serde_json::from_value(spec).expect("a valid spec");
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
