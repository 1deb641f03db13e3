//! `jarvis`: the amoCRM integration service. See `jarvis --help`.

/// mimalloc: the webhook path allocates and frees many small buffers per request from several
/// threads, where glibc's allocator spent about a quarter of the CPU (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = jarvis_service::cli::Cli::parse_args();
    match cli.run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
