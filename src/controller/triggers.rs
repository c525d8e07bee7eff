//! Which ActivationCodes a Secret change concerns: the owner of an export
//! Secret, every resource in the Secret's namespace whose
//! `spec.connection.credentialsSecretRef` names it, and every resource
//! whose connection resource (`spec.connectionRef`) keeps its credentials
//! there.
//!
//! Only a Secret's metadata is needed (name, namespace, owners), so the
//! controller watches Secrets with a metadata-only watch: their data never
//! streams through the operator, and [`strip`] drops the metadata it does
//! not need (annotations, which hold a Secret's data when it was made with
//! `kubectl apply`, and managedFields) as soon as it arrives; no Secret is
//! kept in a cache. Credentials are read with a `get` when a resource that
//! uses them is reconciled, and not kept.

use super::directory::ClusterDirectory;
use crate::crd::ActivationCode;
use crate::crd::KIND;
use crate::tenancy::{CredentialsSource, decide_secret};
use k8s_openapi::api::core::v1::Secret;
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

/// What a change of an ActivationCode must alter to trigger a reconcile:
/// its generation (a spec change, or the deletion marking) or whether its
/// owner asked to keep its codes ([`crate::crd::deletion::ORPHAN_ANNOTATION`],
/// which a blocked deletion waits for). A status write alters neither.
pub fn reconcile_worthy(resource: &ActivationCode) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let orphan = crate::crd::deletion::orphan_annotated(resource);
    (resource.metadata.generation, orphan).hash(&mut hasher);
    Some(hasher.finish())
}

/// Drops what the trigger does not need from a Secret's metadata.
pub fn strip(secret: &mut PartialObjectMeta<Secret>) {
    secret.metadata.annotations = None;
    secret.metadata.managed_fields = None;
    secret.metadata.labels = None;
}

/// The resources to reconcile when `secret` (a Secret, or only its
/// metadata) changed.
pub fn resources_for_secret(
    store: &Store<ActivationCode>,
    directory: &ClusterDirectory,
    secret: &impl Resource,
) -> Vec<ObjectRef<ActivationCode>> {
    let namespace = secret.namespace().unwrap_or_default();
    let name = secret.name_any();
    let mut refs: Vec<ObjectRef<ActivationCode>> = secret
        .owner_references()
        .iter()
        .filter(|o| o.kind == KIND && o.api_version.starts_with(crate::crd::GROUP))
        .map(|o| ObjectRef::new(&o.name).within(&namespace))
        .collect();
    for resource in store.state() {
        let uses = match decide_secret(&resource, directory) {
            Some(CredentialsSource::Secret {
                namespace: ns,
                name: n,
                ..
            }) => ns == namespace && n == name,
            _ => false,
        };
        if uses {
            refs.push(ObjectRef::from_obj(&*resource));
        }
    }
    refs.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    refs.dedup();
    refs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::connection::MetaStudioConnection;
    use kube::runtime::watcher;
    use serde_json::json;

    fn secret(namespace: &str, name: &str) -> PartialObjectMeta<Secret> {
        serde_json::from_value(json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {
                "name": name, "namespace": namespace,
                "labels": {"team": "kiosk"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"secretKey\":\"c2s=\"}}"},
                "managedFields": [{"manager": "kubectl", "operation": "Update"}],
            },
        }))
        .unwrap()
    }

    #[test]
    fn a_secret_keeps_only_its_name_namespace_and_owners() {
        let mut seen = secret("retail", "creds");
        strip(&mut seen);
        assert_eq!(
            seen.metadata.annotations, None,
            "last-applied holds the data"
        );
        assert_eq!(seen.metadata.managed_fields, None);
        assert_eq!(seen.metadata.labels, None);
        assert_eq!(seen.name_any(), "creds");
    }

    #[test]
    fn a_secret_of_a_connection_reconciles_the_resources_that_use_the_connection() {
        let resource = |name: &str, spec: serde_json::Value| -> ActivationCode {
            serde_json::from_value(json!({
                "apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "ActivationCode",
                "metadata": {"name": name, "namespace": "retail"}, "spec": spec,
            }))
            .unwrap()
        };
        let (store, mut writer) = kube::runtime::reflector::store();
        for r in [
            resource(
                "via-team",
                json!({"robotId": "r", "validPeriod": 1, "connectionRef": {"name": "team"}}),
            ),
            resource(
                "own",
                json!({"robotId": "r", "validPeriod": 1, "connection": {"credentialsSecretRef": {"name": "own"}}}),
            ),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(r));
        }
        let team: MetaStudioConnection = serde_json::from_value(json!({
            "apiVersion": "metastudio.huaweicloud.com/v1alpha1", "kind": "MetaStudioConnection",
            "metadata": {"name": "team", "namespace": "retail"},
            "spec": {"region": "cn-north-4", "projectId": "p", "credentialsSecretRef": {"name": "team-credentials"}},
        }))
        .unwrap();
        let directory = ClusterDirectory::of(&[team], &[], &[]);
        let names = |secret: &PartialObjectMeta<Secret>| -> Vec<String> {
            resources_for_secret(&store, &directory, secret)
                .into_iter()
                .map(|r| r.name)
                .collect()
        };
        assert_eq!(names(&secret("retail", "team-credentials")), ["via-team"]);
        assert_eq!(names(&secret("retail", "own")), ["own"]);
        assert!(names(&secret("museum", "team-credentials")).is_empty());
    }
}
