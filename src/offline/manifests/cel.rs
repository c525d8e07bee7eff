//! The ActivationCode CRD's CEL rules over the manifests of a `reconcile
//! -f` run, as an API server from Kubernetes 1.25 applies them to `kubectl
//! apply`: the creation rules to every manifest, and the transition rules
//! (those that read `oldSelf`) against the previous resource.
//!
//! The previous resource, offline, is the manifest as the last run that
//! wrote the status file saw it, as far as that file records it: the
//! status file keeps statuses, not specs, and a status names the robot it
//! belongs to (status.robotId). So the previous resource is this manifest
//! with that robot as spec.robotId; a resource without a recorded status
//! (new, or only ever reconciled by an operator before status.robotId) is
//! checked as a create. spec.robotId is the only field a transition rule
//! covers, and a test keeps it so.

use super::{Loaded, ManifestError, error, key_of};
use crate::crd::cel::{CelRules, Refusal};

/// The field of the previous resource the status file records.
const RECORDED_FIELD: &str = "robotId";

/// A problem for each rule a manifest breaks; `recorded_robot` gives the
/// robot the status file records for a `namespace/name`.
pub fn check_rules(
    resources: &[Loaded],
    recorded_robot: impl Fn(&str) -> Option<String>,
) -> Vec<ManifestError> {
    let rules = CelRules::of(&crate::crd::definition());
    let mut problems = Vec::new();
    for loaded in resources {
        let key = key_of(&loaded.resource);
        let object = serde_json::to_value(&loaded.resource).expect("a resource serialises");
        let recorded = recorded_robot(&key);
        let previous = recorded.as_ref().map(|robot| {
            let mut previous = object.clone();
            previous["spec"][RECORDED_FIELD] = robot.as_str().into();
            previous
        });
        for refusal in rules.check(&object, previous.as_ref()) {
            let message = refused(&key, &refusal, recorded.as_deref());
            problems.push(error(&loaded.origin, message));
        }
    }
    problems
}

/// The words of one refusal: the resource, the field, the rule's message,
/// and for a transition rule what it was compared with.
fn refused(key: &str, refusal: &Refusal, recorded: Option<&str>) -> String {
    let Refusal {
        field,
        message,
        rule,
    } = refusal;
    let mut text = format!(
        "ActivationCode {key}: {field}: {message} (the CRD's rule `{rule}`, which API servers from Kubernetes 1.25 enforce"
    );
    if let Some(robot) = recorded.filter(|_| rule.contains("oldSelf")) {
        text.push_str(&format!(
            "; the status file records this resource with spec.{RECORDED_FIELD} {robot:?}: put it back, or give the resource a new metadata.name"
        ));
    }
    text.push(')');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ActivationCode;

    fn loaded(robot: &str) -> Loaded {
        let spec = serde_json::from_value(serde_json::json!({"robotId": robot, "validPeriod": 7}))
            .expect("valid spec");
        let mut resource = ActivationCode::new("kiosk", spec);
        resource.metadata.namespace = Some("retail".into());
        Loaded {
            resource,
            origin: "codes/kiosk.yaml".into(),
        }
    }

    #[test]
    fn a_robot_id_other_than_the_recorded_one_is_refused_naming_file_resource_field_and_rule() {
        let problems = check_rules(&[loaded("robot-b")], |key| {
            (key == "retail/kiosk").then(|| "robot-a".to_owned())
        });
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "codes/kiosk.yaml: ActivationCode retail/kiosk: spec.robotId: robotId is immutable: create a new ActivationCode for another robot (the CRD's rule `self == oldSelf`, which API servers from Kubernetes 1.25 enforce; the status file records this resource with spec.robotId \"robot-a\": put it back, or give the resource a new metadata.name)"
            ]
        );
    }

    #[test]
    fn the_recorded_robot_and_a_resource_without_a_record_pass() {
        let recorded = |key: &str| (key == "retail/kiosk").then(|| "robot-a".to_owned());
        assert_eq!(check_rules(&[loaded("robot-a")], recorded), []);
        assert_eq!(check_rules(&[loaded("robot-b")], |_| None), []);
    }

    /// What the previous resource restores covers every transition rule: a
    /// new rule on another field needs the status file to record it.
    #[test]
    fn every_transition_rule_is_on_the_field_the_status_file_records() {
        let transition_fields: Vec<String> = crate::crd::cel::rules_of(&crate::crd::definition())
            .into_iter()
            .filter(|(_, rule, _)| rule.contains("oldSelf"))
            .map(|(field, _, _)| field)
            .collect();
        assert_eq!(transition_fields, [format!("spec.{RECORDED_FIELD}")]);
    }
}
