//! The platform walkthrough in Rust: a temperature plugin on a simulated sensor, its service
//! with a 30 s default poll, and a `TempUnitCmd` command.
//!
//! Run it against a local broker:
//!
//! ```text
//! DEVICE_SERIAL_NUMBER=SN123456 cargo run -p tolomeo-core --example temp_service -- --poll-time-ms 1000
//! ```
//!
//! Python walkthrough -> Rust:
//! - `Metric(...)` in `Meta.out_metrics`  -> `SensorPlugin::metrics`
//! - `Meta.commands = [TempUnitCmd]`      -> `SensorPlugin::commands`
//! - `PluginCmd.execute` returning a dict -> `Command::execute` returning `output!({...})`
//! - `SingleSensorService(plugin_class, poll_time_ms)` -> `cli::main(spec, build)`
//!
//! The sensor is simulated: a slow random walk around 21 °C. `SimulateFault` lets tests and
//! demos unplug it or make it misbehave.

use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tolomeo_core::config::{PluginConfig, Problem};
use tolomeo_core::{
    ArgInfo, BuildContext, Command, CommandContext, CommandError, CommandResult, ConfigError, Health, Metric,
    PluginError, Reading, SensorPlugin, async_trait, cli, output,
};

/// `[temp]` in the configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TempConfig {
    /// Unit of `temp:temperature`: "C" (published as `Cel`) or "F" (published as `degF`).
    unit: String,
    /// Where the simulated sensor starts, in °C.
    start_celsius: f64,
    /// May `TempUnitCmd` change the unit? (`forbidden` otherwise.)
    allow_unit_change: bool,
}

impl Default for TempConfig {
    fn default() -> Self {
        TempConfig {
            unit: "C".into(),
            start_celsius: 21.0,
            allow_unit_change: true,
        }
    }
}

impl PluginConfig for TempConfig {
    const SECTION: &'static str = "temp";
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Unit {
    Celsius,
    Fahrenheit,
}

fn parse_unit(s: &str) -> Option<Unit> {
    match s {
        "C" => Some(Unit::Celsius),
        "F" => Some(Unit::Fahrenheit),
        _ => None,
    }
}

/// `build` for `cli::main`: checks `[temp]` and makes the plugin, in one call. Every problem is
/// reported, keys relative to the section; `cli::main` adds the file and `temp.`.
fn build(cfg: &TempConfig, _ctx: &BuildContext) -> Result<TempPlugin, ConfigError> {
    let mut problems = Vec::new();
    let unit = parse_unit(&cfg.unit);
    if unit.is_none() {
        problems.push(Problem::new(
            "unit",
            format!("{:?} is not a unit, expected \"C\" or \"F\"", cfg.unit),
        ));
    }
    if !(-50.0..=150.0).contains(&cfg.start_celsius) {
        problems.push(Problem::new(
            "start_celsius",
            format!("{} is out of range, expected -50 to 150", cfg.start_celsius),
        ));
    }
    match unit {
        Some(unit) if problems.is_empty() => Ok(TempPlugin {
            state: Mutex::new(State {
                allow_unit_change: cfg.allow_unit_change,
                unit,
                celsius: cfg.start_celsius,
                fault: Fault::None,
                seed: 0x9E37_79B9_7F4A_7C15,
            }),
        }),
        _ => Err(ConfigError {
            source: "[temp]".into(),
            problems,
        }),
    }
}

/// What the simulated sensor does wrong, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Fault {
    None,
    /// The sensor is gone: unhealthy, no samples.
    Unplugged,
    /// It reads NaN.
    Nan,
    /// It reports a metric nobody declared.
    Undeclared,
}

struct State {
    allow_unit_change: bool,
    unit: Unit,
    celsius: f64,
    fault: Fault,
    seed: u64,
}

/// The plugin: one simulated thermometer.
struct TempPlugin {
    state: Mutex<State>,
}

impl TempPlugin {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl SensorPlugin for TempPlugin {
    fn id(&self) -> &str {
        "temp"
    }

    fn metrics(&self) -> Vec<Metric> {
        let unit = match self.state().unit {
            Unit::Celsius => "Cel",
            Unit::Fahrenheit => "degF",
        };
        vec![
            Metric::number("temperature").unit(unit).display_name("Temperature"),
            Metric::number("samples")
                .unit("count")
                .incremental()
                .display_name("Samples taken"),
        ]
    }

    fn commands(&self) -> Vec<Box<dyn Command<Self>>> {
        vec![Box::new(TempUnitCmd), Box::new(Calibrate), Box::new(SimulateFault)]
    }

    fn health(&self) -> Health {
        match self.state().fault {
            Fault::Unplugged => Health::unhealthy("sensor unplugged (simulated)"),
            _ => Health::healthy("sensor answering"),
        }
    }

