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
