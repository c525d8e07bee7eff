//! Consumers follow rotations: once the export Secret is written, each
//! workload of `spec.exportSecretRef.restartTargets` whose pod template
//! does not carry the Secret's current hash gets it, as the annotation
//! [`HASH_ANNOTATION`], and rolls out (as `kubectl rollout restart` does
//! with an annotation of its own).
//!
//! Once per change, and never when nothing changed:
//! * the annotation's value depends on the Secret alone ([`export_hash`]),
//!   so every reconciler (this process, the next leader, a second install)
//!   computes the same one: a workload that carries it is not patched, and
//!   two reconcilers patching at once write the same value, which the API
//!   server takes as one change;
//! * the state is in the workload, not in the operator: a patch that failed
//!   or was cut off by a crash is made by the next sync, a workload named
//!   or created later is brought up to date then, and a restart of the
//!   operator rolls out nothing.
//!
//! The patch is a JSON merge patch of that one annotation (field manager
//! `metastudio-operator`): nothing else of the workload is touched. A
//! workload that is missing or that the operator may not read or patch is
//! an error of its own ([`TargetError`], a Warning Event naming it and the
//! fix); the others are still followed, and the codes' sync does not fail.

use super::cluster_host::FIELD_MANAGER;
use crate::crd::{RestartTarget, WorkloadKind};
use crate::engine::events::{NOTE_LIMIT, listing};
use crate::engine::host::EngineEvent;
use hmac::{Hmac, KeyInit, Mac};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::fmt;
use tracing::{info, warn};

/// The pod template annotation that holds the hash of the export Secret a
/// workload last rolled out with.
pub const HASH_ANNOTATION: &str = "metastudio.huaweicloud.com/export-hash";
/// The Event of the workloads a sync rolled out.
pub const WORKLOADS_RESTARTED: &str = "WorkloadsRestarted";
/// The Warning Event of the workloads a sync could not roll out.
pub const RESTART_TARGET_FAILED: &str = "RestartTargetFailed";
/// The Helm chart value that grants `get` and `patch` on the workloads.
pub const CHART_VALUE: &str = "restartTargets.enabled";

/// The hash of an export Secret's `data`, as the workloads carry it: 128
/// bits of HMAC-SHA256 over each key and value (length-prefixed, in key
/// order), keyed by the Secret's uid, as hex.
///
/// Keyed, because the annotation is readable by whoever may read the
/// workload (the `view` role, say), who may not read Secrets: a code value
/// is a few letters and digits, so a plain hash of a Secret that holds one
/// code could be reversed by trying every value. The uid is random (the
/// API server's), as protected as the data (only who may read the Secret
/// sees it), and the same for every reconciler for the Secret's life. A
/// Secret deleted and created again gets another uid: its workloads roll
/// out once more.
pub fn export_hash(secret_uid: &str, data: &BTreeMap<String, ByteString>) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret_uid.as_bytes()).expect("any key length");
    mac.update(b"metastudio-operator export hash v1\0");
    for (key, value) in data {
        for part in [key.as_bytes(), &value.0] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
    }
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// A workload named in `restartTargets`: `Deployment/web`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.name(), self.name)
    }
}

impl Workload {
    /// The workload's API in `namespace` (group apps, version v1).
    fn api(&self, client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
        let resource = match self.kind {
            WorkloadKind::Deployment => ApiResource::erase::<Deployment>(&()),
            WorkloadKind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
            WorkloadKind::DaemonSet => ApiResource::erase::<DaemonSet>(&()),
        };
        Api::namespaced_with(client.clone(), namespace, &resource)
    }

    /// The resource's plural, as RBAC names it: `deployments`.
    fn plural(&self) -> String {
        format!("{}s", self.kind.name().to_lowercase())
    }
}

/// Each target once, in the order listed, of the kinds that roll out
/// (validation refused the resource before a sync if any is not).
fn workloads(targets: &[RestartTarget]) -> Vec<Workload> {
    let mut unique: Vec<Workload> = Vec::new();
    for target in targets {
        if let Some(kind) = target.workload_kind() {
            let workload = Workload {
                kind,
                name: target.name.clone(),
            };
            if !unique.contains(&workload) {
                unique.push(workload);
            }
        }
    }
    unique
}

