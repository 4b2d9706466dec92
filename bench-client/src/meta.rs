//! The machine and the moment a result was measured: every row carries them.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where and when a run happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// Host name.
    pub host: String,
    /// CPU model name from /proc/cpuinfo.
    pub cpu_model: String,
    /// CPUs this process may run on.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    /// The git revision bench-client was built from ([`GIT_REV`]).
    pub git_rev: String,
}

/// The git revision bench-client was built from: short hash, `+dirty` when the code (crates,
/// bench-client, the manifests) had uncommitted changes at build time, or `NA` (built outside
/// a git checkout). Recorded by build.rs.
pub const GIT_REV: &str = env!("ARCHBENCH_GIT_REV");

/// How this bench-client was built: `release, rustc 1.95.0 (...)` (the cargo profile and the
/// compiler, recorded by build.rs).
pub fn build() -> String {
    format!("{}, {}", env!("ARCHBENCH_PROFILE"), env!("ARCHBENCH_RUSTC"))
}

/// Total and steal jiffies of the whole machine, from /proc/stat.
pub fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let total = fields.iter().take(8).sum();
    Some((total, *fields.get(7)?))
}

/// Steal as a percentage of all CPU time between two [`cpu_jiffies`] readings.
pub fn steal_pct(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((t0, s0), (t1, s1)) = (before?, after?);
    let total = t1.checked_sub(t0)?;
    (total > 0).then(|| 100.0 * s1.saturating_sub(s0) as f64 / total as f64)
}

/// A field of /proc/meminfo, KiB (`MemAvailable`, `MemTotal`, ...).
pub fn meminfo_kb(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Memory the machine can still give without swapping (`MemAvailable`), KiB.
pub fn mem_available_kb() -> Option<u64> {
    meminfo_kb("MemAvailable")
}

/// Steal above this share of the machine's CPU during a row flags it in reports.
pub const HIGH_STEAL_PCT: f64 = 5.0;

/// `sha256:` and the first 12 hex digits of the file's SHA-256 (by `sha256sum`), or NA.
pub fn file_hash(path: &std::path::Path) -> String {
    Command::new("sha256sum")
        .arg(path)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            text.split_whitespace()
                .next()
                .map(|h| format!("sha256:{}", &h[..12.min(h.len())]))
        })
        .unwrap_or_else(|| "NA".into())
}

/// A program's version line (`nginx -v`, `node --version`...), from stdout or stderr, or NA.
pub fn version_of(program: &str, flag: &str) -> String {
    Command::new(program)
        .arg(flag)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "NA".into())
}

impl Machine {
    /// Reads the machine description (never fails: an unknown field is `NA`).
    pub fn describe() -> Machine {
        let uname = nix::sys::utsname::uname().ok();
        let host = uname
            .as_ref()
            .map(|u| u.nodename().to_string_lossy().into_owned())
            .unwrap_or_else(|| "NA".into());
        let kernel = uname
            .as_ref()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_else(|| "NA".into());
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "NA".into());
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0);
        Machine {
            host,
            cpu_model,
            cores,
            kernel,
            git_rev: GIT_REV.to_string(),
        }
    }
}

/// Seconds since the epoch as an ISO-8601 UTC timestamp (`2026-11-23T06:01:02Z`).
pub fn iso8601(secs: u64) -> String {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// The current time as [`iso8601`].
pub fn now_iso8601() -> String {
    iso8601(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
}

/// A run id: UTC time and process id, sortable (`20261123T060102Z-4242`).
pub fn new_run_id() -> String {
    let stamp: String = now_iso8601()
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    format!("{stamp}-{}", std::process::id())
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (era arithmetic: 400-year cycles
/// of 146097 days, years starting in March so the leap day falls last).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_correct_dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_795_417_262), "2026-11-23T07:01:02Z");
    }

    #[test]
    fn machine_fields_are_filled() {
        let m = Machine::describe();
        assert!(m.cores >= 1);
        assert!(!m.host.is_empty() && !m.kernel.is_empty());
        assert!(build().contains("rustc"), "{}", build());
        let profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        assert!(build().starts_with(profile), "{}", build());
    }

    #[test]
    fn steal_is_a_share_of_the_interval() {
        assert_eq!(steal_pct(Some((1000, 10)), Some((1200, 20))), Some(5.0));
        assert_eq!(steal_pct(Some((1000, 10)), Some((1000, 10))), None);
        assert_eq!(steal_pct(None, Some((1, 1))), None);
        let (total, steal) = cpu_jiffies().expect("/proc/stat is readable");
        assert!(total > 0 && steal <= total);
    }
}
