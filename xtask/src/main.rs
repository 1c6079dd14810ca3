//! `cargo xtask`: the project's automation, in Rust instead of shell scripts.
//!
//! - `cargo xtask ci`: the README's test command, and all CI runs: setup, format, clippy,
//!   tests, system tests, demo, browser, soak, the MSRV check, lint, fuzzing, the aarch64 build; time per stage.
//! - `cargo xtask setup`: the Debian packages, Python test peers (target/py-venv) and Rust
//!   toolchains the tests need.
//! - `cargo xtask bench`: the benchmarks behind BENCHMARKS.md (`cargo bench` plus the
//!   resident-memory and CPU footprint of the services).
//! - `cargo xtask cross-build --target T [--check]`: release binaries for a device; `--check`
//!   runs each under qemu-user.
//! - `cargo xtask dist --target T`: a tarball laid out as the device's root file system.
//! - `cargo xtask update-recipe`: the Yocto recipe's crate list and version from Cargo.lock.
//! - `cargo xtask lint`: the Yocto layer (oelint-adv, recipe in sync) and the systemd units.
//! - `cargo xtask fuzz [TARGET] [--runs N]`: the libFuzzer targets in fuzz/.
//! - `cargo xtask system-test [FILTER]`: tests/ in a VM: SocketCAN on a real kernel, the
//!   systemd units under a real systemd.
//! - `cargo xtask demo [--duration S]`: all three services, a broker, a simulated boiler,
//!   `tlm-dashboard` and `tlm watch`, on this machine.
//! - `cargo xtask soak [--minutes M]`: the same system under load; memory must stay flat.
//! - `cargo xtask browser-test [--readme-image]`: tlm-dashboard's page in headless Chromium
//!   against the demo's system.
//!
//! One flags definition below; one module per subcommand.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod bench;
mod browser;
mod ci;
mod cross;
mod demo;
mod fuzz;
mod lint;
mod recipe;
mod setup;
mod soak;
mod system;
mod yocto;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Project automation for the ToloMEO Rust services")]
struct Flags {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// The test command: sets up what it needs, then format, clippy -D warnings, every test,
    /// the system tests in VMs, the demo, the dashboard in a browser, a soak, the MSRV (1.94.1) check, the layer and unit lint, a short fuzzing
    /// round, the aarch64 build run under qemu-user; prints the time of each stage
    Ci {
        /// Install nothing (Debian packages, target/py-venv, rustup toolchains): use what is here
        #[arg(long)]
        no_setup: bool,
        /// Skip the MSRV check (needs the 1.94.1 toolchain)
        #[arg(long)]
        no_msrv: bool,
        /// Skip the Yocto layer and systemd unit lint (needs oelint-adv and systemd-analyze)
        #[arg(long)]
        no_lint: bool,
        /// Skip fuzzing (needs the pinned nightly toolchain)
        #[arg(long)]
        no_fuzz: bool,
        /// Skip the aarch64 build (needs the Rust target, gcc-aarch64-linux-gnu and qemu-user)
        #[arg(long)]
        no_cross: bool,
        /// Skip the 20 s demo run
        #[arg(long)]
        no_demo: bool,
        /// Skip the dashboard's page in headless Chromium (cargo xtask browser-test)
        #[arg(long)]
        no_browser: bool,
        /// Skip the 5-minute soak
        #[arg(long)]
        no_soak: bool,
        /// Skip the Yocto layer under BitBake (cargo xtask yocto; skipped by itself when the
        /// OE-core and BitBake archives are not in ../shared/yocto)
        #[arg(long)]
        no_yocto: bool,
        /// Skip the system tests in VMs (cargo xtask system-test: SocketCAN, systemd)
        #[arg(long)]
        no_system: bool,
    },
    /// Install what the tests need: Debian packages (as root; otherwise the apt-get line to
    /// run), the Python test peers in target/py-venv, rustup components, toolchains, targets
    Setup,
    /// Release binaries for a device (aarch64-unknown-linux-gnu for the i.MX8M Plus)
    CrossBuild {
        /// aarch64-unknown-linux-gnu, armv7-unknown-linux-gnueabihf or x86_64-unknown-linux-gnu
        #[arg(long, default_value = "aarch64-unknown-linux-gnu")]
        target: String,
        /// Run each binary under qemu-user: --version, and --check-config on its default config
        #[arg(long)]
        check: bool,
    },
    /// A tarball of usr/bin, lib/systemd/system, etc/tolomeo, etc/default for a device
    Dist {
        #[arg(long, default_value = "aarch64-unknown-linux-gnu")]
        target: String,
    },
    /// Regenerate the Yocto recipe's crate list and version from Cargo.lock and Cargo.toml
    UpdateRecipe,
    /// Check the Yocto layer (oelint-adv, recipe in sync) and the systemd units
    Lint,
    /// The Yocto layer under the real BitBake (OE-core wrynose, offline, from ../shared/yocto):
    /// parse, dry run, the crate list built from, and yocto-check-layer when the layer changed
    Yocto {
        /// Run yocto-check-layer even when it passed before on the same inputs
        #[arg(long, conflicts_with = "no_check_layer")]
        check_layer: bool,
        /// Never run yocto-check-layer
        #[arg(long)]
        no_check_layer: bool,
    },
    /// The tests in tests/ that need a real kernel (SocketCAN) or systemd, each in a VM (qemu,
    /// Debian's kernel); installs what they need as root
    SystemTest {
        /// Only the tests whose names contain this
        filter: Option<String>,
        /// Install dist's release build in the systemd guest (default: the debug build)
        #[arg(long)]
        release: bool,
    },
    /// The whole system on this machine: broker, simulated boiler, the three services, the
    /// dashboard (its address printed), tlm watch
    Demo {
        /// Show tlm watch for this many seconds, then stop (default: after Enter, until Ctrl-C)
        #[arg(long)]
        duration: Option<u64>,
    },
    /// tlm-dashboard's page in headless Chromium (chromium, chromium-driver) against the demo's
    /// system: services alive, a chart with points per metric, ranges, zoom, commands sent from
    /// the control panel, and the commands' protections; screenshots in target/browser/
    BrowserTest {
        /// Also copy the metrics screenshot to docs/images/dashboard.png (the README's)
        #[arg(long)]
        readme_image: bool,
    },
    /// All three services under load (CAN at 100 Hz, Modbus, system metrics); memory must stay flat
    Soak {
        /// How long
        #[arg(long, default_value_t = 5)]
        minutes: u64,
        /// Release builds (as on a device) instead of debug
        #[arg(long)]
        release: bool,
        /// Seconds between memory samples
        #[arg(long, default_value_t = 10)]
        sample: u64,
        /// Largest allowed VmRSS growth after the warm-up minute, per service
        #[arg(long, default_value_t = 512)]
        max_growth_kib: u64,
    },
    /// Run the libFuzzer targets in fuzz/ for a fixed number of executions each
    Fuzz {
        /// One target (default: all)
        target: Option<String>,
        /// Executions per target
        #[arg(long, default_value_t = 20_000)]
        runs: u64,
    },
    /// Benchmarks: `cargo bench` and the footprint of running services
    Bench {
        /// Which: all, encode, publish, store, footprint; or dashboard (a day through the broker), flash (in a VM) and fsync (under strace),
        /// which are not part of all
        #[arg(default_value = "all")]
        which: String,
        /// Seconds each footprint (or flash, fsync) measurement runs
        #[arg(long, default_value_t = 60)]
        duration: u64,
    },
}

