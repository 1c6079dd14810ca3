//! `tlm`: the developer's command-line tool for a ToloMEO device.
//!
//! It talks to the device-local NATS broker the way PROTOCOL.md describes and shows what the
//! cloud's Fleet Manager shows, without the cloud:
//!
//! - `tlm watch`: the latest value of every metric on `events.data` ([`watch`], drawn by [`table`]);
//! - `tlm cmd <service> [<Command> [json]]`: one command on `commands.<service>.req`, or the list of
//!   the service's commands ([`cmd`]);
//! - `tlm services`: the services whose heartbeat is alive, with their metrics ([`services`]);
//! - `tlm dashboard`: the charts and the command panel in a browser, a program of its own
//!   ([`dashboard`] starts it);
//! - `tlm validate [FILE|-]`: checks a SenML pack against RFC 8428 and PROTOCOL.md ([`validate`],
//!   with the protocol's rules per kind of pack in [`protocol`]).
//!
//! What it is not: a service (it publishes nothing but command requests), a full-screen TUI, or
//! a replacement for the `nats` CLI. Connection flags are `tolomeo_proto::client`'s; exit codes
//! are in [`exit`].
//! This file holds the one flags definition and dispatches to one module per subcommand.

#![forbid(unsafe_code)]

mod cmd;
mod dashboard;
mod exit;
mod protocol;
mod services;
mod table;
mod text;
mod validate;
mod watch;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Watch telemetry, send commands and list live services on a ToloMEO device.
#[derive(Debug, Parser)]
#[command(name = "tlm", version, about, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    conn: tolomeo_proto::client::ConnArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Live table of the latest value of every metric published on events.data.
    Watch(watch::Args),
    /// Send one command to a service and print its result.
    Cmd(cmd::Args),
    /// List the services alive now (heartbeats) and the metrics they announce.
    Services(services::Args),
    /// Check a SenML pack against RFC 8428 and PROTOCOL.md; no broker needed.
    Validate(validate::Args),
    /// Charts of every metric and a command panel, in a browser (runs tlm-dashboard).
    Dashboard(dashboard::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Dashboard(args) => dashboard::run(&cli.conn, &args),
        command => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            match runtime {
                Ok(rt) => rt.block_on(async {
                    match command {
                        Command::Watch(args) => watch::run(&cli.conn, &args).await,
                        Command::Cmd(args) => cmd::run(&cli.conn, &args).await,
                        Command::Services(args) => services::run(&cli.conn, &args).await,
                        Command::Validate(args) => validate::run(&args),
                        Command::Dashboard(args) => dashboard::run(&cli.conn, &args),
                    }
                }),
                Err(e) => Err(exit::Failure::io(format!("cannot start the async runtime: {e}"))),
            }
        }
    };
    exit::report(outcome)
}
