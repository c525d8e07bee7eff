//! Spec fields this version of the operator does not know. The spec types
//! keep them, instead of refusing the whole object: the controller reads
//! every ActivationCode in one list, so a single one written for a newer
//! CRD (or read by an operator that was rolled back) must not hide all the
//! others. Each path is then reported where it helps: `reconcile -f` refuses
//! the manifest (a typo on disk is better caught), the engine publishes a
//! Warning Event and carries on without the field.

use super::ActivationCodeSpec;
use super::connection::{ClusterMetaStudioConnectionSpec, MetaStudioConnectionSpec};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// The fields of one mapping that none of its known fields took, by name.
/// Filled by `#[serde(flatten)]` and written back the same way, so a round
/// trip loses nothing; never in the CRD schema.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(transparent)]
pub struct UnknownFields(BTreeMap<String, Value>);

/// One field this operator does not know: `name` in the mapping at
/// `parent`. Displayed as its path, e.g. `spec.reset.cadence`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownField {
    /// The mapping that holds it, e.g. `spec.reset` or `spec.conditions[0]`.
    pub parent: String,
    /// The field's name, as written.
    pub name: String,
}

impl std::fmt::Display for UnknownField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.parent, self.name)
    }
}

impl UnknownFields {
    /// Each unknown field, in name order, as held by `parent`.
    fn under(&self, parent: String) -> impl Iterator<Item = UnknownField> + '_ {
        self.0.keys().map(move |name| UnknownField {
            parent: parent.clone(),
            name: name.clone(),
        })
    }
}

/// Every unknown field of `spec`, level by level: `spec.foo`, then
/// `spec.reset.bar`, `spec.connection...`, `spec.exportSecretRef...`.
/// Empty when this operator knows every field.
pub fn paths(spec: &ActivationCodeSpec) -> Vec<UnknownField> {
    let connection = spec.connection.as_ref();
    let levels = [
        ("spec", Some(&spec.unknown_fields)),
        ("spec.reset", spec.reset.as_ref().map(|r| &r.unknown_fields)),
        (
            "spec.reset.rollout",
            spec.reset
                .as_ref()
                .and_then(|r| r.rollout.as_ref())
                .map(|r| &r.unknown_fields),
        ),
        ("spec.connection", connection.map(|c| &c.unknown_fields)),
        (
            "spec.connection.credentialsSecretRef",
            connection
                .and_then(|c| c.credentials_secret_ref.as_ref())
                .map(|r| &r.unknown_fields),
        ),
        (
            "spec.exportSecretRef",
            spec.export_secret_ref.as_ref().map(|r| &r.unknown_fields),
        ),
        (
            "spec.connectionRef",
            spec.connection_ref.as_ref().map(|r| &r.unknown_fields),
        ),
    ];
    let targets = spec
        .export_secret_ref
        .iter()
        .flat_map(|r| r.restart_targets.iter().enumerate())
        .map(|(i, t)| {
            let parent = format!("spec.exportSecretRef.restartTargets[{i}]");
            (parent, Some(&t.unknown_fields))
        });
    listed(
        levels
            .map(|(parent, fields)| (parent.to_owned(), fields))
            .into_iter()
            .chain(targets),
    )
}

fn listed<'a>(
    levels: impl IntoIterator<Item = (String, Option<&'a UnknownFields>)>,
) -> Vec<UnknownField> {
    levels
        .into_iter()
        .filter_map(|(parent, fields)| fields.map(|f| f.under(parent).collect::<Vec<_>>()))
        .flatten()
        .collect()
}

/// Every unknown field of a MetaStudioConnection's spec.
pub fn connection_paths(spec: &MetaStudioConnectionSpec) -> Vec<UnknownField> {
    listed([
        ("spec".to_owned(), Some(&spec.unknown_fields)),
        (
            "spec.credentialsSecretRef".to_owned(),
            Some(&spec.credentials_secret_ref.unknown_fields),
        ),
        (
            "spec.budget".to_owned(),
            spec.target.budget.as_ref().map(|b| &b.unknown_fields),
        ),
    ])
}