/// An error is a message and exit code 1, whatever `RUST_BACKTRACE` says (anyhow would print
/// a backtrace after it); a panic is a bug and still shows one.
fn main() -> ExitCode {
    match run(Flags::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(flags: Flags) -> Result<()> {
    let root = project_root();
    std::env::set_current_dir(&root).with_context(|| format!("cannot enter {}", root.display()))?;
    match flags.task {
        Task::Ci {
            no_setup,
            no_msrv,
            no_lint,
            no_fuzz,
            no_cross,
            no_demo,
            no_browser,
            no_soak,
            no_yocto,
            no_system,
        } => ci::run(ci::Skip {
            setup: no_setup,
            msrv: no_msrv,
            lint: no_lint,
            fuzz: no_fuzz,
            cross: no_cross,
            demo: no_demo,
            browser: no_browser,
            soak: no_soak,
            yocto: no_yocto,
            system: no_system,
        }),
        Task::Setup => setup::run(setup::Needs::ALL),
        Task::Bench { which, duration } => bench::run(&which, duration),
        Task::CrossBuild { target, check } => cross::cross_build(&target, check).map(|_| ()),
        Task::Dist { target } => cross::dist(&target),
        Task::UpdateRecipe => recipe::update(),
        Task::Lint => lint::run(),
        Task::Yocto {
            check_layer,
            no_check_layer,
        } => yocto::run(if check_layer {
            yocto::CheckLayer::Always
        } else if no_check_layer {
            yocto::CheckLayer::Never
        } else {
            yocto::CheckLayer::WhenChanged
        }),
        Task::Fuzz { target, runs } => fuzz::run(target.as_deref(), runs),
        Task::Demo { duration } => demo::run(duration),
        Task::BrowserTest { readme_image } => browser::run(readme_image),
        Task::SystemTest { filter, release } => system::run(filter.as_deref(), release),
        Task::Soak {
            minutes,
            release,
            sample,
            max_growth_kib,
        } => soak::run(minutes, release, sample, max_growth_kib),
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

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Is `cmd` on the PATH?
fn have(cmd: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(cmd).is_file()))
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
