//! The status file: what the status subresource holds in a cluster, kept
//! on disk between `reconcile` runs. Written atomically (temporary file,
//! fsync, rename), so a kill at any moment leaves the old or the new file.

use crate::crd::ActivationCodeStatus;
use crate::plan::window::InDoubt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const KIND: &str = "ActivationCodeStatusFile";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusFile {
    pub api_version: String,
    pub kind: String,
    /// `namespace/name` to status (shared with the run's reports).
    pub statuses: BTreeMap<String, Arc<ActivationCodeStatus>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusFileError {
    #[error("cannot read status file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "status file {path} is not a valid status file ({message}): restore it from a backup, or delete it to start over (tokens would then apply again)"
    )]
    Parse { path: PathBuf, message: String },
    #[error("cannot write status file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "status file {path} is in use by another `reconcile` (it holds {lock}): wait for it to finish; two runs at once could reset a code twice"
    )]
    Busy { path: PathBuf, lock: PathBuf },
}

/// An exclusive hold on a status file for one `reconcile` run, released
/// when dropped (or when the process dies, even by kill -9). The lock is a
/// sidecar file, as the status file itself is replaced on every save.
#[derive(Debug)]
pub struct StatusFileLock {
    _file: std::fs::File,
}

impl StatusFileLock {
    pub fn acquire(path: &Path) -> Result<Self, StatusFileError> {
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        let lock = PathBuf::from(name);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .map_err(|source| StatusFileError::Write {
                path: lock.clone(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StatusFileError::Busy {
                path: path.to_path_buf(),
                lock,
            }),
            Err(std::fs::TryLockError::Error(source)) => {
                Err(StatusFileError::Write { path: lock, source })
            }
        }
    }
}

/// Whether the run that recorded `intent` was still within its window.
fn in_window<I: InDoubt>(intent: &I) -> bool {
    intent.unanswered_since().is_none()
}

/// Ends the window of an intent its ended run was still within.
fn end_window<I: InDoubt>(intent: &mut I) {
    if in_window(intent) {
        *intent = intent.with_window(Some(0));
    }
}

impl StatusFile {
    pub fn empty() -> Self {
        Self {
            api_version: crate::crd::API_VERSION.into(),
            kind: KIND.into(),
            statuses: BTreeMap::new(),
        }
    }

    /// Reads `path`; a missing file is an empty one.
    pub fn load(path: &Path) -> Result<Self, StatusFileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Self::empty()),
            Err(source) => {
                return Err(StatusFileError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let file: StatusFile = serde_json::from_str(&text).map_err(|e| StatusFileError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if file.kind != KIND {
            return Err(StatusFileError::Parse {
                path: path.to_path_buf(),
                message: format!("kind is `{}`, not {KIND}", file.kind),
            });
        }
        Ok(file)
    }

    /// Takes in that the run which recorded the intents still in their call
    /// window has ended: a run holding the [`StatusFileLock`] knows no other
    /// process holds it, and the lock outlives no process. Their calls
    /// ended with that run, so only the reset grace is left for them: their
    /// window is over (a cluster, where another reconciler may be mid-batch,
    /// waits it out instead). Resets, creates and deletes alike.
    pub fn end_windows_of_ended_runs(&mut self) {
        for status in self.statuses.values_mut() {
            let in_window = status.pending_resets.iter().any(in_window)
                || status.pending_creates.iter().any(in_window)
                || status.pending_deletes.iter().any(in_window);
            if !in_window {
                continue;
            }
            let status = Arc::make_mut(status);
            status.pending_resets.iter_mut().for_each(end_window);
            status.pending_creates.iter_mut().for_each(end_window);
            status.pending_deletes.iter_mut().for_each(end_window);
        }
    }

    /// Replaces `path` atomically.
    pub fn save(&self, path: &Path) -> Result<(), StatusFileError> {
        let fail = |source| StatusFileError::Write {
            path: path.to_path_buf(),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("status");
        let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let body = serde_json::to_vec_pretty(self).expect("statuses serialise");
        let mut file = std::fs::File::create(&tmp).map_err(fail)?;
        file.write_all(&body).map_err(fail)?;
        file.write_all(b"\n").map_err(fail)?;
        file.sync_all().map_err(fail)?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(fail)?;
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_a_missing_file_is_empty() {
        let dir = std::env::temp_dir().join(format!("msop-status-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("status.json");
        let _ = std::fs::remove_file(&path);
        assert_eq!(StatusFile::load(&path).unwrap(), StatusFile::empty());
        let mut file = StatusFile::empty();
        file.statuses.insert(
            "ns/a".into(),
            Arc::new(ActivationCodeStatus {
                managed_codes: 3,
                ..Default::default()
            }),
        );
        file.save(&path).unwrap();
        assert_eq!(StatusFile::load(&path).unwrap(), file);
        std::fs::write(&path, "{not json").unwrap();
        let err = StatusFile::load(&path).unwrap_err().to_string();
        assert!(err.contains("delete it to start over"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn intents_of_an_ended_run_keep_only_the_grace() {
        let at: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let intent = |id: &str, since: Option<jiff::Timestamp>| crate::crd::ResetIntent {
            code_id: id.into(),
            token: Some("t".into()),
            previous_update_time: at,
            previous_fingerprint: "fp".into(),
            recorded_at: at,
            unanswered_since: since,
            call_window_seconds: Some(130),
        };
        let create = |since| crate::crd::CreateIntent {
            room_id: "lobby".into(),
            count: 3,
            token: None,
            recorded_at: at,
            unanswered_since: since,
            call_window_seconds: Some(30),
        };
        let mut file = StatusFile::empty();
        let status = ActivationCodeStatus {
            pending_resets: vec![intent("in-window", None), intent("lost", Some(at))],
            pending_creates: vec![create(None), create(Some(at))],
            ..Default::default()
        };
        file.statuses.insert("ns/a".into(), Arc::new(status));
        file.end_windows_of_ended_runs();
        let windows: Vec<_> = file.statuses["ns/a"]
            .pending_resets
            .iter()
            .map(|i| {
                (
                    i.code_id.as_str(),
                    i.unanswered_since,
                    i.call_window_seconds,
                )
            })
            .collect();
        assert_eq!(
            windows,
            [("in-window", None, Some(0)), ("lost", Some(at), Some(130))],
            "the ended run's window is over; what another run saw is kept"
        );
        let creates: Vec<_> = file.statuses["ns/a"]
            .pending_creates
            .iter()
            .map(|i| (i.unanswered_since, i.call_window_seconds))
            .collect();
        assert_eq!(
            creates,
            [(None, Some(0)), (Some(at), Some(30))],
            "creates alike"
        );
    }

    #[test]
    fn one_run_at_a_time_holds_a_status_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        let held = StatusFileLock::acquire(&path).unwrap();
        let err = StatusFileLock::acquire(&path).unwrap_err().to_string();
        assert!(err.contains("in use by another `reconcile`"), "{err}");
        drop(held);
        StatusFileLock::acquire(&path).unwrap();
    }
}
