//! The one decoder path: frames in, readings out. Synchronous and allocation-light, so that
//! the same code runs behind SocketCAN, replays and the in-process bus, and can be measured.
//!
//! [`Pipeline::handle`] decodes a frame (J1939 EEC1 and the common engine parameters, OBD-II
//! replies, DBC signals), counts
//! what it cannot use, and feeds each value to its metric's [`Aggregator`],
//! which emits one point per poll period (or every value with `aggregate = "none"`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tolomeo_core::config::Problem;
use tolomeo_core::{Metric, Reading};

use crate::aggregate::Aggregator;
use crate::config::{CanConfig, Mode};
use crate::dbc::{Dbc, Message, Signal, metric_name};
use crate::frame::{Frame, FrameKind};
use crate::j1939::{PARAMETERS, PGN_EEC1, Parameter, Spn, decode_eec1, split_id};
use crate::obd2::{self, Pid, Reply};
use crate::tp::{Reassembler, TpCounters};

/// Counters of what the bus delivered and what could not be used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Frames seen (data, remote, FD), `can:frames`.
    pub frames: u64,
    /// Error frames, `can:errors`.
    pub errors: u64,
    /// Malformed log lines + frames too short for their message + malformed OBD replies, `can:decode_errors`.
    pub decode_errors: u64,
    /// Log lines that are not frames (part of `decode_errors`).
    pub malformed_lines: u64,
    /// Frames shorter than their message (part of `decode_errors`).
    pub short_frames: u64,
    /// SPN values in the not-available / error / reserved range (never published).
    pub not_available: u64,
    /// CAN FD frames (skipped: no decoder reads FD).
    pub fd_frames: u64,
    /// Remote frames (skipped).
    pub remote_frames: u64,
    /// Data frames no decoder wanted (other PGNs or identifiers, other source addresses).
    pub ignored: u64,
    /// OBD-II requests without a reply within the timeout, `obd:timeouts`.
    pub obd_timeouts: u64,
    /// J1939 transport protocol: messages reassembled, and sessions or packets dropped by why.
    pub tp: TpCounters,
}

/// A metric the pipeline publishes.
#[derive(Debug)]
pub struct Slot {
    /// Its name (`engine:rpm`).
    pub name: String,
    /// Its unit ("" for none).
    pub unit: String,
    /// Aggregation state.
    pub agg: Aggregator,
    /// The latest value, its timestamp and when it arrived.
    pub latest: Option<(f64, f64, Instant)>,
}

struct DbcEntry {
    message: Message,
    signals: Vec<(Signal, usize)>,
    need: usize,
}

