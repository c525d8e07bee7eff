//! `spec.exportSecretRef`: the Secret that receives the code values, and
//! the workloads that read it and must roll out when the values change
//! (`restartTargets`). Every doc comment here is what `kubectl explain`
//! prints.

use super::UnknownFields;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The most workloads one resource may name in `restartTargets`.
pub const MAX_RESTART_TARGETS: usize = 16;

/// A Secret in the resource's own namespace that receives the code values,
/// and the workloads that follow them.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportSecretReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Workloads in this namespace that read this Secret (as environment
    /// variables, say) and must restart to see new code values: at most 16
    /// Deployments, StatefulSets or DaemonSets. Whenever the Secret's data
    /// differs from what a workload last rolled out with, the operator sets
    /// the pod template annotation
    /// metastudio.huaweicloud.com/export-hash to a keyed hash of the data
    /// (never the values), so each rolls out once per change of the values
    /// and never when nothing changed. The first sync after a workload is
    /// named sets the annotation, which rolls it out once. A workload that
    /// is missing, or that the operator may not patch (the Helm chart's
    /// restartTargets.enabled grants it), gets a RestartTargetFailed
    /// Warning Event on this resource; the codes sync all the same. Only in
    /// a cluster: `reconcile -f` rolls out nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = MAX_RESTART_TARGETS))]
    pub restart_targets: Vec<RestartTarget>,

    /// Fields this operator does not know, e.g. of a newer CRD (see
    /// [`super::unknown_fields`]); serialised back as they came.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown_fields: UnknownFields,
}

/// A workload in the resource's namespace that rolls out when the code
/// values change.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct RestartTarget {
    /// Deployment, StatefulSet or DaemonSet (group apps).
    #[schemars(schema_with = "kind_schema")]
    pub kind: String,

    /// Name of the workload in this namespace.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub name: String,

    /// Fields this operator does not know, e.g. of a newer CRD (see
    /// [`super::unknown_fields`]); serialised back as they came.
    #[serde(flatten)]
    #[schemars(skip)]
    pub unknown_fields: UnknownFields,
}

impl RestartTarget {
    /// The kind, when it is one that rolls out (validation refuses others).
    pub fn workload_kind(&self) -> Option<WorkloadKind> {
        WorkloadKind::parse(&self.kind)
    }
}

/// The kinds whose pod template annotation rolls them out. A string in
/// the spec ([`RestartTarget::kind`]), so that a kind a newer CRD allows
/// does not make the whole resource unreadable to this operator:
/// validation names it instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl WorkloadKind {
    pub const ALL: [Self; 3] = [Self::Deployment, Self::StatefulSet, Self::DaemonSet];

    /// The kind as the spec and the API name it, e.g. `StatefulSet`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Deployment => "Deployment",
            Self::StatefulSet => "StatefulSet",
            Self::DaemonSet => "DaemonSet",
        }
    }

    /// The kind as spelled exactly, or `None`.
    pub fn parse(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == kind)
    }

    /// "Deployment, StatefulSet or DaemonSet".
    pub fn choices() -> String {
        let names = Self::ALL.map(Self::name);
        format!("{}, {} or {}", names[0], names[1], names[2])
    }
}

fn kind_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let kinds = WorkloadKind::ALL.map(WorkloadKind::name);
    schemars::json_schema!({"type": "string", "enum": kinds})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_exactly_as_the_api_spells_them() {
        for kind in WorkloadKind::ALL {
            assert_eq!(WorkloadKind::parse(kind.name()), Some(kind));
        }
        for other in ["deployment", "Pod", "CronJob", "", "Deployment "] {
            assert_eq!(WorkloadKind::parse(other), None, "{other:?}");
        }
        assert_eq!(
            WorkloadKind::choices(),
            "Deployment, StatefulSet or DaemonSet"
        );
    }

    #[test]
    fn targets_are_optional_and_round_trip() {
        let bare: ExportSecretReference =
            serde_json::from_value(serde_json::json!({"name": "codes"})).unwrap();
        assert_eq!(bare.name, "codes");
        assert!(bare.restart_targets.is_empty());
        assert_eq!(
            serde_json::to_value(&bare).unwrap(),
            serde_json::json!({"name": "codes"})
        );
        let json = serde_json::json!({"name": "codes",
            "restartTargets": [{"kind": "StatefulSet", "name": "db"}]});
        let with: ExportSecretReference = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(
            with.restart_targets[0].workload_kind(),
            Some(WorkloadKind::StatefulSet)
        );
        assert_eq!(serde_json::to_value(&with).unwrap(), json);
    }
}
