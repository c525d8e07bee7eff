//! The CRDs on disk are exactly what the code generates, and every field
//! carries a description (what `kubectl explain` shows):
//!
//! - `crds/` holds them as `metastudio-operator crd` prints them, for
//!   `kubectl apply --server-side -f crds/`;
//! - the chart holds them as templates (`templates/crds/`), so that `helm
//!   upgrade` updates them: the same YAML with the chart's labels, the
//!   `helm.sh/resource-policy: keep` annotation (`crds.keep`), all of it
//!   under `crds.enabled`, and each CEL rule (`x-kubernetes-validations`)
//!   only where the server knows them (1.25+). `scripts/chart-check`
//!   renders them for 1.20 and 1.30 and compares them with `crds/`.
//!
//! `UPDATE_CRDS=1 cargo nextest run --test crd` rewrites both from the code.

#[path = "crd/chart_template.rs"]
mod chart_template;

use metastudio_operator::crd::{crd_yaml, definition, definitions, yaml_of};
use serde_json::Value;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Where the chart's CRD templates are.
const CHART_CRDS: &str = "charts/metastudio-operator/templates/crds";

/// Writes `generated` to `path` when `UPDATE_CRDS` is set, then asserts the
/// file holds it.
fn assert_generated(path: &Path, generated: &str) {
    if std::env::var_os("UPDATE_CRDS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{} is stale: run `UPDATE_CRDS=1 cargo nextest run --test crd`",
        path.display()
    );
}

#[test]
fn the_crd_files_and_the_chart_templates_are_generated_from_the_code() {
    for (file, crd) in definitions() {
        let yaml = yaml_of(&crd);
        assert_generated(&root().join("crds").join(file), &yaml);
        assert_generated(
            &root().join(CHART_CRDS).join(file),
            &chart_template::of(&crd.spec.names.kind, &yaml),
        );
    }
    // Nothing else there: a CRD the code no longer makes must go.
    let mut templates: Vec<String> = std::fs::read_dir(root().join(CHART_CRDS))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    templates.sort();
    let mut files: Vec<String> = definitions().iter().map(|(f, _)| (*f).to_owned()).collect();
    files.sort();
    assert_eq!(
        templates, files,
        "{CHART_CRDS} holds other files than the CRDs"
    );
    assert!(
        !root().join("charts/metastudio-operator/crds").exists(),
        "the chart must not have a crds/ directory: Helm installs it on the first install only, and a CRD there and in templates/crds/ conflicts"
    );
    let printed = crd_yaml();
    assert_eq!(
        printed.matches("kind: CustomResourceDefinition").count(),
        3,
        "`crd` prints every CRD"
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
    let mut missing = Vec::new();
    for (file, crd) in definitions() {
        let crd = serde_json::to_value(crd).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        for part in ["spec", "status"] {
            undocumented(
                &format!("{file}: {part}"),
                &schema["properties"][part],
                &mut missing,
            );
        }
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
            "Desired",
            "Codes",
            "Ready",
            "Synced",
            "Rotation",
            "Last Sync",
            "Age"
        ]
    );
}

/// `kubectl scale activationcode NAME --replicas=N` sets spec.count and
/// reads the codes the resource manages; `kubectl get ac` shows both.
#[test]
fn the_scale_subresource_maps_replicas_to_the_count_and_the_managed_codes() {
    let crd = serde_json::to_value(definition()).unwrap();
    let version = &crd["spec"]["versions"][0];
    assert_eq!(
        version["subresources"]["scale"],
        serde_json::json!({
            "specReplicasPath": ".spec.count",
            "statusReplicasPath": ".status.managedCodes"
        }),
        "no labelSelectorPath: codes have no labels"
    );
    assert!(
        version["subresources"]["status"].is_object(),
        "statusReplicasPath needs the status subresource"
    );
    let schema = &version["schema"]["openAPIV3Schema"]["properties"];
    assert_eq!(schema["spec"]["properties"]["count"]["type"], "integer");
    assert_eq!(
        schema["status"]["properties"]["managedCodes"]["type"],
        "integer"
    );
    let column = |name: &str| {
        version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} column"))
    };
    assert_eq!(column("Desired")["jsonPath"], ".spec.count");
    assert_eq!(column("Desired")["type"], "integer");
    assert_eq!(column("Codes")["jsonPath"], ".status.managedCodes");
}
