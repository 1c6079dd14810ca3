//! `tlm-dashboard` (also started as `tlm dashboard`): the page, its store and its server.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = tlm_dashboard::Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_max_level(tracing::Level::WARN)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        // Store queries run on blocking threads: two at a time is what two cores serve, and
        // each thread more keeps a malloc arena of its own (tens of MiB after a day's range).
        .max_blocking_threads(2)
        .thread_name("tlm-dashboard")
        .enable_all()
        .build();
    let outcome = match runtime {
        Ok(rt) => rt.block_on(tlm_dashboard::run(args)),
        Err(e) => Err(tlm_dashboard::Error::Io(format!("cannot start the async runtime: {e}"))),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tlm-dashboard: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
