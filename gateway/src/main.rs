//! `tarn`: the Tarn gateway and its command-line tools.

fn main() -> std::process::ExitCode {
    tarn_gateway::cli::main()
}
