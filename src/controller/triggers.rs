//! Which ActivationCodes a Secret change concerns: the owner of an export
//! Secret, and every resource in the Secret's namespace whose
//! `spec.connection.credentialsSecretRef` names it.

use crate::crd::{ActivationCode, KIND};
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

pub fn resources_for_secret(
    store: &Store<ActivationCode>,
    secret: &Secret,
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
