//! Which ActivationCodes a Secret change concerns: the owner of an export
//! Secret, and every resource in the Secret's namespace whose
//! `spec.connection.credentialsSecretRef` names it.
//!
//! Only a Secret's metadata is needed (name, namespace, owners), so the
//! controller watches Secrets with a metadata-only watch: their data never
//! streams through the operator; credentials are read with a `get` when a
//! resource that names them is reconciled.

use crate::crd::{ActivationCode, KIND};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};

/// The resources to reconcile when `secret` (a Secret, or only its
/// metadata) changed.
pub fn resources_for_secret(
    store: &Store<ActivationCode>,
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
        let uses = resource.namespace().as_deref() == Some(namespace.as_str())
            && resource
                .spec
                .connection
                .as_ref()
                .and_then(|c| c.credentials_secret_ref.as_ref())
                .is_some_and(|r| r.name == name);
        if uses {
            refs.push(ObjectRef::from_obj(&*resource));
        }
    }
    refs.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    refs.dedup();
    refs
}
