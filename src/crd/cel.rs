//! The CEL rules the CRDs carry (`x-kubernetes-validations`), evaluated
//! here as an API server from Kubernetes 1.25 evaluates them (kube's `cel`
//! feature). `reconcile -f` applies them to manifests, so a GitOps check
//! refuses what such a server would; the tests prove every rule whatever
//! the server the suite runs against. Older servers ignore the rules: what
//! they protect, the operator enforces itself (spec.robotId, see
//! `status.robotId`).

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::cel::{CompiledSchema, compile_schema, validate_compiled};

/// One CRD's rules, compiled once for every object checked against them.
pub struct CelRules {
    compiled: CompiledSchema,
}

/// A rule an object breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The field the rule is on, e.g. `spec.robotId`.
    pub field: String,
    /// The rule's message (what the API server answers).
    pub message: String,
    /// The CEL expression, e.g. `self == oldSelf`.
    pub rule: String,
}

impl CelRules {
    /// The rules of `crd`'s first version (the only one this operator
    /// serves).
    pub fn of(crd: &CustomResourceDefinition) -> Self {
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("a generated CRD has an openAPIV3Schema");
        let schema = serde_json::to_value(schema).expect("a CRD schema serialises");
        let compiled = compile_schema(&schema);
        assert!(
            !compiled.has_errors(),
            "a CEL rule of {} does not compile: {:?}",
            crd.metadata.name.as_deref().unwrap_or_default(),
            compiled.compilation_errors()
        );
        Self { compiled }
    }

    /// The rules `object` breaks: as on a create, or, given the `previous`
    /// object, as on an update (with the transition rules, those that
    /// read `oldSelf`).
    pub fn check(
        &self,
        object: &serde_json::Value,
        previous: Option<&serde_json::Value>,
    ) -> Vec<Refusal> {
        match validate_compiled(&self.compiled, object, previous) {
            Ok(()) => Vec::new(),
            Err(errors) => errors
                .iter()
                .map(|e| Refusal {
                    field: e.field_path.clone(),
                    message: e.message.clone(),
                    rule: e.rule.clone(),
                })
                .collect(),
        }
    }
}

/// Every rule of `crd`, as (field path, rule, message), e.g.
/// (`spec.robotId`, `self == oldSelf`, ...): what the tests go through.
#[cfg(test)]
pub(crate) fn rules_of(crd: &CustomResourceDefinition) -> Vec<(String, String, String)> {
    let crd = serde_json::to_value(crd).expect("a CRD serialises");
    let mut rules = Vec::new();
    rules_in(
        "",
        &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"],
        &mut rules,
    );
    rules
}

/// Every rule in `schema`, as (field path, rule, message).
#[cfg(test)]
fn rules_in(path: &str, schema: &serde_json::Value, out: &mut Vec<(String, String, String)>) {
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let text = |key: &str| rule[key].as_str().unwrap_or_default().to_owned();
        out.push((path.to_owned(), text("rule"), text("message")));
    }
    for (name, child) in schema["properties"].as_object().into_iter().flatten() {
        let child_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        rules_in(&child_path, child, out);
    }
    if schema["items"].is_object() {
        rules_in(&format!("{path}[]"), &schema["items"], out);
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        for alternative in schema[key].as_array().into_iter().flatten() {
            rules_in(path, alternative, out);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Every rule of every CRD, accepted and refused (see
    //! `every_rule_is_one_this_module_tests`).
    use super::*;
    use crate::crd::definitions;
    use serde_json::{Value, json};

    fn activation_code_rules() -> CelRules {
        CelRules::of(&crate::crd::definition())
    }

    fn code(robot: &str) -> Value {
        json!({
            "apiVersion": crate::crd::API_VERSION, "kind": crate::crd::KIND,
            "metadata": {"name": "kiosk", "namespace": "retail"},
            "spec": {"robotId": robot, "validPeriod": 7},
        })
    }

    const ROBOT_ID_IMMUTABLE: (&str, &str, &str) = (
        "spec.robotId",
        "self == oldSelf",
        "robotId is immutable: create a new ActivationCode for another robot",
    );

    /// A new rule fails this until a test here covers it.
    #[test]
    fn every_rule_is_one_this_module_tests() {
        let found: Vec<_> = definitions()
            .iter()
            .flat_map(|(file, crd)| rules_of(crd).into_iter().map(move |rule| (*file, rule)))
            .collect();
        let (field, rule, message) = ROBOT_ID_IMMUTABLE;
        assert_eq!(
            found,
            [(
                "activationcode.yaml",
                (field.to_owned(), rule.to_owned(), message.to_owned())
            )],
            "the CRDs' CEL rules changed: test each new rule here (accepted and refused)"
        );
    }

    #[test]
    fn every_crds_rules_compile() {
        for (_, crd) in definitions() {
            CelRules::of(&crd);
        }
    }

    #[test]
    fn a_changed_robot_id_is_refused_with_the_rules_message() {
        let rules = activation_code_rules();
        let refusals = rules.check(&code("robot-b"), Some(&code("robot-a")));
        let (field, rule, message) = ROBOT_ID_IMMUTABLE;
        assert_eq!(
            refusals,
            [Refusal {
                field: field.into(),
                message: message.into(),
                rule: rule.into(),
            }]
        );
        // kube's own route (its derived CRD, compiled per call) agrees.
        let typed = |robot| serde_json::from_value::<crate::crd::ActivationCode>(code(robot));
        let refused = kube::core::cel::validate_cel_update(
            &typed("robot-b").unwrap(),
            &typed("robot-a").unwrap(),
        )
        .expect_err("kube refuses the change too");
        assert_eq!(refused[0].message, message);
    }

    #[test]
    fn an_unchanged_robot_id_and_a_create_are_accepted() {
        let rules = activation_code_rules();
        let mut edited = code("robot-a");
        edited["spec"]["validPeriod"] = json!(30);
        edited["spec"]["suspend"] = json!(true);
        assert_eq!(rules.check(&edited, Some(&code("robot-a"))), []);
        // A create has no oldSelf: the transition rule does not apply.
        assert_eq!(rules.check(&code("robot-b"), None), []);
    }
}
