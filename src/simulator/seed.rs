//! The simulator's starting state, from YAML (`--seed FILE`).
//!
//! ```yaml
//! apiVersion: simulator.metastudio-operator.dev/v1alpha1
//! kind: SimulatorSeed
//! spec:
//!   robots:
//!     - robotId: 4d54c0ffee446249aa00bb11cc226526
//!       codes:
//!         - {activeCodeId: 39b9cedccec1f19b33d8f7ce1a6d35b9, roomId: lobby, validPeriod: 3, age: 60h}
//!       generate: {count: 250, validPeriod: 7}
//! ```
//!
//! `age` is how long ago the code was last changed, so a seed can hold codes
//! that are about to expire or have expired.

use super::store::Store;
use crate::duration::HumanDuration;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use std::path::Path;

pub const API_VERSION: &str = "simulator.metastudio-operator.dev/v1alpha1";
pub const KIND: &str = "SimulatorSeed";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
    pub spec: SeedSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedSpec {
    #[serde(default)]
    pub robots: Vec<SeedRobot>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedRobot {
    pub robot_id: String,
    #[serde(default)]
    pub codes: Vec<SeedCode>,
    #[serde(default)]
    pub generate: Option<SeedGenerate>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedCode {
    #[serde(default)]
    pub active_code_id: Option<String>,
    #[serde(default)]
    pub room_id: Option<String>,
    pub valid_period: u16,
    #[serde(default)]
    pub age: Option<HumanDuration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SeedGenerate {
    pub count: u32,
    pub valid_period: u16,
    #[serde(default)]
    pub room_id: Option<String>,
    #[serde(default)]
    pub age: Option<HumanDuration>,
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("cannot read seed file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("seed file {path} is not a valid SimulatorSeed: {message}")]
    Parse { path: String, message: String },
}

impl Seed {
    pub fn from_file(path: &Path) -> Result<Self, SeedError> {
        let text = std::fs::read_to_string(path).map_err(|source| SeedError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|message| SeedError::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let seed: Seed = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        if let Some(kind) = &seed.kind
            && kind != KIND
        {
            return Err(format!("kind is `{kind}`; a seed has kind: {KIND}"));
        }
        if let Some(version) = &seed.api_version
            && version != API_VERSION
        {
            return Err(format!("apiVersion is `{version}`; use {API_VERSION}"));
        }
        if let Some(robot) = seed.spec.robots.iter().find(|r| r.robot_id.is_empty()) {
            return Err(format!(
                "a robot has an empty robotId ({} codes)",
                robot.codes.len()
            ));
        }
        Ok(seed)
    }

    /// Puts the seed's codes into a store.
    pub fn apply(&self, store: &mut Store) {
        let now = store.now();
        let changed_at = |age: Option<HumanDuration>| -> Timestamp {
            let age = age.map_or(SignedDuration::ZERO, |a| {
                SignedDuration::try_from(a.0).unwrap_or(SignedDuration::MAX)
            });
            now.checked_sub(age).unwrap_or(now)
        };
        for robot in &self.spec.robots {
            for code in &robot.codes {
                store.insert(
                    code.active_code_id.clone(),
                    &robot.robot_id,
                    code.room_id.clone(),
                    code.valid_period,
                    changed_at(code.age),
                );
            }
            if let Some(generate) = &robot.generate {
                for _ in 0..generate.count {
                    store.insert(
                        None,
                        &robot.robot_id,
                        generate.room_id.clone(),
                        generate.valid_period,
                        changed_at(generate.age),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_listed_and_generated_codes() {
        let seed = Seed::from_yaml(
            r#"
apiVersion: simulator.metastudio-operator.dev/v1alpha1
kind: SimulatorSeed
spec:
  robots:
    - robotId: r1
      codes:
        - {activeCodeId: c1, roomId: lobby, validPeriod: 1, age: 36h}
      generate: {count: 3, validPeriod: 7}
"#,
        )
        .unwrap();
        let mut store = Store::new(1);
        seed.apply(&mut store);
        assert_eq!(store.list("r1", 0, 100).count, 4);
        let c1 = store.show("c1").unwrap();
        assert!(
            c1.is_expired(store.now()),
            "1 day validity, changed 36h ago"
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let err = Seed::from_yaml("kind: Secret\nspec: {}\n").unwrap_err();
        assert!(err.contains("kind: SimulatorSeed"), "{err}");
        let err = Seed::from_yaml("spec: {robots: [{robotId: r, codes: [{validPeriod: 70000}]}]}")
            .unwrap_err();
        assert!(err.contains("70000") || err.contains("valid"), "{err}");
        let err = Seed::from_yaml("spec: {robots: [{robotId: r, colour: red}]}").unwrap_err();
        assert!(err.contains("colour"), "{err}");
    }
}
