//! `cpu-monitor`: the system-metrics service every ToloMEO device runs (`tlm-cpu-monitor`).
//!
//! It publishes CPU use and load, memory and swap, disk space per mount point, network bytes
//! per interface, uptime, temperatures and the process count as SenML on `events.data`, in
//! place of the Python Glances service, at a fraction of its memory and CPU. The metric names,
//! units and the configuration are in this crate's README.md.
//!
//! What it is not: a process monitor (it counts processes, it never reads them one by one),
//! nor a general disk lister (it measures the mount points it is given).
//!
//! Main types: [`CpuMonitor`] (the [`tolomeo_core::SensorPlugin`]), [`CpuConfig`] (the
//! `[cpu]` section), [`Collector`] (reads the enabled groups), and [`names`] (the rule that
//! maps kernel names to valid SenML labels).
//!
//! # Example
//!
//! ```no_run
//! fn main() -> std::process::ExitCode {
//!     cpu_monitor::main()
//! }
//! ```

pub mod collect;
pub mod config;
pub mod names;
mod plugin;
mod presence;
pub mod procfs;
pub mod sensors;
pub mod sys;

use std::process::ExitCode;
use std::time::Duration;

pub use collect::{Collector, Entry};
pub use config::CpuConfig;
pub use plugin::CpuMonitor;
use tolomeo_core::{BuildContext, ConfigError, cli};

/// The service's identity and its 10 s default poll.
pub const SPEC: cli::ServiceSpec = cli::ServiceSpec {
    name: "cpu-monitor",
    version: env!("CARGO_PKG_VERSION"),
    about: "ToloMEO system metrics: CPU, memory, disks, network, temperatures",
    default_poll_time: Duration::from_secs(10),
};

/// Check `[cpu]` and build the plugin: what [`main`] gives `cli::main`. Every problem at
/// once, keys relative to the section. The groups do not depend on the poll period.
pub fn build(cfg: &CpuConfig, _ctx: &BuildContext) -> Result<CpuMonitor, ConfigError> {
    let problems = cfg.problems();
    if !problems.is_empty() {
        return Err(ConfigError {
            source: "[cpu]".into(),
            problems,
        });
    }
    Ok(CpuMonitor::new(cfg))
}

/// Run the service with the shared command line; returns the exit code.
pub fn main() -> ExitCode {
    cli::main(SPEC, build)
}
