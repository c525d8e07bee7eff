//! The finalizer of spec.deletionPolicy Delete ([`FINALIZER`]) in a
//! cluster, kept as [`deletion::step`] decides: added before a sync that
//! may create codes; removed once a teardown's sync has deleted the codes
//! the resource created ([`teardown::done`]), or without deleting anything
//! when its codes are kept (policy Orphan again, Observe, or the owner's
//! orphan annotation). Each change is a merge patch of
//! `metadata.finalizers` fenced by the resourceVersion it was computed
//! from: someone else's change in between is a 409, and the reconcile is
//! tried again.

use super::Context;
use super::cluster_host::{ClusterHost, FIELD_MANAGER};
use crate::crd::ActivationCode;
use crate::crd::deletion::{self, FINALIZER, Release, Step};
use crate::engine::conditions::reason;
use crate::engine::host::{EngineEvent, Host};
use crate::engine::{Next, ReconcileReport, teardown};
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

/// Before the sync: adds the finalizer (a live resource whose codes would
/// be deleted with it) or removes it (a live one whose codes would not).
/// Returns the resource as the patch left it (the sync's starting point),
/// or as it was when nothing changed or the patch failed.
pub async fn before(
    ctx: &Context,
    resource: &ActivationCode,
    step: Step,
) -> (ActivationCode, Result<(), kube::Error>) {
    let deleting = resource.meta().deletion_timestamp.is_some();
    let hold = match step {
        Step::Add => true,
        Step::Release(why) if !deleting => {
            info!(
                why = why.describe(),
                "removing the finalizer: the codes would be kept"
            );
            false
        }
        _ => return (resource.clone(), Ok(())),
    };
    let base = ctx.freshest(resource);
    match set(ctx, &base, hold).await {
        Ok(patched) => (patched, Ok(())),
        Err(err) => (resource.clone(), Err(err)),
    }
}

/// After the sync of a resource being deleted: removes the finalizer once
/// its teardown is done, or at once when its codes are kept, with an Event
/// saying which.
pub async fn after(
    ctx: &Context,
    host: &ClusterHost<'_>,
    resource: &ActivationCode,
    step: Step,
    report: &ReconcileReport,
) -> Result<(), kube::Error> {
    if resource.meta().deletion_timestamp.is_none() {
        return Ok(());
    }
    let event = match step {
        Step::Teardown if teardown::done(report) => EngineEvent {
            warning: false,
            reason: reason::CODES_DELETED,
            action: "Delete",
            note: "the codes this resource created are deleted (spec.deletionPolicy: Delete): the finalizer is removed".into(),
        },
        Step::Release(why) => kept(why),
        _ => return Ok(()),
    };
    let api = api_of(ctx, resource);
    // The sync wrote the status since: fence on the resource as it is now.
    let Some(fresh) = api.get_opt(&resource.name_any()).await? else {
        return Ok(());
    };
    // Another object of the same name (deleted and made again) is not ours
    // to let go.
    if fresh.uid() != resource.uid() {
        return Ok(());
    }
    if !deletion::holds_finalizer(&fresh) {
        return Ok(());
    }
    set(ctx, &fresh, false).await?;
    host.event(resource, &event).await;
    Ok(())
}

/// The Event of a resource deleted with its codes kept (or none to delete).
fn kept(why: Release) -> EngineEvent {
    if why == Release::NothingCreated {
        return EngineEvent {
            warning: false,
            reason: reason::CODES_DELETED,
            action: "Delete",
            note: format!(
                "the resource is deleted: {}; the finalizer is removed",
                why.describe()
            ),
        };
    }
    EngineEvent {
        warning: false,
        reason: CODES_ORPHANED,
        action: "Delete",
        note: format!(
            "the resource is deleted and the codes it created are kept, as {}: the finalizer is removed",
            why.describe()
        ),
    }
}

/// The Event reason of a resource deleted with its codes kept.
pub const CODES_ORPHANED: &str = "CodesOrphaned";

/// The Event reason of a finalizer change the operator may not make.
pub const FINALIZER_FORBIDDEN: &str = "FinalizerForbidden";

/// A failed finalizer change: logged, a Warning Event when the operator
/// may not make it (RBAC: that lasts until someone grants it), and the
/// reconcile tried again (with backoff) unless it is redone at once anyway.
pub async fn failed(
    host: &ClusterHost<'_>,
    resource: &ActivationCode,
    report: &mut ReconcileReport,
    err: &kube::Error,
) {
    warn!(error = %err, "cannot change the finalizer {FINALIZER}: trying again");
    if matches!(err, kube::Error::Api(status) if status.code == 403) {
        let event = EngineEvent {
            warning: true,
            reason: FINALIZER_FORBIDDEN,
            action: "Patch",
            note: format!(
                "the operator may not patch activationcodes to change the finalizer {FINALIZER} (spec.deletionPolicy): grant it patch on activationcodes, as the chart's ClusterRole does; no code is created until then"
            ),
        };
        host.event(resource, &event).await;
    }
    if report.next != Next::Replan {
        report.next = Next::Retry { at_least: None };
    }
}

/// `resource` with [`FINALIZER`] held or not, by a merge patch of its
/// finalizers fenced by its resourceVersion; the resource as patched.
async fn set(
    ctx: &Context,
    resource: &ActivationCode,
    hold: bool,
) -> Result<ActivationCode, kube::Error> {
    let mut finalizers: Vec<&str> = resource
        .finalizers()
        .iter()
        .map(String::as_str)
        .filter(|f| *f != FINALIZER)
        .collect();
    if hold {
        finalizers.push(FINALIZER);
    }
    let patch = serde_json::json!({
        "metadata": {
            "finalizers": finalizers,
            "resourceVersion": resource.resource_version(),
        }
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    api_of(ctx, resource)
        .patch(&resource.name_any(), &params, &Patch::Merge(&patch))
        .await
}

fn api_of(ctx: &Context, resource: &ActivationCode) -> Api<ActivationCode> {
    Api::namespaced(
        ctx.client.clone(),
        &resource.namespace().unwrap_or_default(),
    )
}
