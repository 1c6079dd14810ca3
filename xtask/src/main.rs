//! `cargo xtask`: the project's automation, in Rust instead of shell scripts.
//!
//! - `cargo xtask ci`: everything CI checks (format, clippy, tests, the MSRV build).
//! - `cargo xtask bench`: the benchmarks behind BENCHMARKS.md (`cargo bench` plus the
//!   resident-memory and CPU footprint of the services).
//!
//! One flags definition below; one module per subcommand.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod bench;
mod ci;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Project automation for the ToloMEO Rust services")]
struct Flags {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Format check, clippy -D warnings, every test, and the MSRV (1.94.1) build
    Ci {
        /// Skip the MSRV build (when the 1.94.1 toolchain is not installed)
        #[arg(long)]
        no_msrv: bool,
    },
    /// Benchmarks: `cargo bench` and the footprint of running services
    Bench {
        /// Which: all, encode, publish, footprint
        #[arg(default_value = "all")]
        which: String,
        /// Seconds each footprint measurement runs
        #[arg(long, default_value_t = 60)]
        duration: u64,
    },
}

fn main() -> Result<()> {
    let flags = Flags::parse();
    let root = project_root();
    std::env::set_current_dir(&root).with_context(|| format!("cannot enter {}", root.display()))?;
    match flags.task {
        Task::Ci { no_msrv } => ci::run(no_msrv),
        Task::Bench { which, duration } => bench::run(&which, duration),
    }
}

/// The workspace root (the parent of xtask/).
fn project_root() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    dir.parent().unwrap_or(dir).to_path_buf()
}

/// Run a command, echoing it; fail with its exit status.
fn sh(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {}", describe(cmd));
    let status = cmd.status().with_context(|| format!("cannot run {}", describe(cmd)))?;
    if !status.success() {
        bail!("`{}` failed: {status}", describe(cmd));
    }
    Ok(())
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}
