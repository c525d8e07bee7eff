//! The engine's host on disk: credentials from Secret manifests, statuses in
//! the status file, export Secrets as manifest files, events collected for
//! the report.

use super::status_file::{StatusFile, StatusFileError};
use crate::crd::{ActivationCode, ActivationCodeStatus};
use crate::engine::host::{EngineEvent, Host, HostError};
use crate::metastudio::ActiveCode;
use crate::offline::manifests::key_of;
use crate::secret::Secret;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

pub struct OfflineHost {
    secrets: BTreeMap<String, BTreeMap<String, Secret>>,
    statuses: tokio::sync::Mutex<StatusFile>,
    status_path: Option<PathBuf>,
    export_dir: Option<PathBuf>,
    events: Mutex<Vec<(String, EngineEvent)>>,
}

impl OfflineHost {
    pub fn new(
        secrets: BTreeMap<String, BTreeMap<String, Secret>>,
        status_path: Option<PathBuf>,
        export_dir: Option<PathBuf>,
    ) -> Result<Self, StatusFileError> {
        let statuses = match &status_path {
            Some(path) => StatusFile::load(path)?,
            None => StatusFile::empty(),
        };
        Ok(Self {
            secrets,
            statuses: tokio::sync::Mutex::new(statuses),
            status_path,
            export_dir,
            events: Mutex::new(Vec::new()),
        })
    }

    /// The stored status of a resource, if any.
    pub async fn status_of(&self, key: &str) -> Option<ActivationCodeStatus> {
        self.statuses.lock().await.statuses.get(key).cloned()
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

impl Host for OfflineHost {
    async fn secret_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Secret>>, HostError> {
        Ok(self.secrets.get(&format!("{namespace}/{name}")).cloned())
    }

    async fn save_status(
        &self,
        resource: &ActivationCode,
        status: &ActivationCodeStatus,
    ) -> Result<(), HostError> {
        let mut file = self.statuses.lock().await;
        file.statuses.insert(key_of(resource), status.clone());
        if let Some(path) = &self.status_path {
            file.save(path).map_err(|e| {
                HostError::new(format!("save the status of {}", key_of(resource)), e)
            })?;
        }
        Ok(())
    }

    async fn export(
        &self,
        resource: &ActivationCode,
        secret_name: &str,
        codes: &[ActiveCode],
    ) -> Result<(), HostError> {
        let Some(dir) = &self.export_dir else {
            return Ok(());
        };
        let namespace = resource.metadata.namespace.clone().unwrap_or_default();
        let data: BTreeMap<String, String> = codes
            .iter()
            .map(|c| (c.active_code_id.clone(), c.active_code.expose().to_owned()))
            .collect();
        let manifest = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": secret_name, "namespace": namespace},
            "type": "Opaque",
            "stringData": data,
        });
        let text = serde_saphyr::to_string(&manifest).expect("a Secret serialises");
        let path = dir.join(format!("{namespace}-{secret_name}.yaml"));
        let action = format!("write export Secret {}", path.display());
        std::fs::create_dir_all(dir).map_err(|e| HostError::new(action.clone(), e))?;
        write_private(&path, text.as_bytes()).map_err(|e| HostError::new(action, e))
    }

    async fn event(&self, resource: &ActivationCode, event: &EngineEvent) {
        self.events
            .lock()
            .expect("events lock")
            .push((key_of(resource), event.clone()));
    }
}

/// Writes a file only its owner can read.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