/// Decoders, aggregators and counters.
pub struct Pipeline {
    slots: Vec<Slot>,
    eec1: Option<[usize; 3]>,
    /// The J1939-71 parameters configured, each with its slot.
    parameters: Vec<(&'static Parameter, usize)>,
    source_address: Option<u8>,
    obd: HashMap<Pid, usize>,
    dbc: Vec<DbcEntry>,
    /// J1939 multi-packet messages, when a decoder wants one (a DBC message over 8 bytes).
    tp: Option<Reassembler>,
    /// The counters.
    pub counters: Counters,
    /// When the last frame arrived.
    pub last_frame: Option<Instant>,
    obd_timeouts_metric: bool,
    none_values: Reading,
}

impl Pipeline {
    /// Build from the configuration and the parsed DBC file (when `dbc` is configured).
    /// Problems name keys of the `[can]` section.
    pub fn new(cfg: &CanConfig, dbc: Option<&Dbc>, period: Duration) -> Result<Pipeline, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut p = Pipeline {
            slots: Vec::new(),
            eec1: None,
            parameters: Vec::new(),
            source_address: cfg.source_address,
            obd: HashMap::new(),
            dbc: Vec::new(),
            tp: None,
            counters: Counters::default(),
            last_frame: None,
            obd_timeouts_metric: cfg.mode == Mode::Obd2,
            none_values: Reading::at(0.0),
        };
        let add =
            |p: &mut Pipeline, problems: &mut Vec<Problem>, name: String, unit: &str, key: &str| -> Option<usize> {
                if p.slots.iter().any(|s| s.name == name) || name.starts_with("can:") || name.starts_with("obd:") {
                    problems.push(Problem::new(key, format!("metric {name:?} would be published twice")));
                    return None;
                }
                let opts = cfg.metrics.get(&name);
                let aggregate = opts.and_then(|o| o.aggregate).unwrap_or(cfg.aggregate);
                let stats = opts.and_then(|o| o.stats.clone()).unwrap_or_else(|| cfg.stats.clone());
                p.slots.push(Slot {
                    name,
                    unit: unit.to_string(),
                    agg: Aggregator::new(aggregate, &stats, period),
                    latest: None,
                });
                Some(p.slots.len() - 1)
            };
        match cfg.mode {
            Mode::J1939 => {
                let rpm = add(&mut p, &mut problems, "engine:rpm".into(), "rpm", "mode");
                let tq = add(&mut p, &mut problems, "engine:torque_pct".into(), "%", "mode");
                let dem = add(&mut p, &mut problems, "engine:demand_torque_pct".into(), "%", "mode");
                if let (Some(a), Some(b), Some(c)) = (rpm, tq, dem) {
                    p.eec1 = Some([a, b, c]);
                }
                let all = cfg.parameters.iter().any(|n| n == "all");
                for (i, name) in cfg.parameters.iter().enumerate() {
                    let key = format!("parameters[{i}]");
                    if name == "all" {
                        continue;
                    }
                    match Parameter::by_metric(name) {
                        Some(_) if all => {}
                        Some(param) => {
                            if let Some(slot) = add(&mut p, &mut problems, name.clone(), param.unit, &key) {
                                p.parameters.push((param, slot));
                            }
                        }
                        None => {
                            let known: Vec<&str> = PARAMETERS.iter().map(|x| x.metric).collect();
                            problems.push(Problem::new(
                                key,
                                format!(
                                    "no built-in parameter {name:?}; expected one of {} or \"all\"",
                                    known.join(", ")
                                ),
                            ));
                        }
                    }
                }
                if all {
                    for param in &PARAMETERS {
                        if let Some(slot) = add(&mut p, &mut problems, param.metric.into(), param.unit, "parameters") {
                            p.parameters.push((param, slot));
                        }
                    }
                }
            }
            Mode::Obd2 => {
                if !cfg.parameters.is_empty() {
                    problems.push(Problem::new(
                        "parameters",
                        "the built-in J1939 parameters are decoded with mode = \"j1939\"; remove them or change the mode",
                    ));
                }
                let mut pids = vec![Pid::Rpm];
                pids.extend(cfg.obd2.pids.iter().filter_map(|c| Pid::from_code(*c)));
                for pid in pids {
                    if p.obd.contains_key(&pid) {
                        continue;
                    }
                    let (name, unit) = pid.metric();
                    if let Some(i) = add(&mut p, &mut problems, name.into(), unit, "obd2.pids") {
                        p.obd.insert(pid, i);
                    }
                }
            }
        }
        if let Some(dbc) = dbc {
            for (i, spec) in cfg.signals.iter().enumerate() {
                let key = format!("signals[{i}]");
                let (msg, sig) = match dbc.find(spec) {
                    Ok(x) => x,
                    Err(e) => {
                        problems.push(Problem::new(key, e));
                        continue;
                    }
                };
                let group = cfg.dbc_group.as_deref().unwrap_or(&msg.name);
                let Some(slot) = add(&mut p, &mut problems, metric_name(group, &sig.name), &sig.unit, &key) else {
                    continue;
                };
                let need = sig_bytes(sig);
                let entry = match p.dbc.iter_mut().position(|e| e.message.name == msg.name) {
                    Some(j) => &mut p.dbc[j],
                    None => {
                        let mut m = msg.clone();
                        m.signals.clear();
                        p.dbc.push(DbcEntry {
                            message: m,
                            signals: Vec::new(),
                            need: 0,
                        });
                        let last = p.dbc.len() - 1;
                        &mut p.dbc[last]
                    }
                };
                entry.need = entry.need.max(need);
                entry.signals.push((sig.clone(), slot));
            }
        }
        if p.dbc.iter().any(|e| e.message.extended && e.message.dlc > 8) {
            p.tp = Some(Reassembler::default());
        }
        for name in cfg.metrics.keys() {
            if !p.slots.iter().any(|s| &s.name == name) {
                let known: Vec<&str> = p.slots.iter().map(|s| s.name.as_str()).collect();
                problems.push(Problem::new(
                    format!("metrics.\"{name}\""),
                    format!("no such metric; this configuration publishes {}", known.join(", ")),
                ));
            }
        }
        if problems.is_empty() { Ok(p) } else { Err(problems) }
    }

