//! What deleting an `ActivationCode` does to the codes it created
//! (`spec.deletionPolicy`), decided from the resource alone: whether it
//! holds the finalizer [`FINALIZER`], whether it should, and, once it is
//! being deleted, whether its codes are deleted first or it lets go at
//! once. Pure; the controller does the finalizer's I/O, the engine the
//! deletes.

use super::{ActivationCode, DeletionPolicy, ManagementPolicy};

/// Held while spec.deletionPolicy is Delete: the codes the resource created
/// are deleted before it goes.
pub const FINALIZER: &str = "metastudio.huaweicloud.com/delete-codes";

/// `"true"` on a resource keeps its codes whatever spec.deletionPolicy
/// says: its finalizer is removed, and deleting it deletes no code. The
/// way out when the codes cannot be deleted (credentials gone, say).
pub const ORPHAN_ANNOTATION: &str = "metastudio.huaweicloud.com/orphan-codes";

/// What to do about the finalizer and the created codes now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing: the finalizer is as it should be (or another's finalizer
    /// holds a resource being deleted, which is left alone).
    Nothing,
    /// Add the finalizer before anything is created.
    Add,
    /// Remove the finalizer and delete nothing, for this reason.
    Release(Release),
    /// Being deleted with the finalizer: delete the codes this resource
    /// created, then remove it.
    Teardown,
}

/// Why the finalizer goes without deleting a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// spec.deletionPolicy is Orphan (again).
    Orphan,
    /// managementPolicy Observe never deletes.
    Observe,
    /// The owner annotated the resource with [`ORPHAN_ANNOTATION`].
    Annotated,
    /// Being deleted, it has no code on record as created and no create or
    /// delete in doubt: there is nothing to delete, so nothing (missing
    /// credentials, a namespace being deleted) can block it.
    NothingCreated,
}

impl Release {
    /// Why, for an Event and the log.
    pub fn describe(self) -> &'static str {
        match self {
            Release::Orphan => "spec.deletionPolicy is Orphan",
            Release::Observe => "managementPolicy is Observe, which never deletes",
            Release::Annotated => {
                "the resource is annotated metastudio.huaweicloud.com/orphan-codes: \"true\""
            }
            Release::NothingCreated => {
                "it created no code and has no create or delete in doubt: there is nothing to delete"
            }
        }
    }
}

/// Whether `resource` holds [`FINALIZER`].
pub fn holds_finalizer(resource: &ActivationCode) -> bool {
    resource
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER)
}

/// Whether the owner asked to keep the codes ([`ORPHAN_ANNOTATION`]).
pub fn orphan_annotated(resource: &ActivationCode) -> bool {
    resource
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ORPHAN_ANNOTATION))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Why the codes would not be deleted with the resource, or `None` when
/// they would be.
fn kept_because(resource: &ActivationCode) -> Option<Release> {
    if orphan_annotated(resource) {
        Some(Release::Annotated)
    } else if resource.spec.management_policy == ManagementPolicy::Observe {
        Some(Release::Observe)
    } else if resource.spec.deletion_policy == DeletionPolicy::Orphan {
        Some(Release::Orphan)
    } else {
        None
    }
}

/// Whether the status has codes on record as created, or a create or
/// delete in doubt.
fn created_any(resource: &ActivationCode) -> bool {
    resource.status.as_ref().is_some_and(|status| {
        !status.created_code_ids().is_empty()
            || !status.pending_creates.is_empty()
            || !status.pending_deletes.is_empty()
    })
}

/// The step for `resource` as it is now.
pub fn step(resource: &ActivationCode) -> Step {
    let holds = holds_finalizer(resource);
    let deleting = resource.metadata.deletion_timestamp.is_some();
    match (kept_because(resource), holds, deleting) {
        (Some(why), true, _) => Step::Release(why),
        (None, true, true) if !created_any(resource) => Step::Release(Release::NothingCreated),
        (None, true, true) => Step::Teardown,
        (None, false, false) => Step::Add,
        _ => Step::Nothing,
    }
}

