//! `tarn`: the Tarn gateway and its command-line tools.

// Ingest decodes millions of small strings per second: glibc's allocator spent a third of
// the gateway's CPU in malloc and free (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (the 16th entry of `mi_option_e` in the v3
/// `mimalloc.h` that libmimalloc-sys builds; the crate names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps memory mimalloc freed for reuse instead of returning it to the OS a second later:
/// under ingest every request's buffers were faulted in and zeroed again by the kernel
/// (a fifth of the gateway's CPU, docs/benchmarks.md). The in-flight and fresh-row limits
/// bound what is kept. `MIMALLOC_PURGE_DELAY` set in the environment wins.
fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set is not thread safe; this runs first in main, before any
        // thread of ours exists.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
}

fn main() -> std::process::ExitCode {
    keep_freed_memory();
    tarn_gateway::cli::main()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option index still names the purge delay: mimalloc's default for it is 1000 ms
    /// (`options.c` of the bundled v3 sources; the header's comment still says 10).
    #[test]
    fn option_index_is_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            println!("skipped: MIMALLOC_PURGE_DELAY is set in the environment");
            return;
        }
        // SAFETY: reading an option is thread safe.
        let delay = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay, 1000);
    }
}
