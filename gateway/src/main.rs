//! `tarn`: the Tarn gateway and its command-line tools.

// Ingest decodes millions of small strings per second: glibc's allocator spent a third of
// the gateway's CPU in malloc and free (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tarn_gateway::cli::main()
}
