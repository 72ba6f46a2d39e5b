//! The description of the process sent before anything else.

use crate::time::Clock;
use std::collections::BTreeMap;
use tarn_proto::native::{ProcessInfo, time::format_rfc3339_nanos};

/// The first of the environment variables `names` that is set and not blank, trimmed.
pub(crate) fn env(names: &[&str]) -> Option<String> {
    names
        .iter()
        .filter_map(|n| std::env::var(n).ok())
        .map(|v| v.trim().to_owned())
        .find(|v| !v.is_empty())
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn username() -> String {
    env(&["USER", "USERNAME", "LOGNAME"]).unwrap_or_default()
}

fn realname(user: &str) -> String {
    // The GECOS field of /etc/passwd, when there is one.
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|passwd| {
            passwd.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                (fields.first() == Some(&user))
                    .then(|| fields.get(4).and_then(|g| g.split(',').next()))
                    .flatten()
                    .map(str::to_owned)
                    .filter(|g| !g.is_empty())
            })
        })
        .unwrap_or_else(|| user.to_owned())
}

fn computer() -> String {
    read_trimmed("/proc/sys/kernel/hostname")
        .or_else(|| read_trimmed("/etc/hostname"))
        .or_else(|| env(&["HOSTNAME", "COMPUTERNAME"]))
        .unwrap_or_default()
}

fn distro() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_owned())
        })
        .unwrap_or_else(|| std::env::consts::OS.to_owned())
}

fn cpu_brand() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `cpuid` is part of the x86_64 baseline.
        #[allow(unused_unsafe)]
        let max = unsafe { core::arch::x86_64::__cpuid(0x8000_0000) }.eax;
        if max >= 0x8000_0004 {
            let mut bytes = Vec::with_capacity(48);
            for leaf in 0x8000_0002u32..=0x8000_0004 {
                // SAFETY: as above; the leaf is supported.
                #[allow(unused_unsafe)]
                let r = unsafe { core::arch::x86_64::__cpuid(leaf) };
                for reg in [r.eax, r.ebx, r.ecx, r.edx] {
                    bytes.extend_from_slice(&reg.to_le_bytes());
                }
            }
            let brand = String::from_utf8_lossy(&bytes)
                .trim_matches(char::from(0))
                .trim()
                .to_owned();
            if !brand.is_empty() {
                return brand;
            }
        }
    }
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned())
}

/// The process description (the tick frequency is filled in by the sink).
pub(crate) fn describe(
    process_id: String,
    parent_process_id: Option<String>,
    properties: BTreeMap<String, String>,
    clock: &Clock,
) -> ProcessInfo {
    let user = username();
    ProcessInfo {
        process_id,
        exe: std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        realname: realname(&user),
        username: user,
        computer: computer(),
        distro: distro(),
        cpu_brand: cpu_brand(),
        tsc_frequency: 0,
        start_time: format_rfc3339_nanos(clock.start.nanos),
        start_ticks: clock.start.ticks,
        parent_process_id,
        properties,
    }
}

/// `k=v,k2=v2` (the format of `MICROMEGAS_PROCESS_PROPERTIES`).
pub(crate) fn parse_properties(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_this_process() {
        let clock = Clock::start();
        let info = describe("id".into(), None, BTreeMap::new(), &clock);
        assert!(!info.exe.is_empty());
        assert!(!info.cpu_brand.is_empty());
        assert_eq!(info.start_ticks, clock.start.ticks);
        assert_eq!(
            parse_properties("a=1, b = 2,bad,=x"),
            [("a".into(), "1".into()), ("b".into(), "2".into())]
        );
    }
}
