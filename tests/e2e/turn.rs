//! Who has the cluster: every scenario shares it, but for those that change
//! what all of them share (the CRDs: deleted to install the chart on a
//! cluster as a new user finds it, owned and upgraded by a Helm release),
//! which run alone.
//!
//! nextest runs those alone already (`.config/nextest.toml`: they need
//! every test thread), so no other test waits beside them. This lock on a
//! file per cluster (per `KUBECONFIG`) keeps it so under `cargo test`, or
//! any runner, too: a scenario holds it shared for its whole run, one that
//! must be alone holds it exclusively.

use std::fs::File;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;

/// A held turn; released when dropped (the file's lock goes with it).
pub struct Turn(#[allow(dead_code)] File);

impl Turn {
    /// Beside the other scenarios.
    pub fn shared() -> Self {
        let file = lock_file();
        tokio::task::block_in_place(|| file.lock_shared()).expect("lock the cluster (shared)");
        Self(file)
    }

    /// Alone: waits until no other scenario runs.
    pub fn alone() -> Self {
        let file = lock_file();
        tokio::task::block_in_place(|| file.lock()).expect("lock the cluster (exclusive)");
        Self(file)
    }
}

/// The lock file of the cluster `KUBECONFIG` names.
fn lock_file() -> File {
    let mut hasher = std::hash::DefaultHasher::new();
    std::env::var_os("KUBECONFIG").hash(&mut hasher);
    let path: PathBuf =
        std::env::temp_dir().join(format!("metastudio-e2e-{:016x}.lock", hasher.finish()));
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}
