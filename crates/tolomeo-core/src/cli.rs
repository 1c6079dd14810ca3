//! The command line every service shares: flags, configuration loading, logging, signals,
//! exit codes. A service's `main` is one call to [`main`].
//!
//! Flags: `--config FILE` (default `/etc/tolomeo/<service>.toml`), `--check-config`,
//! `--print-config`, `--serial`, `--nats-url`, `--poll-time-ms`, `--log-level`, `--version`.
//! Precedence: file < environment (`NATS_URL`, `DEVICE_SERIAL_NUMBER`) < flags.
//! Exit codes, one meaning each: 0 after a clean stop; 78 (EX_CONFIG) for a configuration
//! error, which a restart cannot fix (the units say `RestartPreventExitStatus=78`); 69
//! (EX_UNAVAILABLE) when the broker refused something the service needs (a subject's
//! permission, a subscription), which systemd's `Restart=on-failure` retries; 70
//! (EX_SOFTWARE) for an internal error; 2 for a usage error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser};
use tokio_util::sync::CancellationToken;

use crate::config::{BuildContext, Config, ConfigError, PluginConfig, Problem, check_url, poll_time_problem, together};
use crate::plugin::SensorPlugin;
use crate::service::{Service, ServiceError, Settings};
use crate::wire::{DeviceSerial, ServiceName};

/// EX_CONFIG from sysexits.h: the configuration is wrong.
pub const EXIT_CONFIG: u8 = 78;
/// EX_UNAVAILABLE from sysexits.h: the broker refused something the service needs.
pub const EXIT_UNAVAILABLE: u8 = 69;
/// EX_SOFTWARE from sysexits.h: an internal error.
pub const EXIT_SOFTWARE: u8 = 70;

/// What a service says about itself.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpec {
    /// Service name, e.g. `cpu-monitor`.
    pub name: &'static str,
    /// Version, usually `env!("CARGO_PKG_VERSION")`.
    pub version: &'static str,
    /// One line for `--help`.
    pub about: &'static str,
    /// Poll period when the configuration sets none.
    pub default_poll_time: Duration,
}

/// The flags shared by every service.
#[derive(Debug, Parser)]
struct Flags {
    /// Configuration file [default: /etc/tolomeo/<service>.toml; a missing default file means all defaults]
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Check the configuration as a start would, without starting; print "configuration OK" and exit (78 on an error)
    #[arg(long)]
    check_config: bool,
    /// Print the effective configuration (file, environment and flags merged) and exit
    #[arg(long)]
    print_config: bool,
    /// Device serial number [env: DEVICE_SERIAL_NUMBER]
    #[arg(long, value_name = "SERIAL")]
    serial: Option<String>,
    /// Broker URL; overrides the file and NATS_URL
    #[arg(long, value_name = "URL")]
    nats_url: Option<String>,
    /// Poll period in ms (100 to 3600000); overrides the file
    #[arg(long, value_name = "MS")]
    poll_time_ms: Option<u64>,
    /// Log filter, e.g. `info` or `warn,tolomeo_core=debug` [env: RUST_LOG] [default: info]
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
}

