//! The `[can]` configuration section and its sub-sections. Defaults live in the `Default`
//! impls, nowhere else.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tolomeo_core::config::{PluginConfig, Problem};

/// `[can]`: where frames come from and what is decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CanConfig {
    /// SocketCAN interface to read (when `replay` is not set). Missing or down: heartbeat
    /// stopped until it is up again (see `socketcan_source`).
    pub interface: String,
    /// A `candump -L` log to replay instead of reading a bus.
    pub replay: Option<PathBuf>,
    /// Replay speed: 1.0 = real time from the log's timestamps, N = N times faster, "max" = as
    /// fast as possible. Below 1.0 the published time is the wall clock instead of the log's.
    pub replay_speed: ReplaySpeed,
    /// Start the log again at its end (timestamps shifted so that time keeps increasing).
    pub replay_loop: bool,
    /// "log": publish the times the log recorded; "now": the time each frame is replayed, as
    /// if the recording were live (needs a `replay_speed` factor).
    pub replay_clock: ReplayClock,
    /// "j1939": decode EEC1 broadcasts. "obd2": request PIDs on 0x7DF every poll period.
    pub mode: Mode,
    /// J1939: only decode frames from this source address (0 to 253); any address when absent.
    pub source_address: Option<u8>,
    /// J1939: common engine parameters to decode besides EEC1, by metric name (no DBC needed):
    /// "engine:coolant_temp", "engine:oil_pressure", "engine:fuel_rate", "vehicle:speed",
    /// "engine:accelerator_pedal", "engine:load", "engine:total_hours",
    /// "electrical:battery_voltage", "ambient:air_temp"; or ["all"].
    pub parameters: Vec<String>,
    /// J1939: source addresses whose DM1 (active diagnostic trouble codes) is read, e.g. [0]
    /// for engine #1: lamps and the number of active DTCs as metrics `ecu<sa>:...`, each DTC
    /// that becomes active or is cleared as a string record `ecu<sa>:dtc`; `GetFaults` lists them.
    pub dm1_sources: Vec<u8>,
    /// A DBC file whose `signals` are decoded too.
    pub dbc: Option<PathBuf>,
    /// Signals of `dbc` to publish: "Signal" or "Message.Signal". Published as `<message>:<signal>`
    /// (or `<dbc_group>:<signal>`).
    pub signals: Vec<String>,
    /// Group (the part before `:`) of DBC metric names instead of the message name.
    pub dbc_group: Option<String>,
    /// Default aggregation of every metric over a poll period: "mean", "last", "min", "max", or
    /// "none" (every frame, with its own timestamp).
    pub aggregate: Aggregate,
    /// Extra statistics of every aggregated metric, published as `<metric>:min` / `<metric>:max`.
    pub stats: Vec<Stat>,
    /// Per-metric overrides, keyed by metric name: `[can.metrics."engine:rpm"]`.
    pub metrics: BTreeMap<String, MetricOptions>,
    /// No frame for this long (ms) is reported in `GetStatus`' detail; the heartbeat goes on.
    pub stale_after_ms: u64,
    /// OBD-II settings (used when `mode = "obd2"`).
    pub obd2: Obd2Config,
}

impl Default for CanConfig {
    fn default() -> Self {
        CanConfig {
            interface: "can0".into(),
            replay: None,
            replay_speed: ReplaySpeed::Factor(1.0),
            replay_loop: false,
            replay_clock: ReplayClock::Log,
            mode: Mode::J1939,
            source_address: None,
            parameters: Vec::new(),
            dm1_sources: Vec::new(),
            dbc: None,
            signals: Vec::new(),
            dbc_group: None,
            aggregate: Aggregate::Mean,
            stats: Vec::new(),
            metrics: BTreeMap::new(),
            stale_after_ms: 5_000,
            obd2: Obd2Config::default(),
        }
    }
}

/// `[can.obd2]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Obd2Config {
    /// PIDs requested every poll period besides 0x0C (engine speed): 0x04 load, 0x05 coolant
    /// temperature, 0x0D vehicle speed.
    pub pids: Vec<u8>,
    /// How long to wait for a reply, in ms; a request without a reply is counted in `obd:timeouts`.
    pub timeout_ms: u64,
}

impl Default for Obd2Config {
    fn default() -> Self {
        Obd2Config {
            pids: Vec::new(),
            timeout_ms: 250,
        }
    }
}

/// `[can.metrics."<name>"]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricOptions {
    /// Aggregation of this metric (default: `[can] aggregate`).
    pub aggregate: Option<Aggregate>,
    /// Extra statistics of this metric (default: `[can] stats`).
    pub stats: Option<Vec<Stat>>,
}

/// How the values of one poll period become one point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregate {
    /// Arithmetic mean.
    Mean,
    /// The last value.
    Last,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// Every value, with its frame's timestamp.
    None,
}

/// An extra statistic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stat {
    /// `<metric>:min`.
    Min,
    /// `<metric>:max`.
    Max,
}