    async fn sample(&self, reading: &mut Reading) -> Result<(), PluginError> {
        let mut s = self.state();
        // xorshift: a deterministic random walk of at most ±0.1 °C per sample.
        s.seed ^= s.seed << 13;
        s.seed ^= s.seed >> 7;
        s.seed ^= s.seed << 17;
        s.celsius += (s.seed % 201) as f64 / 1000.0 - 0.1;
        let value = match s.unit {
            Unit::Celsius => s.celsius,
            Unit::Fahrenheit => s.celsius * 9.0 / 5.0 + 32.0,
        };
        match s.fault {
            Fault::Unplugged => return Err(PluginError::new("sensor unplugged (simulated)")),
            Fault::Nan => reading.push("temperature", f64::NAN),
            Fault::Undeclared => reading.push("humidity", 40.0),
            Fault::None => reading.push("temperature", (value * 100.0).round() / 100.0),
        }
        let n = SAMPLES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        reading.push("samples", n);
        Ok(())
    }
}

static SAMPLES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// `TempUnitCmd {"unit": "C" | "F"}`: switch the unit; the new metric set is announced.
struct TempUnitCmd;

#[async_trait]
impl Command<TempPlugin> for TempUnitCmd {
    fn name(&self) -> &str {
        "TempUnitCmd"
    }
    // What `GetCommands` lists, and `tlm cmd temp-example` shows.
    fn description(&self) -> &str {
        "Switches the temperature unit; the new metric set is announced at once"
    }
    fn args(&self) -> Vec<ArgInfo> {
        vec![ArgInfo::string("unit", "C for Celsius, F for Fahrenheit").choices(["C", "F"])]
    }
    async fn execute(&self, ctx: CommandContext<'_, TempPlugin>) -> CommandResult {
        let text: String = ctx.arg("unit")?;
        let unit = parse_unit(&text).ok_or_else(|| {
            CommandError::invalid_payload(format!("argument `unit`: {text:?}, expected \"C\" or \"F\""))
        })?;
        {
            let mut state = ctx.plugin.state();
            if !state.allow_unit_change {
                return Err(CommandError::forbidden(
                    "the configuration does not allow changing the unit ([temp] allow_unit_change = false)",
                ));
            }
            state.unit = unit;
        }
        ctx.service
            .set_metrics(ctx.plugin.metrics())
            .map_err(|e| CommandError::failed(e.to_string()))?;
        Ok(output!({ "message": format!("unit set to {text}"), "unit": text }))
    }
}

/// `Calibrate {"seconds": 0..60}`: a slow command (the simulated sensor settles).
struct Calibrate;

#[async_trait]
impl Command<TempPlugin> for Calibrate {
    fn name(&self) -> &str {
        "Calibrate"
    }
    fn description(&self) -> &str {
        "Lets the simulated sensor settle (a slow command)"
    }
    fn args(&self) -> Vec<ArgInfo> {
        vec![
            ArgInfo::number("seconds", "how long, in s (default 1)")
                .range(0, 60)
                .optional(),
        ]
    }
    async fn execute(&self, ctx: CommandContext<'_, TempPlugin>) -> CommandResult {
        let seconds: f64 = ctx.opt_arg("seconds")?.unwrap_or(1.0);
        if !(0.0..=60.0).contains(&seconds) {
            return Err(CommandError::invalid_payload("argument `seconds`: expected 0 to 60"));
        }
        if ctx.plugin.state().fault == Fault::Unplugged {
            return Err(CommandError::failed("cannot calibrate: the sensor does not answer"));
        }
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        Ok(output!({ "message": "calibrated", "seconds": seconds }))
    }
}

/// `SimulateFault {"fault": "none" | "unplugged" | "nan" | "undeclared"}`.
struct SimulateFault;

#[async_trait]
impl Command<TempPlugin> for SimulateFault {
    fn name(&self) -> &str {
        "SimulateFault"
    }
    fn description(&self) -> &str {
        "Makes the simulated sensor misbehave, to see what the service does"
    }
    fn args(&self) -> Vec<ArgInfo> {
        vec![ArgInfo::string("fault", "the fault to simulate").choices(["none", "unplugged", "nan", "undeclared"])]
    }
    async fn execute(&self, ctx: CommandContext<'_, TempPlugin>) -> CommandResult {
        let fault: Fault = ctx.arg("fault")?;
        ctx.plugin.state().fault = fault;
        Ok(output!({ "message": format!("simulating {fault:?}") }))
    }
}

fn main() -> ExitCode {
    let spec = cli::ServiceSpec {
        name: "temp-example",
        version: env!("CARGO_PKG_VERSION"),
        about: "Example ToloMEO service: a simulated temperature sensor",
        default_poll_time: Duration::from_secs(30),
    };
    cli::main(spec, build)
}