/// Why a workload could not follow the Secret. Names the workload and the
/// fix; never a value.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(
        "{workload} does not exist in namespace {namespace}: create it, or remove it from spec.exportSecretRef.restartTargets"
    )]
    NotFound {
        workload: Workload,
        namespace: String,
    },
    #[error(
        "the operator may not {verb} {plural} (apps) in namespace {namespace}, so {workload} cannot follow the Secret: install the Helm chart with {CHART_VALUE}=true, which grants get and patch on deployments, statefulsets and daemonsets in the watched namespaces"
    )]
    Forbidden {
        workload: Workload,
        verb: &'static str,
        plural: String,
        namespace: String,
    },
    #[error(
        "cannot {verb} {workload} in namespace {namespace} (tried again at the next sync): {source}"
    )]
    Api {
        workload: Workload,
        verb: &'static str,
        namespace: String,
        source: kube::Error,
    },
}

impl TargetError {
    fn of(err: kube::Error, verb: &'static str, workload: &Workload, namespace: &str) -> Self {
        let (workload, namespace) = (workload.clone(), namespace.to_owned());
        match &err {
            kube::Error::Api(status) if status.code == 404 => Self::NotFound {
                workload,
                namespace,
            },
            kube::Error::Api(status) if status.code == 403 => Self::Forbidden {
                plural: workload.plural(),
                workload,
                verb,
                namespace,
            },
            _ => Self::Api {
                workload,
                verb,
                namespace,
                source: err,
            },
        }
    }
}

/// How one workload went: rolled out now (`true`), or it carried the hash
/// already.
pub type Followed = Result<bool, TargetError>;

/// Brings each target in `namespace` up to `hash`, one after the other,
/// each once; the ones that carry it already are only read.
pub async fn follow(
    client: &kube::Client,
    namespace: &str,
    hash: &str,
    targets: &[RestartTarget],
) -> Vec<(Workload, Followed)> {
    let mut results = Vec::new();
    for workload in workloads(targets) {
        let followed = follow_one(client, namespace, hash, &workload).await;
        match &followed {
            Ok(true) => {
                info!(%workload, "rolled out: its pod template now carries the export Secret's hash")
            }
            Ok(false) => {}
            Err(err) => warn!(%workload, error = %err, "cannot roll out a restart target"),
        }
        results.push((workload, followed));
    }
    results
}

