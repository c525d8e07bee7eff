//! The CRD on disk is exactly what `metastudio-operator crd` prints, and
//! every field carries a description (what `kubectl explain` shows).

use metastudio_operator::crd::{crd_yaml, definition};
use serde_json::Value;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn crds_file_is_the_generated_crd() {
    let on_disk = std::fs::read_to_string(root().join("crds/activationcode.yaml")).unwrap();
    assert!(
        on_disk == crd_yaml(),
        "crds/activationcode.yaml is stale: run `cargo run -- crd > crds/activationcode.yaml`"
    );
}

#[test]
fn the_chart_ships_the_same_crd() {
    let top = std::fs::read(root().join("crds/activationcode.yaml")).unwrap();
    let chart =
        std::fs::read(root().join("charts/metastudio-operator/crds/activationcode.yaml")).unwrap();
    assert!(
        top == chart,
        "charts/metastudio-operator/crds/activationcode.yaml differs: cp crds/activationcode.yaml charts/metastudio-operator/crds/"
    );
}

fn undocumented(path: &str, schema: &Value, missing: &mut Vec<String>) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, child) in properties {
            let child_path = format!("{path}.{name}");
            let described = child
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| !d.trim().is_empty());
            if !described {
                missing.push(child_path.clone());
            }
            undocumented(&child_path, child, missing);
        }
    }
    if let Some(items) = schema.get("items") {
        undocumented(&format!("{path}[]"), items, missing);
    }
}

#[test]
fn every_field_has_a_description_for_kubectl_explain() {
    let crd = serde_json::to_value(definition()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut missing = Vec::new();
    for part in ["spec", "status"] {
        undocumented(part, &schema["properties"][part], &mut missing);
    }
    assert!(
        missing.is_empty(),
        "fields without a doc comment: {missing:?}"
    );
}

#[test]
fn schema_states_ranges_enums_and_immutability() {
    let crd = serde_json::to_value(definition()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let valid = &spec["properties"]["validPeriod"];
    assert_eq!(valid["minimum"].as_f64(), Some(0.0));
    assert_eq!(valid["maximum"].as_f64(), Some(65535.0));
    assert_eq!(
        spec["properties"]["managementPolicy"]["enum"],
        serde_json::json!(["Enforce", "Observe"])
    );
    assert_eq!(
        spec["properties"]["robotId"]["x-kubernetes-validations"][0]["rule"],
        "self == oldSelf"
    );
    assert_eq!(spec["properties"]["robotId"]["minLength"], 1);
    assert!(
        !crd.to_string().contains("nullable"),
        "no nullable field: OpenAPI v2 publishes one without its type and fields"
    );
    assert!(spec["properties"]["syncInterval"]["pattern"].is_string());
    assert_eq!(
        spec["required"],
        serde_json::json!(["robotId", "validPeriod"])
    );
    let names = &crd["spec"]["names"];
    assert_eq!(names["shortNames"], serde_json::json!(["ac"]));
    let columns: Vec<&str> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "Robot",
            "Valid (days)",
            "Codes",
            "Ready",
            "Synced",
            "Last Sync",
            "Age"
        ]
    );
}
