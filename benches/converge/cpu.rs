//! CPU time (user + system) from `getrusage`: this process's, or that of
//! the children it has waited for.

use std::time::Duration;

fn usage(who: libc::c_int) -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// CPU time this process has used.
pub fn own() -> Duration {
    usage(libc::RUSAGE_SELF)
}

/// CPU time of the children this process has waited for.
pub fn waited_children() -> Duration {
    usage(libc::RUSAGE_CHILDREN)
}