/// Every unknown field of a ClusterMetaStudioConnection's spec.
pub fn cluster_connection_paths(spec: &ClusterMetaStudioConnectionSpec) -> Vec<UnknownField> {
    let conditions = spec
        .conditions
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("spec.conditions[{i}]"), Some(&c.unknown_fields)));
    listed(
        [
            ("spec".to_owned(), Some(&spec.unknown_fields)),
            (
                "spec.credentialsSecretRef".to_owned(),
                Some(&spec.credentials_secret_ref.unknown_fields),
            ),
            (
                "spec.budget".to_owned(),
                spec.target.budget.as_ref().map(|b| &b.unknown_fields),
            ),
        ]
        .into_iter()
        .chain(conditions),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ActivationCode;
    use kube::core::ObjectList;
    use serde_json::json;

    fn code(name: &str, spec: Value) -> Value {
        json!({
            "apiVersion": "metastudio.huaweicloud.com/v1alpha1",
            "kind": "ActivationCode",
            "metadata": {"name": name, "namespace": "retail"},
            "spec": spec,
        })
    }

    /// A spec with an unknown field at every level, beside known ones.
    fn newer_spec() -> Value {
        json!({
            "robotId": "r1", "validPeriod": 7, "future": {"a": 1},
            "reset": {"token": "t1", "cadence": "gradual"},
            "connection": {
                "region": "cn-north-4", "proxy": "http://p",
                "credentialsSecretRef": {"name": "creds", "namespace": "other"},
            },
            "exportSecretRef": {"name": "out", "format": "json",
                "restartTargets": [{"kind": "Deployment", "name": "web", "strategy": "now"}]},
        })
    }

    #[test]
    fn unknown_fields_at_every_level_are_kept_and_listed() {
        let resource: ActivationCode = serde_json::from_value(code("a", newer_spec())).unwrap();
        let spec = &resource.spec;
        assert_eq!((spec.robot_id.as_str(), spec.valid_period), ("r1", 7));
        let reset = spec.reset.as_ref().unwrap();
        assert_eq!(reset.token.as_deref(), Some("t1"));
        assert!(reset.clean_auth_credential, "defaults still apply");
        let connection = spec.connection.as_ref().unwrap();
        assert_eq!(connection.region.as_deref(), Some("cn-north-4"));
        assert_eq!(
            connection.credentials_secret_ref.as_ref().unwrap().name,
            "creds"
        );
        assert_eq!(spec.export_secret_ref.as_ref().unwrap().name, "out");
        let listed: Vec<String> = paths(spec).iter().map(ToString::to_string).collect();
        assert_eq!(
            listed,
            [
                "spec.future",
                "spec.reset.cadence",
                "spec.connection.proxy",
                "spec.connection.credentialsSecretRef.namespace",
                "spec.exportSecretRef.format",
                "spec.exportSecretRef.restartTargets[0].strategy",
            ]
        );
    }

    #[test]
    fn a_known_spec_has_none_and_a_round_trip_loses_none() {
        let spec = json!({"robotId": "r1", "validPeriod": 7, "reset": {"token": "t1"}});
        let resource: ActivationCode = serde_json::from_value(code("a", spec)).unwrap();
        assert!(paths(&resource.spec).is_empty());
        let newer: ActivationCode = serde_json::from_value(code("a", newer_spec())).unwrap();
        let written = serde_json::to_value(&newer.spec).unwrap();
        assert_eq!(written["future"], json!({"a": 1}), "{written}");
        assert_eq!(written["reset"]["cadence"], "gradual", "{written}");
        let again: ActivationCodeSpec = serde_json::from_value(written).unwrap();
        assert_eq!(again, newer.spec);
    }

    #[test]
    fn a_list_with_one_newer_resource_decodes_every_item() {
        // What the controller's watcher reads: one bad item used to fail it all.
        let list = json!({
            "apiVersion": "metastudio.huaweicloud.com/v1alpha1",
            "kind": "ActivationCodeList",
            "metadata": {"resourceVersion": "42"},
            "items": [
                code("good", json!({"robotId": "r1", "validPeriod": 3})),
                code("newer", newer_spec()),
            ],
        });
        let bytes = serde_json::to_vec(&list).unwrap();
        let decoded: ObjectList<ActivationCode> = serde_json::from_slice(&bytes).unwrap();
        let names: Vec<_> = decoded
            .items
            .iter()
            .map(|r| r.metadata.name.as_deref().unwrap())
            .collect();
        assert_eq!(names, ["good", "newer"]);
        assert!(paths(&decoded.items[0].spec).is_empty());
        assert_eq!(paths(&decoded.items[1].spec).len(), 6);
    }
}