/// Whether this reconcile deletes the created codes of a resource being
/// deleted (and then lets it go).
pub fn tearing_down(resource: &ActivationCode) -> bool {
    step(resource) == Step::Teardown
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resource(spec: serde_json::Value, metadata: serde_json::Value) -> ActivationCode {
        let mut full = json!({"robotId": "r", "validPeriod": 7, "roomId": "lobby", "count": 2});
        full.as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        let mut meta = json!({"name": "kiosk", "namespace": "retail"});
        meta.as_object_mut()
            .unwrap()
            .extend(metadata.as_object().unwrap().clone());
        serde_json::from_value(json!({
            "apiVersion": crate::crd::API_VERSION, "kind": crate::crd::KIND,
            "metadata": meta, "spec": full, "status": {"createdCodes": ["c-1"]},
        }))
        .unwrap()
    }

    const DELETING: &str = "2026-12-01T00:00:00Z";

    #[test]
    fn the_finalizer_is_held_only_while_the_codes_would_be_deleted() {
        let delete = json!({"deletionPolicy": "Delete"});
        let held = json!({"finalizers": [FINALIZER]});
        assert_eq!(step(&resource(json!({}), json!({}))), Step::Nothing);
        assert_eq!(step(&resource(delete.clone(), json!({}))), Step::Add);
        assert_eq!(step(&resource(delete.clone(), held.clone())), Step::Nothing);
        assert_eq!(
            step(&resource(json!({}), held.clone())),
            Step::Release(Release::Orphan),
            "back to Orphan: the finalizer goes"
        );
        let observe = json!({"deletionPolicy": "Delete", "managementPolicy": "Observe"});
        assert_eq!(step(&resource(observe.clone(), json!({}))), Step::Nothing);
        assert_eq!(
            step(&resource(observe, held.clone())),
            Step::Release(Release::Observe)
        );
        let annotated = json!({"annotations": {ORPHAN_ANNOTATION: "true"}});
        assert_eq!(step(&resource(delete.clone(), annotated)), Step::Nothing);
    }

    #[test]
    fn a_resource_being_deleted_tears_down_only_with_the_finalizer_and_no_way_out() {
        let delete = json!({"deletionPolicy": "Delete"});
        let deleting = json!({"finalizers": [FINALIZER], "deletionTimestamp": DELETING});
        assert_eq!(
            step(&resource(delete.clone(), deleting.clone())),
            Step::Teardown
        );
        assert!(tearing_down(&resource(delete.clone(), deleting)));
        // Held by another's finalizer only: left alone, no teardown.
        let others = json!({"finalizers": ["example.com/hold"], "deletionTimestamp": DELETING});
        assert_eq!(step(&resource(delete.clone(), others)), Step::Nothing);
        // The owner's way out, whatever the case of "true".
        let annotated = json!({"finalizers": [FINALIZER], "deletionTimestamp": DELETING,
            "annotations": {ORPHAN_ANNOTATION: "True"}});
        assert_eq!(
            step(&resource(delete, annotated)),
            Step::Release(Release::Annotated)
        );
        let not_true = json!({"finalizers": [FINALIZER], "deletionTimestamp": DELETING,
            "annotations": {ORPHAN_ANNOTATION: "false"}});
        assert_eq!(
            step(&resource(json!({"deletionPolicy": "Delete"}), not_true)),
            Step::Teardown
        );
        let observed = json!({"finalizers": [FINALIZER], "deletionTimestamp": DELETING});
        assert_eq!(
            step(&resource(
                json!({"deletionPolicy": "Delete", "managementPolicy": "Observe"}),
                observed
            )),
            Step::Release(Release::Observe),
            "Observe never deletes"
        );
    }

    /// A resource being deleted that created nothing, with nothing in
    /// doubt, goes at once: no credentials are needed to delete nothing, so
    /// a namespace being deleted (its Secrets going too) is not held.
    #[test]
    fn a_resource_that_created_nothing_lets_go_without_a_teardown() {
        let delete = json!({"deletionPolicy": "Delete"});
        let deleting = json!({"finalizers": [FINALIZER], "deletionTimestamp": DELETING});
        let mut nothing = resource(delete.clone(), deleting.clone());
        nothing.status = None;
        assert_eq!(step(&nothing), Step::Release(Release::NothingCreated));
        nothing.status = Some(Default::default());
        assert_eq!(step(&nothing), Step::Release(Release::NothingCreated));
        let mut in_doubt = resource(delete, deleting);
        let status = in_doubt.status.as_mut().unwrap();
        status.created_codes.clear();
        status.pending_creates = serde_json::from_value(
            json!([{"roomId": "lobby", "count": 1, "recordedAt": DELETING}]),
        )
        .unwrap();
        assert_eq!(
            step(&in_doubt),
            Step::Teardown,
            "a create in doubt may have made one"
        );
    }
}
