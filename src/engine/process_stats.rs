//! What the kernel knows of a serving process: resident memory, CPU time, start time and
//! descriptors, read from `/proc/<pid>` so that a master's listener can read them for
//! each worker as well as for itself. They are the `process_*` series of the Prometheus
//! client libraries, with the same names and units.
//!
//! Where `/proc` is missing (not Linux) or the process has gone, there is nothing to
//! report ([`read`] gives None) and the series are left out rather than made up.

use std::fs;

/// One process's figures, in the units of the `process_*` series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Process {
    pub resident_memory_bytes: u64,
    pub virtual_memory_bytes: u64,
    /// User and system CPU time together.
    pub cpu_seconds: f64,
    /// Seconds since the Unix epoch.
    pub start_time_seconds: f64,
    pub open_fds: Option<u64>,
    /// The soft limit on open descriptors (`RLIMIT_NOFILE`); None when unlimited.
    pub max_fds: Option<u64>,
}

/// The figures of process `pid`, or None where `/proc` cannot say.
pub fn read(pid: u64) -> Option<Process> {
    if pid == 0 {
        return None;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or ')': the
    // numbered fields are those after its last ')', from field 3 on.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    // SAFETY: sysconf only reads configuration.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if ticks <= 0 || page <= 0 {
        return None;
    }
    let ticks = ticks as f64;
    let boot = fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())?;
    let open_fds = fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count() as u64);
    let max_fds = fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|text| max_open_files(&text));
    Some(Process {
        resident_memory_bytes: field(24)? * page as u64,
        virtual_memory_bytes: field(23)?,
        cpu_seconds: (field(14)? + field(15)?) as f64 / ticks,
        start_time_seconds: boot as f64 + field(22)? as f64 / ticks,
        open_fds,
        max_fds,
    })
}

/// The soft "Max open files" of a `/proc/<pid>/limits` text.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let p = read(std::process::id() as u64).expect("figures of this process");
        assert!(p.resident_memory_bytes > 0);
        assert!(p.cpu_seconds >= 0.0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(p.start_time_seconds <= now + 1.0 && p.start_time_seconds > now - 86400.0 * 365.0);
        assert!(p.open_fds.unwrap() > 0);
    }

    #[test]
    fn the_soft_limit_of_open_files() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             63459                63459                processes \n\
                    Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(text), Some(1024));
        assert_eq!(
            max_open_files("Max open files  unlimited unlimited files"),
            None
        );
    }
}