    /// The metrics to declare: decoded values, their statistics, the bus counters.
    pub fn metrics(&self) -> Vec<Metric> {
        let mut out = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            let m = |name: String| {
                let m = Metric::number(name);
                if s.unit.is_empty() { m } else { m.unit(s.unit.clone()) }
            };
            // A built-in J1939 parameter says what it is: "Engine coolant temperature (SPN 110)".
            match self.parameters.iter().find(|(_, slot)| *slot == i) {
                Some((param, _)) => {
                    out.push(m(s.name.clone()).display_name(format!("{} (SPN {})", param.label, param.spn)))
                }
                None => out.push(m(s.name.clone())),
            }
            for suffix in s.agg.stat_suffixes() {
                out.push(m(format!("{}:{suffix}", s.name)));
            }
        }
        for (name, label) in [
            ("can:frames", "CAN frames received"),
            ("can:errors", "CAN error frames"),
            ("can:decode_errors", "CAN frames or log lines that could not be decoded"),
        ] {
            out.push(Metric::number(name).unit("count").incremental().display_name(label));
        }
        if self.obd_timeouts_metric {
            out.push(
                Metric::number("obd:timeouts")
                    .unit("count")
                    .incremental()
                    .display_name("OBD-II requests without a reply"),
            );
        }
        out
    }

    /// The parameter groups of the built-in J1939 parameters configured, each once.
    pub fn parameter_groups(&self) -> Vec<u32> {
        let mut pgns: Vec<u32> = self.parameters.iter().map(|(p, _)| p.pgn).collect();
        pgns.sort_unstable();
        pgns.dedup();
        pgns
    }

    /// Whether J1939 transport protocol frames are read (a DBC message is longer than 8 bytes).
    pub fn reads_tp(&self) -> bool {
        self.tp.is_some()
    }

    /// Identifiers of the DBC messages decoded, and whether they are extended.
    pub fn dbc_ids(&self) -> Vec<(u32, bool)> {
        self.dbc.iter().map(|e| (e.message.id, e.message.extended)).collect()
    }

    /// The metrics, latest values and counters.
    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The poll period changed: new aggregation windows.
    pub fn set_period(&mut self, period: Duration, out: &mut Vec<Reading>) {
        for s in &mut self.slots {
            s.agg.set_period(period, &s.name, out);
        }
    }

    /// Count log lines that were not frames.
    pub fn malformed_lines(&mut self, n: u64) {
        self.counters.malformed_lines += n;
        self.counters.decode_errors += n;
    }

    /// Decode one frame; finished points go to `out`. Returns the OBD-II value it carried.
    pub fn handle(&mut self, frame: &Frame, now: Instant, out: &mut Vec<Reading>) -> Option<(Pid, f64)> {
        let c = &mut self.counters;
        match frame.kind {
            FrameKind::Error => {
                c.errors += 1;
                return None;
            }
            FrameKind::Remote => {
                c.frames += 1;
                c.remote_frames += 1;
                self.last_frame = Some(now);
                return None;
            }
            FrameKind::Fd => {
                c.frames += 1;
                c.fd_frames += 1;
                self.last_frame = Some(now);
                return None;
            }
            FrameKind::Data => {}
        }
        c.frames += 1;
        self.last_frame = Some(now);
        let t = frame.time();
        let data = frame.payload();
        let mut used = false;
        let mut short = false;
        let mut obd_value = None;
        if frame.extended {
            let id = split_id(frame.id);
            let from_source = self.source_address.is_none_or(|a| a == id.source);
            if let Some(tp) = &mut self.tp
                && Reassembler::is_tp(id.pgn)
                && from_source
            {
                used = true;
                let message = tp.handle(id, data, frame.time_us);
                self.counters.tp = tp.counters;
                if let Some(m) = message {
                    // The identifier the message would have had as one frame.
                    let ps = if (m.pgn >> 8) & 0xFF < 240 {
                        u32::from(m.destination) << 8
                    } else {
                        0
                    };
                    let whole = (u32::from(m.priority) << 26) | (m.pgn << 8) | ps | u32::from(m.source);
                    let (_, too_short) = self.decode_dbc(whole, true, &m.data, t, now, out);
                    short |= too_short;
                }
            }
            for k in 0..self.parameters.len() {
                let (param, slot) = self.parameters[k];
                if param.pgn != id.pgn || !from_source {
                    continue;
                }
                used = true;
                match param.decode(data) {
                    None => short = true,
                    Some(Spn::Value(v)) => self.record(slot, t, v, now, out),
                    Some(Spn::NotAvailable) => self.counters.not_available += 1,
                }
            }
            if let Some([rpm, tq, dem]) = self.eec1
                && id.pgn == PGN_EEC1
                && from_source
            {
                used = true;
                match decode_eec1(data) {
                    None => short = true,
                    Some(e) => {
                        for (slot, spn) in [(rpm, e.rpm), (tq, e.torque_pct), (dem, e.demand_torque_pct)] {
                            match spn {
                                Spn::Value(v) => self.record(slot, t, v, now, out),
                                Spn::NotAvailable => self.counters.not_available += 1,
                            }
                        }
                    }
                }
            }
        } else if !self.obd.is_empty() && obd2::is_reply(frame) {
            used = true;
            match obd2::decode_reply(data) {
                Reply::Value(pid, v) => {
                    if let Some(&slot) = self.obd.get(&pid) {
                        self.record(slot, t, v, now, out);
                    }
                    obd_value = Some((pid, v));
                }
                Reply::Unsupported(_) => {}
                Reply::Malformed => self.counters.decode_errors += 1,
            }
        }
        let (dbc_used, dbc_short) = self.decode_dbc(frame.id, frame.extended, data, t, now, out);
        used |= dbc_used;
        short |= dbc_short;
        if short {
            // Counted once per frame, however many decoders wanted it.
            self.counters.decode_errors += 1;
            self.counters.short_frames += 1;
        }
        if !used {
            self.counters.ignored += 1;
        }
        if !self.none_values.is_empty() {
            out.push(std::mem::replace(&mut self.none_values, Reading::at(0.0)));
        }
        obd_value
    }

    /// The DBC messages matching `id`: their signals decoded from `data`. Returns whether one
    /// matched, and whether `data` was too short for one.
    fn decode_dbc(
        &mut self,
        id: u32,
        extended: bool,
        data: &[u8],
        t: f64,
        now: Instant,
        out: &mut Vec<Reading>,
    ) -> (bool, bool) {
        let (mut used, mut short) = (false, false);
        for i in 0..self.dbc.len() {
            let e = &self.dbc[i];
            if !e.message.matches(id, extended) {
                continue;
            }
            used = true;
            if data.len() < e.need {
                short = true;
                continue;
            }
            for j in 0..self.dbc[i].signals.len() {
                let (sig, slot) = &self.dbc[i].signals[j];
                let slot = *slot;
                if let Some(v) = sig.decode(data) {
                    self.record(slot, t, v, now, out);
                }
            }
        }
        (used, short)
    }

    fn record(&mut self, slot: usize, t: f64, v: f64, now: Instant, out: &mut Vec<Reading>) {
        let Some(s) = self.slots.get_mut(slot) else { return };
        s.latest = Some((v, t, now));
        if s.agg.is_none() {
            if self.none_values.time() != t {
                if !self.none_values.is_empty() {
                    out.push(std::mem::replace(&mut self.none_values, Reading::at(t)));
                } else {
                    self.none_values = Reading::at(t);
                }
            }
            self.none_values.push(s.name.clone(), v);
        } else {
            s.agg.push(t, v, &s.name, out);
        }
    }

    /// Close every open aggregation window (the bus went quiet, or shutdown).
    pub fn flush(&mut self, out: &mut Vec<Reading>) {
        for s in &mut self.slots {
            s.agg.flush(&s.name, out);
        }
    }

    /// The bus counters as one reading at `t`.
    pub fn counter_reading(&self, t: f64) -> Reading {
        let c = &self.counters;
        let mut r = Reading::at(t)
            .with("can:frames", c.frames)
            .with("can:errors", c.errors)
            .with("can:decode_errors", c.decode_errors);
        if self.obd_timeouts_metric {
            r.push("obd:timeouts", c.obd_timeouts);
        }
        r
    }
}