/// Run a service: parse flags, load the configuration, set up logging, build the plugin with
/// `build`, run until SIGINT or SIGTERM. Returns the process exit code.
///
/// `build` is the one place that checks the plugin's section and constructs the plugin: it
/// gets the section and a [`BuildContext`] (the service's poll period), and returns the
/// plugin or every problem it found in one [`ConfigError`], keys relative to the section
/// (`devices[0].dbc`) or absolute (`can.dbc`). It runs once, also for `--check-config` and
/// `--print-config`, so it must only construct: no device, socket or thread is opened before
/// [`SensorPlugin::start`]. Its problems are reported together with those of `[service]`
/// and `[nats]`, each against the configuration file, exit 78.
pub fn main<C, P, F>(spec: ServiceSpec, build: F) -> ExitCode
where
    C: PluginConfig,
    P: SensorPlugin,
    F: FnOnce(&C, &BuildContext) -> Result<P, ConfigError>,
{
    let cmd = Flags::command().name(spec.name).version(spec.version).about(spec.about);
    let flags = match Flags::from_arg_matches(&cmd.get_matches()) {
        Ok(f) => f,
        Err(e) => e.exit(),
    };
    init_logging(flags.log_level.as_deref());
    let Loaded {
        settings,
        config,
        source,
        problems,
    } = match load::<C>(&spec, &flags) {
        Ok(x) => x,
        Err(e) => return config_failure(&spec, &e),
    };
    // Whatever building the plugin finds wrong (a range, an unreadable file it names, a signal
    // that is not there) is wrong in the configuration file: said with `[service]`'s and
    // `[nats]`'s problems, against the file, under the plugin's section.
    let ctx = BuildContext::new(settings.poll_time());
    let plugin = match together::<C, P>(&source, problems, build(&config.plugin, &ctx)) {
        Ok(p) => p,
        Err(e) => return config_failure(&spec, &e),
    };
    if flags.check_config {
        // The files it names and the spool directory, as the service would find them at start.
        if let Err(e) = crate::check::resources(&settings.service, &settings.nats, &source) {
            return config_failure(&spec, &e);
        }
        for p in config.plugin.absent_now() {
            eprintln!(
                "{}: warning: {source}: {}.{}: {} (the service waits for it)",
                spec.name,
                C::SECTION,
                p.key,
                p.message
            );
        }
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    if flags.print_config {
        match config.to_toml() {
            Ok(text) => {
                println!(
                    "# effective configuration of {} {}\n# device serial: {}\n",
                    spec.name, spec.version, settings.serial
                );
                print!("{text}");
                if !text.ends_with('\n') {
                    println!();
                }
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("{}: cannot print the configuration: {e}", spec.name);
                return ExitCode::from(EXIT_SOFTWARE);
            }
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{}: cannot start the runtime: {e}", spec.name);
            return ExitCode::from(EXIT_SOFTWARE);
        }
    };
    let result = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        Service::new(settings, plugin).run(shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(ServiceError::Config(e)) => config_failure(&spec, &e),
        Err(e @ ServiceError::Metric(_)) => {
            tracing::error!("{e}");
            eprintln!("{}: configuration error: {e}", spec.name);
            ExitCode::from(EXIT_CONFIG)
        }
        Err(e @ ServiceError::Refused(_)) => {
            eprintln!("{}: {e}", spec.name);
            ExitCode::from(EXIT_UNAVAILABLE)
        }
        Err(e @ ServiceError::Commands(_)) => {
            tracing::error!("{e}");
            ExitCode::from(EXIT_SOFTWARE)
        }
    }
}

fn config_failure(spec: &ServiceSpec, e: &ConfigError) -> ExitCode {
    for line in e.to_string().lines() {
        eprintln!("{}: configuration error: {line}", spec.name);
    }
    ExitCode::from(EXIT_CONFIG)
}

/// What [`load`] read: the settings the service runs with, the configuration, where it came
/// from, and the file's problems not reported yet.
struct Loaded<C> {
    settings: Settings,
    config: Config<C>,
    /// The file, or `defaults`.
    source: String,
    /// `[service]` and `[nats]` range and cross-field problems of the file's values, reported
    /// with the plugin's.
    problems: Vec<Problem>,
}

/// File, then environment, then flags; the device serial; the effective poll time. Fails at
/// once on what cannot be read (the file's syntax and types) and on a wrong environment
/// variable or flag (their source is not the file); the file's range problems are kept for
/// [`main`] to report with the plugin's.
fn load<C: PluginConfig>(spec: &ServiceSpec, flags: &Flags) -> Result<Loaded<C>, ConfigError> {
    let default_path = PathBuf::from(format!("/etc/tolomeo/{}.toml", spec.name));
    let path = flags.config.clone().unwrap_or(default_path);
    let source = if path.exists() {
        path.display().to_string()
    } else {
        "defaults".to_string()
    };
    let mut config = Config::<C>::load(&path, flags.config.is_some())?;
    // The file's own values: a wrong one is reported even when the environment or a flag
    // replaces it this time.
    let problems = config.problems();
    if let Ok(url) = std::env::var("NATS_URL")
        && !url.trim().is_empty()
    {
        check_url(&url).map_err(|e| ConfigError::one("environment", "NATS_URL", e))?;
        config.nats.url = url;
    }
    if let Some(url) = &flags.nats_url {
        check_url(url).map_err(|e| ConfigError::one("command line", "--nats-url", e))?;
        config.nats.url = url.clone();
    }
    if let Some(ms) = flags.poll_time_ms {
        if let Some(message) = poll_time_problem(ms) {
            return Err(ConfigError::one("command line", "service.poll_time_ms", message));
        }
        config.service.poll_time_ms = Some(ms);
    }
    // An out-of-range value is reported with the plugin's problems; the plugin is built
    // meanwhile with the default, so that it does not report consequences of it.
    let poll_time_ms = config
        .service
        .poll_time_ms
        .filter(|ms| poll_time_problem(*ms).is_none())
        .unwrap_or(spec.default_poll_time.as_millis() as u64);
    config.service.poll_time_ms = Some(poll_time_ms);
    let serial = match &flags.serial {
        Some(s) => DeviceSerial::new(s).map_err(|e| ConfigError::one("command line", "--serial", e))?,
        None => match std::env::var("DEVICE_SERIAL_NUMBER") {
            Ok(s) => DeviceSerial::new(&s).map_err(|e| ConfigError::one("environment", "DEVICE_SERIAL_NUMBER", e))?,
            Err(_) => {
                return Err(ConfigError::one(
                    "environment",
                    "DEVICE_SERIAL_NUMBER",
                    "is not set; set it (e.g. in /etc/default/tolomeo) or pass --serial",
                ));
            }
        },
    };
    let name = ServiceName::new(spec.name).map_err(|e| ConfigError::one("service", "name", e))?;
    let mut settings = Settings::new(name, serial);
    settings.version = spec.version.to_string();
    settings.default_poll_time = spec.default_poll_time;
    settings.service = config.service.clone();
    settings.nats = config.nats.clone();
    Ok(Loaded {
        settings,
        config,
        source,
        problems,
    })
}

/// Logs to stderr; without timestamps and colours under systemd (the journal adds its own).
fn init_logging(flag: Option<&str>) {
    use std::str::FromStr;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;
    let spec = flag
        .map(str::to_string)
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".into());
    let filter = Targets::from_str(&spec)
        .unwrap_or_else(|e| {
            eprintln!("invalid log filter {spec:?} ({e}); using `info`");
            Targets::new().with_default(tracing::Level::INFO)
        })
        // async-nats reports every connection event at info; the service logs its own.
        .with_target("async_nats", tracing::Level::WARN);
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(!journal && std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if journal {
        registry.with(fmt.without_time()).try_init()
    } else {
        registry.with(fmt).try_init()
    };
}

/// Cancel `shutdown` on the first SIGINT or SIGTERM; exit at once on a second one.
async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop the service with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    shutdown.cancel();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::warn!("second signal: exiting without delivering what is held");
    std::process::exit(130);
}
