//! `examples/` is what users copy: every manifest loads through the same
//! loader as `reconcile -f`, every ActivationCode passes the operator's own
//! spec validation, every resource of one of the operator's kinds matches
//! its CRD's schema in `crds/` (scripts/chart-check validates them with
//! jsonschema too), the tenancy decision grants every ActivationCode its
//! connection, the ClusterMetaStudioConnection admits the example
//! namespace, the credentials Secret holds only placeholders, and the
//! kustomization lists every manifest but the seed.

use metastudio_operator::crd::ActivationCodeSpec;
use metastudio_operator::offline::manifests;
use metastudio_operator::tenancy::{self, DefaultCredentialsScope, OperatorDefaults};
use metastudio_operator::validate::validate;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn examples() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
}

#[test]
fn every_example_loads_and_validates() {
    let loaded = manifests::load(&[examples()], "default").unwrap_or_else(|errors| {
        panic!(
            "examples/ does not load: {}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    });
    let declared = std::fs::read_dir(examples())
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .map(|text| text.matches("\nkind: ActivationCode").count())
        .sum::<usize>();
    assert!(declared >= 2, "an Enforce and an Observe example");
    assert_eq!(
        loaded.resources.len(),
        declared,
        "every ActivationCode loaded"
    );
    for resource in &loaded.resources {
        let problems = validate(&resource.resource.spec);
        assert!(
            problems.is_empty(),
            "{}: {}",
            resource.origin,
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        );
        assert!(
            resource.resource.metadata.namespace.is_some(),
            "{}: no namespace",
            resource.origin
        );
    }
    let policies: Vec<String> = loaded
        .resources
        .iter()
        .map(|r| format!("{:?}", r.resource.spec.management_policy))
        .collect();
    assert!(
        policies.iter().any(|p| p.contains("Enforce"))
            && policies.iter().any(|p| p.contains("Observe")),
        "{policies:?}"
    );
    assert!(!loaded.seeds.is_empty(), "the simulator seed loads");
    assert!(
        !loaded.catalog.connections.is_empty() && !loaded.catalog.cluster_connections.is_empty(),
        "a MetaStudioConnection and a ClusterMetaStudioConnection are examples"
    );
    assert!(
        loaded
            .resources
            .iter()
            .any(|r| r.resource.spec.connection_ref.is_some())
            && loaded
                .resources
                .iter()
                .any(|r| r.resource.spec.connection.is_some()),
        "an ActivationCode with spec.connectionRef and one with spec.connection"
    );

    let credentials = loaded
        .secrets
        .values()
        .next()
        .expect("the credentials Secret is an example");
    for (key, value) in credentials {
        assert!(
            value.expose().starts_with("REPLACE-WITH-"),
            "{key} is not a placeholder"
        );
    }
}

#[test]
fn the_kustomization_lists_every_manifest_but_the_seed() {
    let text = std::fs::read_to_string(examples().join("kustomization.yaml")).unwrap();
    let listed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .collect();
    let mut files: Vec<String> = std::fs::read_dir(examples())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml" && f != "simulator-seed.yaml")
        .collect();
    files.sort();
    let mut listed: Vec<String> = listed.into_iter().map(str::to_owned).collect();
    listed.sort();
    assert_eq!(listed, files);
    for file in &files {
        assert!(examples().join(file).exists());
    }
}

/// Nobody may use the operator's own credentials (the chart's default): the
/// examples must bring their own.
fn tenant_policy() -> OperatorDefaults {
    OperatorDefaults {
        credentials_scope: DefaultCredentialsScope::Nobody,
        ..OperatorDefaults::default()
    }
}

#[test]
fn every_example_activation_code_is_granted_its_connection() {
    let loaded = manifests::load(&[examples()], "default").expect("examples/ loads");
    for resource in &loaded.resources {
        let namespace = resource.resource.metadata.namespace.as_deref().unwrap();
        let grant = tenancy::decide(
            namespace,
            &resource.resource.spec,
            &loaded.catalog,
            &tenant_policy(),
        )
        .unwrap_or_else(|refusal| panic!("{}: {refusal}", resource.origin));
        if let tenancy::CredentialsSource::Secret {
            namespace, name, ..
        } = &grant.credentials
        {
            assert!(
                loaded.secrets.contains_key(&format!("{namespace}/{name}")),
                "{}: the Secret {namespace}/{name} ({}) is not among the examples",
                resource.origin,
                grant.via
            );
        }
    }
    // The cluster-wide connection admits the example namespace, for the
    // example robots, by its label.
    for (name, connection) in &loaded.catalog.cluster_connections {
        for resource in &loaded.resources {
            let namespace = resource.resource.metadata.namespace.as_deref().unwrap();
            let spec: ActivationCodeSpec = serde_json::from_value(json!({
                "robotId": resource.resource.spec.robot_id,
                "validPeriod": 7,
                "connectionRef": {"kind": "ClusterMetaStudioConnection", "name": name},
            }))
            .unwrap();
            tenancy::decide(namespace, &spec, &loaded.catalog, &tenant_policy())
                .unwrap_or_else(|refusal| panic!("ClusterMetaStudioConnection {name}: {refusal}"));
        }
        assert!(
            connection
                .conditions
                .iter()
                .all(|c| c.namespace_selector.is_some() && !c.robot_ids.is_empty()),
            "ClusterMetaStudioConnection {name} shows a namespaceSelector and robotIds"
        );
    }
}

/// The `openAPIV3Schema` of each CRD in `crds/`, by kind.
fn crd_schemas() -> BTreeMap<String, Value> {
    let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let mut schemas = BTreeMap::new();
    for entry in std::fs::read_dir(crds).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let crd: Value = serde_saphyr::from_str(&text).unwrap();
        let version = crd["spec"]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["storage"] == true)
            .expect("a storage version");
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_owned();
        schemas.insert(kind, version["schema"]["openAPIV3Schema"].clone());
    }
    schemas
}

/// What the API server refuses by a CRD's structural schema when a
/// manifest is applied strictly (kubectl's default): an unknown field, a
/// missing required one, a wrong type, a value outside its enum, length or
/// range. Patterns are left to the loader's validation (above) and to
/// scripts/chart-check's jsonschema.
fn schema_problems(value: &Value, schema: &Value, path: &str, problems: &mut Vec<String>) {
    let type_ok = match schema.get("type").and_then(Value::as_str) {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        problems.push(format!("{path}: {value} is not of type {}", schema["type"]));
        return;
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        problems.push(format!("{path}: {value} is not one of {options:?}"));
    }
    let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as f64;
        if bound("minLength").is_some_and(|min| length < min)
            || bound("maxLength").is_some_and(|max| length > max)
        {
            problems.push(format!("{path}: the length of {value} is out of range"));
        }
    }
    if let Some(number) = value.as_f64() {
        if bound("minimum").is_some_and(|min| number < min)
            || bound("maximum").is_some_and(|max| number > max)
        {
            problems.push(format!("{path}: {value} is out of range"));
        }
    }
    match value {
        Value::Object(fields) => {
            for required in schema["required"].as_array().into_iter().flatten() {
                if !fields.contains_key(required.as_str().unwrap()) {
                    problems.push(format!(
                        "{path}.{}: is required",
                        required.as_str().unwrap()
                    ));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in fields {
                let child_path = format!("{path}.{key}");
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(child_schema), _) | (None, Some(child_schema)) => {
                        schema_problems(child, child_schema, &child_path, problems);
                    }
                    (None, None) => problems.push(format!("{child_path}: unknown field")),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    schema_problems(item, item_schema, &format!("{path}[{i}]"), problems);
                }
            }
        }
        _ => {}
    }
}