/// What is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// J1939 EEC1 broadcasts.
    J1939,
    /// OBD-II request/response.
    Obd2,
}

/// `replay_clock`: which time a replayed frame is published with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplayClock {
    /// The log's own timestamps.
    Log,
    /// The wall clock when the frame is replayed.
    Now,
}

/// `replay_speed`: a factor or "max".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReplaySpeed {
    /// 1.0 = real time.
    Factor(f64),
    /// "max".
    Named(String),
}

impl ReplaySpeed {
    /// The factor, `None` for "max".
    pub fn factor(&self) -> Option<f64> {
        match self {
            ReplaySpeed::Factor(f) => Some(*f),
            ReplaySpeed::Named(_) => None,
        }
    }
}

impl PluginConfig for CanConfig {
    const SECTION: &'static str = "can";

    fn absent_now(&self) -> Vec<Problem> {
        let live = self.replay.is_none();
        if live && crate::socketcan_source::link_up(&self.interface).is_none() {
            return vec![Problem::new(
                "interface",
                format!("there is no network interface {:?} now", self.interface),
            )];
        }
        Vec::new()
    }
}

impl CanConfig {
    /// Every problem of the section's own values (ranges, names, what goes together), keys
    /// relative to `[can]`. [`crate::CanEngine::new`] checks with it, then reads the DBC file
    /// and builds the pipeline.
    pub(crate) fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        match &self.replay_speed {
            ReplaySpeed::Factor(f) if !(f.is_finite() && *f > 0.0) => out.push(Problem::new(
                "replay_speed",
                format!("{f} is not a positive number or \"max\""),
            )),
            ReplaySpeed::Named(s) if s != "max" => out.push(Problem::new(
                "replay_speed",
                format!("{s:?}: expected a positive number or \"max\""),
            )),
            ReplaySpeed::Named(_) if self.replay_clock == ReplayClock::Now => out.push(Problem::new(
                "replay_clock",
                "\"now\" with replay_speed = \"max\": frames come faster than the clock; expected a replay_speed factor, or replay_clock = \"log\"",
            )),
            _ => {}
        }
        if self.replay.is_none() && (self.interface.is_empty() || self.interface.len() > 15) {
            out.push(Problem::new(
                "interface",
                format!("{:?}: expected an interface name of 1 to 15 characters", self.interface),
            ));
        }
        if let Some(a) = self.source_address.filter(|a| *a > 253) {
            out.push(Problem::new(
                "source_address",
                format!("{a} is out of range, expected a J1939 address 0 to 253"),
            ));
        }
        if !self.signals.is_empty() && self.dbc.is_none() {
            out.push(Problem::new(
                "signals",
                "signals are listed but no `dbc` file is configured",
            ));
        }
        if !(100..=86_400_000).contains(&self.stale_after_ms) {
            out.push(Problem::new(
                "stale_after_ms",
                format!(
                    "{} is out of range, expected 100 ms to 86,400,000 ms (one day)",
                    self.stale_after_ms
                ),
            ));
        }
        for (i, pid) in self.obd2.pids.iter().enumerate() {
            if crate::obd2::Pid::from_code(*pid).is_none() {
                out.push(Problem::new(
                    format!("obd2.pids[{i}]"),
                    format!("PID {pid:#04x} is not supported; expected 0x04, 0x05, 0x0C or 0x0D"),
                ));
            }
        }
        if !(10..=10_000).contains(&self.obd2.timeout_ms) {
            out.push(Problem::new(
                "obd2.timeout_ms",
                format!("{} is out of range, expected 10 to 10,000 ms", self.obd2.timeout_ms),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_snippet() {
        let cfg: CanConfig = toml::from_str(
            r#"
            replay = "data/engine.log"
            replay_speed = "max"
            stats = ["max"]
            [metrics."engine:rpm"]
            aggregate = "none"
            [obd2]
            pids = [5, 13]
            "#,
        )
        .unwrap();
        assert_eq!(cfg.replay_speed.factor(), None);
        assert_eq!(cfg.metrics["engine:rpm"].aggregate, Some(Aggregate::None));
        assert!(cfg.problems().is_empty());
        let bad: CanConfig = toml::from_str("replay_speed = \"fast\"\nsignals = [\"X\"]\n[obd2]\npids = [7]").unwrap();
        let keys: Vec<_> = bad.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["replay_speed", "signals", "obd2.pids[0]"]);
        assert!(toml::from_str::<CanConfig>("nope = 1").is_err());
        // The wall clock needs pacing.
        let now: CanConfig =
            toml::from_str("replay = \"x.log\"\nreplay_clock = \"now\"\nreplay_speed = \"max\"").unwrap();
        let problems = now.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "replay_clock");
        let paced: CanConfig =
            toml::from_str("replay = \"x.log\"\nreplay_clock = \"now\"\nreplay_speed = 2.0").unwrap();
        assert!(paced.problems().is_empty());
        let err = toml::from_str::<CanConfig>("replay_clock = \"wall\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected `log` or `now`"), "{err}");
    }
}
