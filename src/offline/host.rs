//! The engine's host on disk: credentials from Secret manifests, statuses in
//! the status file, export Secrets as manifest files
//! (`DIR/{namespace}/{name}.yaml`, see [`super::export_file`]), events
//! collected for the report.
//!
//! Statuses live in memory and reach the disk when it matters: a status
//! that records intents (resets, creates, deletes) is written (and
//! fsynced) before the engine starts their calls, and everything is
//! written once more at the end of the run ([`OfflineHost::flush`]). A kill
//! in between loses only what the next run finds again by listing the
//! codes; an intent is never lost, so a reset is never repeated and a
//! create never made twice. Concurrent writes are coalesced: a write
//! covers every change made before it began.

use super::export_file;
use super::status_file::{StatusFile, StatusFileError, StatusFileLock};
use crate::crd::connection::{ClusterMetaStudioConnectionSpec, MetaStudioConnectionSpec};
use crate::crd::{ActivationCode, ActivationCodeStatus};
use crate::engine::host::{EngineEvent, Host, HostError, SecretSource};
use crate::metastudio::ActiveCode;
use crate::offline::manifests::key_of;
use crate::secret::Secret;
use crate::tenancy::{Catalog, Directory};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;

pub struct OfflineHost {
    secrets: BTreeMap<String, BTreeMap<String, Secret>>,
    statuses: Mutex<Statuses>,
    /// Held while a write is under way; the version the disk holds.
    written: tokio::sync::Mutex<u64>,
    status_path: Option<PathBuf>,
    _lock: Option<StatusFileLock>,
    export_dir: Option<PathBuf>,
    events: Mutex<Vec<(String, EngineEvent)>>,
    /// The connection resources and namespaces of the manifests.
    catalog: Catalog,
    /// The resources of this run by robot id, for [`Host::same_robot`].
    fleet: Mutex<HashMap<String, Vec<Arc<ActivationCode>>>>,
}

/// The statuses in memory and a counter of their changes.
struct Statuses {
    file: StatusFile,
    version: u64,
}

impl OfflineHost {
    /// For a dry run: the statuses of `status_path` (if any) to plan from;
    /// nothing is locked, written or exported.
    pub fn read_only(
        secrets: BTreeMap<String, BTreeMap<String, Secret>>,
        status_path: Option<&std::path::Path>,
    ) -> Result<Self, StatusFileError> {
        let file = match status_path {
            Some(path) => StatusFile::load(path)?,
            None => StatusFile::empty(),
        };
        Ok(Self::from_parts(secrets, file, None, None, None))
    }

    /// Loads the status file (if any) and holds it for this run.
    pub fn new(
        secrets: BTreeMap<String, BTreeMap<String, Secret>>,
        status_path: Option<PathBuf>,
        export_dir: Option<PathBuf>,
    ) -> Result<Self, StatusFileError> {
        let (file, lock) = match &status_path {
            Some(path) => {
                let lock = StatusFileLock::acquire(path)?;
                let mut file = StatusFile::load(path)?;
                file.end_windows_of_ended_runs();
                (file, Some(lock))
            }
            None => (StatusFile::empty(), None),
        };
        Ok(Self::from_parts(
            secrets,
            file,
            status_path,
            lock,
            export_dir,
        ))
    }

    fn from_parts(
        secrets: BTreeMap<String, BTreeMap<String, Secret>>,
        file: StatusFile,
        status_path: Option<PathBuf>,
        lock: Option<StatusFileLock>,
        export_dir: Option<PathBuf>,
    ) -> Self {
        Self {
            secrets,
            statuses: Mutex::new(Statuses { file, version: 0 }),
            written: tokio::sync::Mutex::new(0),
            status_path,
            _lock: lock,
            export_dir,
            events: Mutex::new(Vec::new()),
            catalog: Catalog::default(),
            fleet: Mutex::new(HashMap::new()),
        }
    }

