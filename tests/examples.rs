//! `examples/` is what users copy: every manifest loads through the same
//! loader as `reconcile -f`, every ActivationCode passes the operator's own
//! spec validation, the tenancy decision grants every ActivationCode its
//! connection, the ClusterMetaStudioConnection admits the example
//! namespace, the credentials Secret holds only placeholders, and the
//! kustomization lists every manifest but the seed. (scripts/chart-check
//! validates each resource of the operator's kinds against its CRD schema.)

use metastudio_operator::crd::ActivationCodeSpec;
use metastudio_operator::offline::manifests;
use metastudio_operator::tenancy::{
    self, DefaultCredentialsScope, InlineEndpoints, OperatorDefaults,
};
use metastudio_operator::validate::validate;
use serde_json::json;
use std::path::PathBuf;

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

/// The cluster's rules: nobody may use the operator's own credentials (the
/// chart's default), so the examples must bring their own, and an inline
/// connection may name no endpoint but an official one.
fn tenant_policy() -> OperatorDefaults {
    OperatorDefaults {
        credentials_scope: DefaultCredentialsScope::Nobody,
        inline_endpoints: InlineEndpoints::OfficialOnly,
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
