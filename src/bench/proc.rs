//! CPU time and memory of a process, from `/proc`.

use std::time::Instant;

/// Clock ticks per second (`_SC_CLK_TCK`).
fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// User + system CPU seconds of `pid` (`None`: this process).
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')' the first field is `state` (field 3); utime is 14, stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_sec())
}

/// Resident set size of `pid` in KiB (`VmRSS`), and its peak (`VmHWM`).
pub fn rss_kib(pid: Option<u32>) -> Option<(u64, u64)> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:").unwrap_or(0)))
}

/// CPU use of a process over an interval, as a share of one core.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    pid: Option<u32>,
    cpu0: f64,
    t0: Instant,
}

impl CpuMeter {
    pub fn start(pid: Option<u32>) -> CpuMeter {
        CpuMeter {
            pid,
            cpu0: cpu_seconds(pid).unwrap_or(0.0),
            t0: Instant::now(),
        }
    }

    /// Percent of one core used since `start` (100 = one core busy).
    pub fn percent(&self) -> f64 {
        let wall = self.t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds(self.pid).unwrap_or(self.cpu0) - self.cpu0;
        if wall > 0.0 { 100.0 * cpu / wall } else { 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        assert!(cpu_seconds(None).is_some());
        let (rss, _) = rss_kib(None).unwrap();
        assert!(rss > 0);
    }
}