/// Bytes a frame needs to carry `sig`.
fn sig_bytes(sig: &Signal) -> usize {
    let start = sig.start as usize;
    let len = sig.len as usize;
    if sig.little_endian {
        (start + len).div_ceil(8)
    } else {
        // Motorola: walk from the MSB to the LSB in sawtooth numbering.
        let msb_linear = (start / 8) * 8 + (7 - start % 8);
        (msb_linear + len).div_ceil(8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arbitrary_frames_never_panic() {
        let dbc = Dbc::parse(
            "BO_ 2364540158 EEC1: 8 E\n SG_ S : 24|16@1+ (0.125,0) [0|0] \"rpm\" X\n\
             BO_ 291 B: 8 E\n SG_ M : 63|64@0- (1,0) [0|0] \"\" X\n SG_ I : 0|64@1- (1,0) [0|0] \"\" X\n",
        )
        .unwrap();
        for mode in ["j1939", "obd2"] {
            let cfg: CanConfig = toml::from_str(&format!(
                "mode = {mode:?}\ndbc = \"x.dbc\"\nsignals = [\"S\", \"M\", \"I\"]\nstats = [\"min\", \"max\"]"
            ))
            .unwrap();
            let mut p = Pipeline::new(&cfg, Some(&dbc), Duration::from_millis(100)).unwrap();
            let mut out = Vec::new();
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            let now = Instant::now();
            for i in 0..20_000i64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let bytes = x.to_le_bytes();
                let len = (x >> 60) as usize % 9;
                let kind = [
                    FrameKind::Data,
                    FrameKind::Data,
                    FrameKind::Fd,
                    FrameKind::Remote,
                    FrameKind::Error,
                ][(x >> 40) as usize % 5];
                let ids = [0x0CF0_0400, 0x7E8, 0x123, x as u32];
                let id = ids[(x >> 20) as usize % 4];
                let f = Frame::new(i * 1000 + 1, id, x & 1 == 0, kind, &bytes[..len]);
                p.handle(&f, now, &mut out);
            }
            p.flush(&mut out);
            for r in &out {
                for (_, v) in r.values() {
                    assert!(matches!(v, tolomeo_core::Value::Number(n) if n.is_finite()));
                }
            }
            assert_eq!(p.counters.frames + p.counters.errors, 20_000);
        }
    }

    /// The built-in parameters through the whole pipeline, every frame published as it came
    /// (`aggregate = "none"`): values by J1939-71's scaling written out, frames from another
    /// source address ignored, not-available values counted and never published.
    #[test]
    fn built_in_parameters_end_to_end() {
        let cfg: CanConfig =
            toml::from_str("parameters = [\"all\"]\nsource_address = 0\naggregate = \"none\"").unwrap();
        let mut p = Pipeline::new(&cfg, None, Duration::from_secs(1)).unwrap();
        let names: Vec<&str> = p.slots().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names.len(), 3 + 9, "{names:?}");
        let now = Instant::now();
        let mut out = Vec::new();
        let frames: [(u32, [u8; 8]); 7] = [
            // ET1 from address 0: 0x7B - 40 = 83 degC.
            (0x18FE_EE00, [0x7B, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            // CCVS: 0x5800 / 256 = 88 km/h.
            (0x18FE_F100, [0xFF, 0x00, 0x58, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            // EEC2: pedal 0x7D x 0.4 = 50 %, load 0xFF not available.
            (0x0CF0_0300, [0xFF, 0x7D, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            // VEP1: 0x0118 = 280, x 0.05 = 14 V.
            (0x18FE_F700, [0xFF, 0xFF, 0xFF, 0xFF, 0x18, 0x01, 0xFF, 0xFF]),
            // ET1 from address 0x31: not the configured source.
            (0x18FE_EE31, [0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            // LFE: 0x0000 = 0 l/h (zero is a value, not "not available").
            (0x18FE_F200, [0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            // AMB: 0x2560 = 9568, x 0.03125 - 273 = 26 degC.
            (0x18FE_F500, [0xFF, 0xFF, 0xFF, 0x60, 0x25, 0xFF, 0xFF, 0xFF]),
        ];
        for (i, (id, data)) in frames.iter().enumerate() {
            p.handle(
                &Frame::new(i as i64 * 1000, *id, true, FrameKind::Data, data),
                now,
                &mut out,
            );
        }
        // A VEP1 frame too short for bytes 5-6.
        p.handle(
            &Frame::new(9000, 0x18FE_F700, true, FrameKind::Data, &[0xFF; 4]),
            now,
            &mut out,
        );
        let got: Vec<(String, f64)> = out
            .iter()
            .flat_map(|r| r.values().iter())
            .map(|(n, v)| match v {
                tolomeo_core::Value::Number(x) => (n.clone(), *x),
                other => panic!("{n}: {other:?}"),
            })
            .collect();
        let want = [
            ("engine:coolant_temp", 83.0),
            ("vehicle:speed", 88.0),
            ("engine:accelerator_pedal", 50.0),
            ("electrical:battery_voltage", 14.0),
            ("engine:fuel_rate", 0.0),
            ("ambient:air_temp", 26.0),
        ];
        let want: Vec<(String, f64)> = want.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        assert_eq!(got, want);
        assert_eq!(p.counters.not_available, 1, "EEC2's load");
        assert_eq!(p.counters.ignored, 1, "the frame from 0x31");
        assert_eq!((p.counters.short_frames, p.counters.decode_errors), (1, 1));
    }

    #[test]
    fn unknown_parameters_and_the_wrong_mode_are_refused_by_key() {
        let cfg: CanConfig = toml::from_str("parameters = [\"engine:coolant_temp\", \"engine:oil_temp\"]").unwrap();
        let problems = Pipeline::new(&cfg, None, Duration::from_secs(1)).err().unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "parameters[1]");
        assert!(
            problems[0].message.contains("\"engine:oil_temp\"") && problems[0].message.contains("engine:fuel_rate")
        );
        let cfg: CanConfig = toml::from_str("mode = \"obd2\"\nparameters = [\"all\"]").unwrap();
        let problems = Pipeline::new(&cfg, None, Duration::from_secs(1)).err().unwrap();
        assert_eq!(problems[0].key, "parameters", "{problems:?}");
    }
}