    /// The resources of this run: those of a robot are one another's
    /// conflict candidates. Indexed by robot once, so a large fleet stays
    /// linear.
    pub fn hold_fleet<'a>(&self, resources: impl IntoIterator<Item = &'a ActivationCode>) {
        let mut fleet: HashMap<String, Vec<Arc<ActivationCode>>> = HashMap::new();
        for resource in resources {
            fleet
                .entry(resource.spec.robot_id.clone())
                .or_default()
                .push(Arc::new(resource.clone()));
        }
        *self.fleet.lock().expect("fleet lock") = fleet;
    }

    /// The connection resources and namespaces the resources may refer to.
    pub fn with_catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = catalog;
        self
    }

    fn statuses(&self) -> std::sync::MutexGuard<'_, Statuses> {
        self.statuses.lock().expect("statuses lock")
    }

    /// The stored status of a resource, if any.
    pub fn status_of(&self, key: &str) -> Option<ActivationCodeStatus> {
        self.statuses()
            .file
            .statuses
            .get(key)
            .map(|status| (**status).clone())
    }

    /// The robot the stored status of a resource belongs to, if recorded
    /// (status.robotId).
    pub fn recorded_robot(&self, key: &str) -> Option<String> {
        let statuses = self.statuses();
        statuses.file.statuses.get(key)?.robot_id.clone()
    }

    /// Writes every status changed since the last write.
    pub async fn flush(&self) -> Result<(), StatusFileError> {
        let version = self.statuses().version;
        self.write_covering(version).await
    }

    /// Makes sure the disk holds at least change `version`: one write
    /// covers every change made before it began.
    async fn write_covering(&self, version: u64) -> Result<(), StatusFileError> {
        let Some(path) = &self.status_path else {
            return Ok(());
        };
        let mut written = self.written.lock().await;
        if *written >= version {
            return Ok(());
        }
        let (snapshot, covers) = {
            let statuses = self.statuses();
            (statuses.file.clone(), statuses.version)
        };
        let path = path.clone();
        tokio::task::spawn_blocking(move || snapshot.save(&path))
            .await
            .expect("status file writer does not panic")?;
        *written = covers;
        Ok(())
    }

    /// The events published for a resource, in order.
    pub fn take_events(&self, key: &str) -> Vec<EngineEvent> {
        let mut all = self.events.lock().expect("events lock");
        let (mine, rest): (Vec<_>, Vec<_>) = all.drain(..).partition(|(k, _)| k == key);
        *all = rest;
        mine.into_iter().map(|(_, e)| e).collect()
    }

    pub fn exports_enabled(&self) -> bool {
        self.export_dir.is_some()
    }
}

impl Directory for OfflineHost {
    fn connection(&self, namespace: &str, name: &str) -> Option<MetaStudioConnectionSpec> {
        self.catalog.connection(namespace, name)
    }

    fn cluster_connection(&self, name: &str) -> Option<ClusterMetaStudioConnectionSpec> {
        self.catalog.cluster_connection(name)
    }

    fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.catalog.namespace_labels(namespace)
    }
}

impl SecretSource for OfflineHost {
    async fn secret_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Secret>>, HostError> {
        Ok(self.secrets.get(&format!("{namespace}/{name}")).cloned())
    }
}

impl Host for OfflineHost {
    /// `resource` with its status from the status file, if that has one
    /// (manifests come without: see [`super::manifests`]).
    fn current(&self, resource: &ActivationCode) -> ActivationCode {
        let mut current = resource.clone();
        if let Some(stored) = self.status_of(&key_of(resource)) {
            current.status = Some(stored);
        }
        current
    }

    /// The other resources of the run ([`OfflineHost::hold_fleet`]) that
    /// manage the robot.
    fn same_robot(&self, resource: &ActivationCode) -> Vec<ActivationCode> {
        let key = key_of(resource);
        let fleet = self.fleet.lock().expect("fleet lock");
        fleet
            .get(&resource.spec.robot_id)
            .into_iter()
            .flatten()
            .filter(|other| key_of(other) != key)
            .map(|other| (**other).clone())
            .collect()
    }

    async fn save_status(
        &self,
        resource: &ActivationCode,
        status: &Arc<ActivationCodeStatus>,
    ) -> Result<(), HostError> {
        let version = {
            let mut statuses = self.statuses();
            statuses
                .file
                .statuses
                .insert(key_of(resource), status.clone());
            statuses.version += 1;
            statuses.version
        };
        // Intents must be on disk before their calls start; the rest can
        // wait for the end of the run.
        if !status.has_intents() {
            return Ok(());
        }
        self.write_covering(version)
            .await
            .map_err(|e| HostError::new(format!("save the status of {}", key_of(resource)), e))
    }

    async fn export(
        &self,
        resource: &ActivationCode,
        secret_name: &str,
        codes: &[ActiveCode],
    ) -> Result<(), HostError> {
        let Some(dir) = self.export_dir.clone() else {
            return Ok(());
        };
        let namespace = resource.metadata.namespace.clone().unwrap_or_default();
        let action = format!("write export Secret {namespace}/{secret_name}");
        let text = secret_manifest(&namespace, secret_name, codes);
        let name = secret_name.to_owned();
        tokio::task::spawn_blocking(move || {
            export_file::write(&dir, &namespace, &name, text.as_bytes())
        })
        .await
        .expect("the export writer does not panic")
        .map_err(|e| HostError::new(action, e))
    }

    async fn event(&self, resource: &ActivationCode, event: &EngineEvent) {
        self.events
            .lock()
            .expect("events lock")
            .push((key_of(resource), event.clone()));
    }
}

/// The export Secret `namespace/name` holding the codes' values, as YAML.
fn secret_manifest(namespace: &str, name: &str, codes: &[ActiveCode]) -> String {
    let data: BTreeMap<String, String> = codes
        .iter()
        .map(|c| (c.active_code_id.clone(), c.active_code.expose().to_owned()))
        .collect();
    let manifest = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "stringData": data,
    });
    serde_saphyr::to_string(&manifest).expect("a Secret serialises")
}