#[test]
fn every_example_of_the_operators_kinds_matches_its_crd_schema() {
    let schemas = crd_schemas();
    assert_eq!(schemas.len(), 3, "{:?}", schemas.keys());
    let mut checked: BTreeMap<String, usize> = BTreeMap::new();
    for entry in std::fs::read_dir(examples()).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let documents: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        for mut document in documents {
            let Some(kind) = document["kind"].as_str().map(str::to_owned) else {
                continue;
            };
            let Some(schema) = schemas.get(&kind) else {
                continue;
            };
            *checked.entry(kind.clone()).or_default() += 1;
            // The API server knows apiVersion, kind and metadata itself.
            let object = document.as_object_mut().unwrap();
            for field in ["apiVersion", "kind", "metadata"] {
                object.remove(field);
            }
            let mut problems = Vec::new();
            schema_problems(&document, schema, "", &mut problems);
            assert!(
                problems.is_empty(),
                "{}: {kind} does not match crds/: {}",
                path.display(),
                problems.join("; ")
            );
        }
    }
    for kind in schemas.keys() {
        assert!(
            checked.contains_key(kind),
            "no {kind} among the examples: {checked:?}"
        );
    }
}

#[test]
fn the_schema_check_refuses_what_the_api_server_would() {
    let schemas = crd_schemas();
    let schema = &schemas["MetaStudioConnection"];
    let cases = [
        (
            json!({"spec": {"projectId": "p", "credentialsSecretRef": {"name": "s"}, "regon": "x"}}),
            ".spec.regon: unknown field",
        ),
        (
            json!({"spec": {"projectId": "p"}}),
            ".spec.credentialsSecretRef: is required",
        ),
        (
            json!({"spec": {"projectId": "p", "credentialsSecretRef": {"name": ""}}}),
            ".spec.credentialsSecretRef.name: the length",
        ),
        (
            json!({"spec": {"projectId": "p", "credentialsSecretRef": {"name": "s"}, "insecureHttp": "yes"}}),
            ".spec.insecureHttp: \"yes\" is not of type",
        ),
        (
            json!({"spec": {"projectId": "p", "credentialsSecretRef": {"name": "s"}, "budget": {"requestsPerSecond": 5000}}}),
            ".spec.budget.requestsPerSecond: 5000 is out of range",
        ),
    ];
    for (document, expected) in cases {
        let mut problems = Vec::new();
        schema_problems(&document, schema, "", &mut problems);
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{document}: {problems:?}"
        );
    }
}