async fn follow_one(
    client: &kube::Client,
    namespace: &str,
    hash: &str,
    workload: &Workload,
) -> Followed {
    let api = workload.api(client, namespace);
    let current = api
        .get(&workload.name)
        .await
        .map_err(|e| TargetError::of(e, "get", workload, namespace))?;
    if template_hash(&current) == Some(hash) {
        return Ok(false);
    }
    let patch = serde_json::json!({
        "spec": {"template": {"metadata": {"annotations": {HASH_ANNOTATION: hash}}}}
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    api.patch(&workload.name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|e| TargetError::of(e, "patch", workload, namespace))?;
    Ok(true)
}

/// The hash a workload's pod template carries, if any.
fn template_hash(workload: &DynamicObject) -> Option<&str> {
    workload.data["spec"]["template"]["metadata"]["annotations"][HASH_ANNOTATION].as_str()
}

/// The Events of one sync's restarts: one for the workloads rolled out,
/// one Warning for those that could not be; none when every workload
/// carried the hash already.
pub fn events(secret_name: &str, results: &[(Workload, Followed)]) -> Vec<EngineEvent> {
    let rolled: Vec<String> = results
        .iter()
        .filter(|(_, followed)| matches!(followed, Ok(true)))
        .map(|(workload, _)| workload.to_string())
        .collect();
    let failed: Vec<String> = results
        .iter()
        .filter_map(|(_, followed)| followed.as_ref().err().map(ToString::to_string))
        .collect();
    let mut events = Vec::new();
    if !rolled.is_empty() {
        let head = format!(
            "rolling out {} workload(s) to the values of Secret {secret_name} (pod template annotation {HASH_ANNOTATION}): ",
            rolled.len()
        );
        events.push(EngineEvent {
            warning: false,
            reason: WORKLOADS_RESTARTED,
            action: "Restart",
            note: listing(&head, &rolled, ", ", NOTE_LIMIT),
        });
    }
    if !failed.is_empty() {
        let head = format!(
            "{} restart target(s) cannot follow Secret {secret_name} (the codes are synced all the same): ",
            failed.len()
        );
        events.push(EngineEvent {
            warning: true,
            reason: RESTART_TARGET_FAILED,
            action: "Restart",
            note: listing(&head, &failed, "; ", NOTE_LIMIT),
        });
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn the_hash_follows_the_data_and_the_secret_and_shows_neither() {
        let one = data(&[("c1", "H7GW3T2E7"), ("c2", "K93SY62U3")]);
        let hash = export_hash("uid-1", &one);
        assert_eq!(hash.len(), 32);
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{hash}");
        assert_eq!(hash, export_hash("uid-1", &one.clone()), "deterministic");
        assert!(!hash.contains("H7GW3T2E7") && !hash.contains("c1"));
        let rotated = data(&[("c1", "H7GW3T2E7"), ("c2", "Q2M8W4ZK1")]);
        assert_ne!(hash, export_hash("uid-1", &rotated), "a new value");
        assert_ne!(hash, export_hash("uid-2", &one), "another Secret's key");
        assert_ne!(hash, export_hash("uid-1", &BTreeMap::new()));
        // Keys and values are delimited: moving a byte across changes it.
        assert_ne!(
            export_hash("uid-1", &data(&[("ab", "c")])),
            export_hash("uid-1", &data(&[("a", "bc")]))
        );
    }

    fn target(kind: &str, name: &str) -> RestartTarget {
        serde_json::from_value(serde_json::json!({"kind": kind, "name": name})).unwrap()
    }

    #[test]
    fn each_workload_is_followed_once_in_the_order_listed() {
        let listed = [
            target("StatefulSet", "db"),
            target("Deployment", "web"),
            target("StatefulSet", "db"),
            target("DaemonSet", "web"),
        ];
        let names: Vec<String> = workloads(&listed).iter().map(ToString::to_string).collect();
        assert_eq!(names, ["StatefulSet/db", "Deployment/web", "DaemonSet/web"]);
    }

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(
            kube::core::Status::failure("refused", "Refused").with_code(code),
        ))
    }

    #[test]
    fn events_name_each_workload_and_the_fix() {
        let web = Workload {
            kind: WorkloadKind::Deployment,
            name: "web".into(),
        };
        let db = Workload {
            kind: WorkloadKind::StatefulSet,
            name: "db".into(),
        };
        let agent = Workload {
            kind: WorkloadKind::DaemonSet,
            name: "agent".into(),
        };
        let results = vec![
            (web.clone(), Ok(true)),
            (
                db.clone(),
                Err(TargetError::of(api_error(404), "get", &db, "retail")),
            ),
            (
                agent.clone(),
                Err(TargetError::of(api_error(403), "patch", &agent, "retail")),
            ),
            (web.clone(), Ok(false)),
        ];
        let events = events("lobby-codes", &results);
        assert_eq!(events.len(), 2);
        assert_eq!(
            (events[0].reason, events[0].warning),
            (WORKLOADS_RESTARTED, false)
        );
        assert_eq!(
            events[0].note,
            "rolling out 1 workload(s) to the values of Secret lobby-codes (pod template annotation metastudio.huaweicloud.com/export-hash): Deployment/web"
        );
        assert_eq!(
            (events[1].reason, events[1].warning),
            (RESTART_TARGET_FAILED, true)
        );
        let note = &events[1].note;
        for expected in [
            "2 restart target(s) cannot follow Secret lobby-codes (the codes are synced all the same): ",
            "StatefulSet/db does not exist in namespace retail: create it, or remove it from spec.exportSecretRef.restartTargets; ",
            "the operator may not patch daemonsets (apps) in namespace retail, so DaemonSet/agent cannot follow the Secret: install the Helm chart with restartTargets.enabled=true",
        ] {
            assert!(note.contains(expected), "{expected:?} in {note}");
        }
        let unchanged = [(web, Ok(false))];
        assert!(super::events("lobby-codes", &unchanged).is_empty());
    }
}
