//! The engine's host in a cluster: credentials Secrets read from the API,
//! status through the status subresource with server-side apply, export
//! Secrets owned by their resource and the workloads that follow them
//! ([`restarts`]), Kubernetes Events.

use super::{Context, RememberedStatus, restarts};
use crate::crd::connection::{ClusterMetaStudioConnectionSpec, MetaStudioConnectionSpec};
use crate::crd::{API_VERSION, ActivationCode, ActivationCodeStatus, KIND, RestartTarget};
use crate::engine::host::{EngineEvent, Host, HostError, SecretSource};
use crate::metastudio::ActiveCode;
use crate::secret::Secret;
use crate::tenancy::Directory;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret as KubeSecret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tracing::warn;

/// The field manager of everything the operator applies.
pub const FIELD_MANAGER: &str = "metastudio-operator";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// The host of one reconcile of one resource.
pub struct ClusterHost<'a> {
    ctx: &'a Context,
    /// The resourceVersion the reconcile read, then that of its own last
    /// status write: every status write must find the resource at it.
    resource_version: Mutex<Option<String>>,
}

impl<'a> ClusterHost<'a> {
    /// A host for a reconcile that read `resource`: status writes must find
    /// it at the version [`Host::current`] gives it.
    pub fn new(ctx: &'a Context, resource: &ActivationCode) -> Self {
        Self {
            ctx,
            resource_version: Mutex::new(ctx.freshest(resource).resource_version()),
        }
    }

    fn resource_version(&self) -> Option<String> {
        self.resource_version
            .lock()
            .expect("resource version lock")
            .clone()
    }
}

/// The status write, as a server-side apply that holds only the status and,
/// as a precondition, the resourceVersion the plan was made from: the API
/// server refuses it with 409 Conflict when the resource changed since.
fn status_apply(
    status: &ActivationCodeStatus,
    resource_version: Option<&str>,
) -> serde_json::Value {
    let mut patch = serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "status": status,
    });
    if let Some(version) = resource_version {
        patch["metadata"] = serde_json::json!({ "resourceVersion": version });
    }
    patch
}

fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 409)
}

fn owner_reference(resource: &ActivationCode) -> OwnerReference {
    OwnerReference {
        api_version: API_VERSION.into(),
        kind: KIND.into(),
        name: resource.name_any(),
        uid: resource.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

/// Whether `secret` is controlled by `resource`.
fn controlled_by(secret: &KubeSecret, resource: &ActivationCode) -> bool {
    let uid = resource.uid();
    secret
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
}

impl Directory for ClusterHost<'_> {
    fn connection(&self, namespace: &str, name: &str) -> Option<MetaStudioConnectionSpec> {
        self.ctx.directory.connection(namespace, name)
    }

    fn cluster_connection(&self, name: &str) -> Option<ClusterMetaStudioConnectionSpec> {
        self.ctx.directory.cluster_connection(name)
    }

    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.ctx.directory.namespace_labels(namespace)
    }
}

impl SecretSource for ClusterHost<'_> {
    async fn secret_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Secret>>, HostError> {
        ApiSecrets(self.ctx.client.clone())
            .secret_data(namespace, name)
            .await
    }
}

/// Secrets read from the API when they are used: never cached, never
/// watched for their data.
#[derive(Clone)]
pub struct ApiSecrets(pub kube::Client);

impl SecretSource for ApiSecrets {
    async fn secret_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Secret>>, HostError> {
        let api: Api<KubeSecret> = Api::namespaced(self.0.clone(), namespace);
        let secret = api
            .get_opt(name)
            .await
            .map_err(|e| HostError::new(format!("get Secret {namespace}/{name}"), e))?;
        Ok(secret.map(|s| {
            s.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, Secret::new(String::from_utf8_lossy(&v.0).into_owned())))
                .collect()
        }))
    }
}

