//! How many codes one resource manages. Its status keeps one reset-ledger
//! entry per code (~35 bytes, see BENCHMARKS.md), and the API server
//! refuses an object past etcd's 1.5 MiB: a resource over the cap gets a
//! condition that tells how to split it, in the cluster and in
//! `reconcile -f` alike, before anything is changed.

use crate::crd::ActivationCodeSpec;
use crate::metastudio::ActiveCode;
use crate::plan;

/// The most codes one ActivationCode manages: a ledger of about 1 MiB.
pub const MAX_CODES_PER_RESOURCE: usize = 30_000;

/// Why the resource selects too many of the robot's codes, or `None`.
pub fn too_many_selected(spec: &ActivationCodeSpec, remote: &[ActiveCode]) -> Option<String> {
    let selected = plan::select(spec, remote).len();
    (selected > MAX_CODES_PER_RESOURCE).then(|| {
        format!(
            "the resource selects {selected} codes of robot {}, more than the {MAX_CODES_PER_RESOURCE} one ActivationCode manages (its status keeps an entry per code): split it into several ActivationCodes by spec.roomId or spec.activeCodeIds; nothing was changed",
            spec.robot_id
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(robot: &str, room: &str, n: usize) -> Vec<ActiveCode> {
        (0..n)
            .map(|i| {
                serde_json::from_value(serde_json::json!({
                    "active_code_id": format!("{room}-{i}"), "active_code": "v",
                    "robot_id": robot, "room_id": room, "valid_period": 1,
                    "create_time": "2026-01-01T00:00:00Z", "update_time": "2026-01-01T00:00:00Z"
                }))
                .unwrap()
            })
            .collect()
    }

    fn spec(room: Option<&str>) -> ActivationCodeSpec {
        let mut value = serde_json::json!({"robotId": "r", "validPeriod": 1});
        if let Some(room) = room {
            value["roomId"] = room.into();
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn only_a_selection_over_the_cap_is_refused_and_told_how_to_split() {
        let mut remote = codes("r", "a", MAX_CODES_PER_RESOURCE);
        assert_eq!(too_many_selected(&spec(None), &remote), None, "at the cap");
        remote.extend(codes("r", "b", 1));
        let message = too_many_selected(&spec(None), &remote).expect("over the cap");
        assert!(
            message.contains("selects 30001 codes of robot r"),
            "{message}"
        );
        assert!(
            message.contains("spec.roomId or spec.activeCodeIds"),
            "{message}"
        );
        assert_eq!(
            too_many_selected(&spec(Some("b")), &remote),
            None,
            "split by room: each part under the cap"
        );
        let other_robot = codes("s", "a", MAX_CODES_PER_RESOURCE + 1);
        assert_eq!(too_many_selected(&spec(None), &other_robot), None);
    }
}
