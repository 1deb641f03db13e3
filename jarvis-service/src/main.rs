//! `jarvis`: the amoCRM integration service. See `jarvis --help`.

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