impl Host for ClusterHost<'_> {
    fn tears_down(&self) -> bool {
        true
    }

    /// The cached resource, or, while the cache has not yet seen this
    /// process's last status write, that status at the resourceVersion the
    /// write produced (see [`Context::freshest`]).
    fn current(&self, resource: &ActivationCode) -> ActivationCode {
        self.ctx.freshest(resource)
    }

    /// Every watched resource of the robot but this one.
    fn same_robot(&self, resource: &ActivationCode) -> Vec<ActivationCode> {
        self.ctx
            .all_resources()
            .into_iter()
            .filter(|o| o.spec.robot_id == resource.spec.robot_id && o.uid() != resource.uid())
            .map(|o| (*o).clone())
            .collect()
    }

    async fn save_status(
        &self,
        resource: &ActivationCode,
        status: &Arc<ActivationCodeStatus>,
    ) -> Result<(), HostError> {
        let namespace = resource.namespace().unwrap_or_default();
        let name = resource.name_any();
        let api: Api<ActivationCode> = Api::namespaced(self.ctx.client.clone(), &namespace);
        let patch = status_apply(status, self.resource_version().as_deref());
        let stored = api
            .patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(|e| {
                let action = format!("apply status of {namespace}/{name}");
                if is_conflict(&e) {
                    HostError::stale(action, e)
                } else {
                    HostError::new(action, e)
                }
            })?;
        let version = stored.resource_version();
        *self.resource_version.lock().expect("resource version lock") = version.clone();
        if let Some(uid) = resource.uid() {
            self.ctx.remember_status(
                uid,
                RememberedStatus {
                    status: status.clone(),
                    resource_version: version,
                },
            );
        }
        Ok(())
    }

    /// Writes the export Secret, then rolls out the workloads of its
    /// restartTargets that do not carry its hash yet ([`restarts`]): their
    /// failures are Warning Events, not the export's.
    async fn export(
        &self,
        resource: &ActivationCode,
        secret_name: &str,
        codes: &[ActiveCode],
    ) -> Result<(), HostError> {
        let stored = self.write_export(resource, secret_name, codes).await?;
        let targets = resource
            .spec
            .export_secret_ref
            .as_ref()
            .map_or(&[][..], |r| &r.restart_targets[..]);
        if !targets.is_empty() {
            self.roll_out(resource, secret_name, &stored, targets).await;
        }
        Ok(())
    }

    async fn event(&self, resource: &ActivationCode, event: &EngineEvent) {
        if let Err(err) = self
            .ctx
            .events
            .publish(&resource.object_ref(&()), event)
            .await
        {
            warn!(error = %err, reason = event.reason, "cannot publish event");
        }
    }
}

impl ClusterHost<'_> {
    /// The export Secret with the values of `codes`, owned by `resource`:
    /// written by server-side apply unless it holds them already. Returns
    /// the Secret as stored.
    async fn write_export(
        &self,
        resource: &ActivationCode,
        secret_name: &str,
        codes: &[ActiveCode],
    ) -> Result<KubeSecret, HostError> {
        let namespace = resource.namespace().unwrap_or_default();
        let api: Api<KubeSecret> = Api::namespaced(self.ctx.client.clone(), &namespace);
        let action = || format!("apply export Secret {namespace}/{secret_name}");
        let data: BTreeMap<String, ByteString> = codes
            .iter()
            .map(|c| {
                (
                    c.active_code_id.clone(),
                    ByteString(c.active_code.expose().as_bytes().to_vec()),
                )
            })
            .collect();
        if let Some(existing) = api
            .get_opt(secret_name)
            .await
            .map_err(|e| HostError::new(action(), e))?
        {
            if !controlled_by(&existing, resource) {
                return Err(HostError::new(
                    action(),
                    format!(
                        "Secret {namespace}/{secret_name} exists and is not owned by this ActivationCode: choose another spec.exportSecretRef.name or delete that Secret"
                    ),
                ));
            }
            if existing.data.as_ref() == Some(&data) {
                return Ok(existing);
            }
        }
        let secret = KubeSecret {
            metadata: ObjectMeta {
                name: Some(secret_name.to_owned()),
                namespace: Some(namespace.clone()),
                labels: Some([(MANAGED_BY_LABEL.to_owned(), FIELD_MANAGER.to_owned())].into()),
                owner_references: Some(vec![owner_reference(resource)]),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(data),
            ..KubeSecret::default()
        };
        let mut patch = serde_json::to_value(&secret).expect("a Secret serialises");
        patch["apiVersion"] = "v1".into();
        patch["kind"] = "Secret".into();
        api.patch(
            secret_name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|e| HostError::new(action(), e))
    }

    /// Brings `targets` up to the hash of the export Secret `secret_name`
    /// as stored (`secret`), with an Event for those rolled out and a
    /// Warning for those that cannot be.
    async fn roll_out(
        &self,
        resource: &ActivationCode,
        secret_name: &str,
        secret: &KubeSecret,
        targets: &[RestartTarget],
    ) {
        let namespace = resource.namespace().unwrap_or_default();
        // The API server gives every object it stores a uid.
        let Some(uid) = secret.uid() else {
            warn!(secret = %secret_name, "the export Secret came back without a uid: no workload rolled out");
            return;
        };
        let empty = BTreeMap::new();
        let hash = restarts::export_hash(&uid, secret.data.as_ref().unwrap_or(&empty));
        let results = restarts::follow(&self.ctx.client, &namespace, &hash, targets).await;
        for event in restarts::events(secret_name, &results) {
            self.event(resource, &event).await;
        }
    }
}
