//! The `weft` command: parses the command line and hands each command to the libraries.
// Printing is this binary's job: its output is what the user reads.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod commands;

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let default_level = match cli.command {
        cli::Command::Up(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        // A guest call may hold a worker for a whole epoch tick (1 ms) before it yields; at
        // tokio's default of 61 tasks between looks at the sockets, a new request could wait
        // 61 ms behind busy guests. Eight bounds that wait near the budget of a long call.
        .event_interval(8)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
