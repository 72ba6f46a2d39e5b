//! Time: raw tick counter reads on the calling thread, wall-clock pairs on the sink.
//!
//! Events carry raw ticks of the CPU's timestamp counter (`rdtsc` on x86_64, `cntvct_el0` on
//! aarch64, nanoseconds of a monotonic clock elsewhere). The process description carries the
//! ticks and the wall-clock time at startup and the tick frequency, which turn ticks into
//! times (micromegas.md §1.3). The frequency comes from the hardware where it says so
//! (CPUID leaf 0x15 on x86_64, `cntfrq_el0` on aarch64) and is otherwise measured by the sink
//! against the monotonic clock before it sends the process description.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Reads the tick counter: the only time source of the hot path.
#[inline(always)]
pub fn now() -> i64 {
    #[cfg(target_arch = "x86_64")]
    {
        // `rdtsc` is not serializing, so the instructions that store the event overlap
        // with it; on every x86_64 made since 2008 the counter is invariant (constant rate,
        // synchronized across cores).
        // SAFETY: `rdtsc` is part of the x86_64 baseline and has no preconditions.
        #[allow(unused_unsafe)]
        let ticks = unsafe { core::arch::x86_64::_rdtsc() };
        ticks as i64
    }
    #[cfg(target_arch = "aarch64")]
    {
        let ticks: u64;
        // SAFETY: reading the virtual counter is allowed at EL0 on every OS Rust supports
        // (Linux, macOS, Windows enable it) and has no side effect.
        unsafe {
            core::arch::asm!("mrs {}, cntvct_el0", out(reg) ticks, options(nomem, nostack, preserves_flags));
        }
        ticks as i64
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        monotonic_nanos()
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn monotonic_nanos() -> i64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = ORIGIN.get_or_init(Instant::now);
    i64::try_from(origin.elapsed().as_nanos()).unwrap_or(i64::MAX)
}

/// The frequency the hardware declares, when it declares one.
pub(crate) fn declared_frequency() -> Option<i64> {
    static DECLARED: OnceLock<Option<i64>> = OnceLock::new();
    *DECLARED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            // CPUID leaf 0x15: TSC/crystal ratio and crystal frequency (Intel since
            // Skylake; 0 elsewhere, e.g. on AMD and most hypervisors).
            // SAFETY: `cpuid` is part of the x86_64 baseline.
            #[allow(unused_unsafe)]
            let max_leaf = unsafe { core::arch::x86_64::__cpuid(0) }.eax;
            if max_leaf >= 0x15 {
                // SAFETY: as above, and the leaf is supported.
                #[allow(unused_unsafe)]
                let r = unsafe { core::arch::x86_64::__cpuid(0x15) };
                if r.eax != 0 && r.ebx != 0 && r.ecx != 0 {
                    return Some(i64::from(r.ecx) * i64::from(r.ebx) / i64::from(r.eax));
                }
            }
            None
        }
        #[cfg(target_arch = "aarch64")]
        {
            let freq: u64;
            // SAFETY: `cntfrq_el0` is readable at EL0 and has no side effect.
            unsafe {
                core::arch::asm!("mrs {}, cntfrq_el0", out(reg) freq, options(nomem, nostack, preserves_flags));
            }
            i64::try_from(freq).ok().filter(|f| *f > 0)
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            Some(1_000_000_000)
        }
    })
}

/// A tick count and the wall-clock time read together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DualTime {
    /// Raw ticks ([`now`]).
    pub ticks: i64,
    /// Nanoseconds since the Unix epoch.
    pub nanos: i64,
}

impl DualTime {
    /// Reads both clocks.
    pub fn now() -> Self {
        let ticks = now();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or_default();
        Self { ticks, nanos }
    }
}

/// The process's time origin and the measurement of the tick frequency.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub start: DualTime,
    start_instant: Instant,
}

impl Clock {
    pub fn start() -> Self {
        Self {
            start_instant: Instant::now(),
            start: DualTime::now(),
        }
    }

    /// Time since the start on the monotonic clock.
    pub fn elapsed(&self) -> std::time::Duration {
        self.start_instant.elapsed()
    }

    /// Ticks per second: declared by the hardware, or measured over the time elapsed since
    /// the start (0, meaning "estimate from the blocks", when less than a millisecond has
    /// elapsed). With a microsecond of jitter between the two clock reads, a measure over one
    /// second is good to about one part per million.
    pub fn frequency(&self) -> i64 {
        if let Some(f) = declared_frequency() {
            return f;
        }
        let ticks = now();
        let elapsed = self.start_instant.elapsed();
        let nanos = elapsed.as_nanos();
        if nanos < 1_000_000 {
            return 0;
        }
        let delta = i128::from(ticks.wrapping_sub(self.start.ticks));
        i64::try_from(delta * 1_000_000_000 / i128::try_from(nanos).unwrap_or(i128::MAX))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_advance_and_frequency_is_plausible() {
        let clock = Clock::start();
        let a = now();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = now();
        assert!(b > a);
        let f = clock.frequency();
        // Between 1 MHz and 10 GHz.
        assert!((1_000_000..10_000_000_000).contains(&f), "{f}");
    }
}
