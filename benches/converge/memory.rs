//! Resident memory of a process, from `/proc/PID/status` (Linux).

use serde::{Deserialize, Serialize};

/// Resident memory in KiB: now (`VmRSS`) and at the peak (`VmHWM`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

impl Memory {
    pub fn peak_mib(&self) -> f64 {
        self.peak_kib as f64 / 1024.0
    }

    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
}

/// This process's memory.
pub fn own() -> Option<Memory> {
    of_process("/proc/self/status")
}

/// The memory of the process whose status file is `path`.
pub fn of_process(path: &str) -> Option<Memory> {
    let text = std::fs::read_to_string(path).ok()?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}
