//! The `weft` command: parses the command line and hands each command to the libraries.
// Printing is this binary's job: its output is what the user reads.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cli;
mod commands;
mod dev;
mod new;

use clap::Parser as _;

/// A host allocates and frees per request in many tasks on every worker thread; glibc's malloc
/// spent a tenth of a loaded host's CPU (a `perf` profile of the WASI 0.3 I/O bench), mimalloc's
/// thread-local free lists far less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tracing_log::AsLog as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::Layer as _;

fn main() -> std::process::ExitCode {
    errors_without_backtraces();
    quiet_on_closed_stdout();
    let cli = cli::Cli::parse();
    let serves = matches!(
        cli.command,
        cli::Command::Up(_) | cli::Command::Host(_) | cli::Command::Dev(_)
    );
    let default_level = if matches!(cli.command, cli::Command::Up(_) | cli::Command::Dev(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEFT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level))
        // The capability bindings log each call's arguments and results at TRACE, secrets
        // among them; even `WEFT_LOG=trace` does not print those.
        .add_directive(
            "weft_capabilities::bindings=off"
                .parse()
                .expect("a valid directive"),
        );
    // Only a serving host exports traces: the other commands open no spans.
    let (traces, _export) = match serves.then(weft_telemetry::export_from_env).transpose() {
        Ok(found) => found.flatten().unzip(),
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Records of crates logging through `log` (wasmtime's among them, many at TRACE on every
    // instantiation) are forwarded only up to the log filter's level: the trace export's layer
    // lifts tracing's own maximum to TRACE for the capability spans, and must not make every
    // such record pay a trip through the subscriber.
    let log_level = filter
        .max_level_hint()
        .map_or(log::LevelFilter::Trace, |level| level.as_log());
    use std::io::IsTerminal as _;
    let log_lines = match cli.global.log_format {
        cli::LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
        cli::LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let subscriber = tracing_subscriber::registry().with(log_lines).with(traces);
    if let Err(e) = tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            tracing_log::LogTracer::init_with_filter(log_level).map_err(|e| e.to_string())
        })
    {
        eprintln!("error: cannot set up logging: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        // A guest call may hold a worker for a whole epoch tick (1 ms) before it yields; at
        // tokio's default of 61 tasks between looks at the sockets, a new request could wait
        // 61 ms behind busy guests. Eight bounds that wait near the budget of a long call.
        .event_interval(8)
        // A worker about to idle first drops the instance it finished last (weft_runtime's
        // `retire.rs`), so that instance's memory reset comes after its answer went out.
        .on_thread_park(weft_host::drop_retired)
        .on_thread_stop(weft_host::drop_retired)
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

/// `weft inspect FILE | head` closes standard output early: the command then ends quietly with
/// SIGPIPE's status, as Unix tools do, instead of printing a panic.
fn quiet_on_closed_stdout() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
}

/// On a serving host, errors are ordinary values on the request path: a header a guest may not
/// set, a capability call refused, a guest's trap. With `RUST_BACKTRACE` set (as many machines
/// have it), each would capture a stack trace, tens of microseconds a time; a `perf` profile of
/// the harness hop put 2-3% of it there. Panics keep their backtraces; `RUST_LIB_BACKTRACE=1`
/// brings errors' back.
fn errors_without_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // Before any thread starts, so no other thread reads the environment meanwhile.
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
}
