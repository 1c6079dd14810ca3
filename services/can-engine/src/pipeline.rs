//! The one decoder path: frames in, readings out. Synchronous and allocation-light, so that
//! the same code runs behind SocketCAN, replays and the in-process bus, and can be measured.
//!
//! [`Pipeline::handle`] decodes a frame (J1939 EEC1 and the common engine parameters, OBD-II
//! replies, DBC signals), counts
//! what it cannot use, and feeds each value to its metric's [`Aggregator`],
//! which emits one point per poll period (or every value with `aggregate = "none"`).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use tolomeo_core::config::Problem;
use tolomeo_core::{Metric, Reading};

use crate::aggregate::Aggregator;
use crate::config::{CanConfig, Mode};
use crate::dbc::{Dbc, Message, Signal, metric_name};
use crate::dm1::{self, Dm1, Dtc, Lamps, PGN_DM1};
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
    /// CAN FD frames (decoded by DBC messages longer than 8 bytes, the others skipped).
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

/// The DM1 state of one source address: what `GetFaults` answers.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Faults {
    /// The lamps of the last DM1.
    pub lamps: Lamps,
    /// The DTCs active now, in the order they became active.
    pub active: Vec<ActiveFault>,
    /// When the last DM1 arrived (Unix seconds), none before the first.
    pub last_dm1_t: Option<f64>,
}

/// A DTC active now, and since when.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActiveFault {
    /// The DTC, as the last DM1 gave it (its occurrence count may grow).
    #[serde(flatten)]
    pub dtc: Dtc,
    /// When a DM1 first listed it (Unix seconds).
    pub first_seen: f64,
    /// When a DM1 last listed it.
    pub last_seen: f64,
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
    /// J1939 multi-packet messages, when a decoder wants one (DM1, a DBC message over 8 bytes).
    tp: Option<Reassembler>,
    /// DM1 state per source address read (`dm1_sources`).
    faults: BTreeMap<u8, Faults>,
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
            faults: BTreeMap::new(),
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
        for (i, &sa) in cfg.dm1_sources.iter().enumerate() {
            if cfg.mode != Mode::J1939 {
                problems.push(Problem::new("dm1_sources", "DM1 is read with mode = \"j1939\""));
                break;
            }
            if sa > 253 {
                problems.push(Problem::new(
                    format!("dm1_sources[{i}]"),
                    format!("{sa} is not a source address: expected 0 to 253"),
                ));
            } else {
                p.faults.insert(sa, Faults::default());
            }
        }
        if !p.faults.is_empty() || p.reads_long_dbc() {
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
        for sa in self.faults.keys() {
            let g = format!("ecu{sa}");
            out.push(
                Metric::number(format!("{g}:active_dtcs"))
                    .unit("count")
                    .display_name(format!("Active DTCs (DM1) of source address {sa}")),
            );
            for (field, label) in [
                ("mil", "malfunction indicator"),
                ("red_stop", "red stop"),
                ("amber_warning", "amber warning"),
                ("protect", "protect"),
            ] {
                out.push(
                    Metric::boolean(format!("{g}:{field}_lamp"))
                        .display_name(format!("{label} lamp of source address {sa}")),
                );
            }
            out.push(
                Metric::string(format!("{g}:dtc"))
                    .display_name(format!("DTC of source address {sa} that became active or was cleared")),
            );
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

    /// The DM1 state per source address read.
    pub fn faults(&self) -> &BTreeMap<u8, Faults> {
        &self.faults
    }

    /// Whether a DBC message is longer than 8 bytes (read through the transport protocol).
    pub fn reads_long_dbc(&self) -> bool {
        self.dbc.iter().any(|e| e.message.extended && e.message.dlc > 8)
    }

    /// Whether J1939 transport protocol frames are read (DM1, a DBC message over 8 bytes).
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
                // Only a DBC message longer than 8 bytes describes an FD frame.
                // (Counted in `fd_frames`, decoded or not.)
                let (_, short) =
                    self.decode_dbc(frame.id, frame.extended, frame.payload(), frame.time(), now, out, true);
                if short {
                    self.counters.decode_errors += 1;
                    self.counters.short_frames += 1;
                }
                if !self.none_values.is_empty() {
                    out.push(std::mem::replace(&mut self.none_values, Reading::at(0.0)));
                }
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
            let dm1_source = self.faults.contains_key(&id.source);
            if let Some(tp) = &mut self.tp
                && Reassembler::is_tp(id.pgn)
                && (from_source || dm1_source)
            {
                used = true;
                let message = tp.handle(id, data, frame.time_us);
                self.counters.tp = tp.counters;
                if let Some(m) = message {
                    if m.pgn == PGN_DM1 && self.faults.contains_key(&m.source) {
                        match dm1::decode(&m.data) {
                            Some(d) => self.apply_dm1(m.source, d, t, out),
                            None => short = true,
                        }
                    }
                    // The identifier the message would have had as one frame.
                    let ps = if (m.pgn >> 8) & 0xFF < 240 {
                        u32::from(m.destination) << 8
                    } else {
                        0
                    };
                    let whole = (u32::from(m.priority) << 26) | (m.pgn << 8) | ps | u32::from(m.source);
                    let (_, too_short) = self.decode_dbc(whole, true, &m.data, t, now, out, false);
                    short |= too_short;
                }
            }
            if id.pgn == PGN_DM1 && dm1_source {
                used = true;
                match dm1::decode(data) {
                    Some(d) => self.apply_dm1(id.source, d, t, out),
                    None => short = true,
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
        let (dbc_used, dbc_short) = self.decode_dbc(frame.id, frame.extended, data, t, now, out, false);
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

    /// A DM1 from `sa`: its lamps and DTC count as one reading, and one `ecu<sa>:dtc` record
    /// for each DTC that became active or was cleared since the last DM1.
    fn apply_dm1(&mut self, sa: u8, dm1: Dm1, t: f64, out: &mut Vec<Reading>) {
        let Some(f) = self.faults.get_mut(&sa) else { return };
        let g = format!("ecu{sa}");
        let mut r = Reading::at(t).with(format!("{g}:active_dtcs"), dm1.dtcs.len() as u64);
        for (field, lamp) in dm1.lamps.fields() {
            if let Some(on) = lamp {
                r.push(format!("{g}:{field}_lamp"), on);
            }
        }
        out.push(r);
        let same = |a: &Dtc, b: &Dtc| a.spn == b.spn && a.fmi == b.fmi;
        let event = |text: String| Reading::at(t).with(format!("{g}:dtc"), text);
        f.active.retain(|a| {
            let still = dm1.dtcs.iter().any(|d| same(d, &a.dtc));
            if !still {
                out.push(event(format!("cleared: SPN {} FMI {}", a.dtc.spn, a.dtc.fmi)));
            }
            still
        });
        for d in &dm1.dtcs {
            match f.active.iter_mut().find(|a| same(&a.dtc, d)) {
                Some(a) => {
                    a.dtc = *d;
                    a.last_seen = t;
                }
                None => {
                    out.push(event(format!(
                        "active: SPN {} FMI {} (occurrences {})",
                        d.spn, d.fmi, d.oc
                    )));
                    f.active.push(ActiveFault {
                        dtc: *d,
                        first_seen: t,
                        last_seen: t,
                    });
                }
            }
        }
        f.lamps = dm1.lamps;
        f.last_dm1_t = Some(t);
    }

    /// The DBC messages matching `id`: their signals decoded from `data`. Returns whether one
    /// matched, and whether `data` was too short for one. An FD frame (`fd`) is decoded only
    /// by messages longer than 8 bytes.
    #[allow(clippy::too_many_arguments)]
    fn decode_dbc(
        &mut self,
        id: u32,
        extended: bool,
        data: &[u8],
        t: f64,
        now: Instant,
        out: &mut Vec<Reading>,
        fd: bool,
    ) -> (bool, bool) {
        let (mut used, mut short) = (false, false);
        for i in 0..self.dbc.len() {
            let e = &self.dbc[i];
            if !e.message.matches(id, extended) || (fd && e.message.dlc <= 8) {
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

    /// DM1 (J1939-73) from engine #1 (source address 0), single-frame and multi-packet:
    /// lamps and DTC count per DM1, one record per DTC that becomes active or is cleared, and
    /// the state GetFaults answers with. DTC bytes laid out by hand: SPN low 8 bits, next 8,
    /// top 3 in bits 8-6 with the FMI in bits 5-1, then CM and the occurrence count.
    #[test]
    fn dm1_active_and_cleared_dtcs() {
        let cfg: CanConfig = toml::from_str("dm1_sources = [0]").unwrap();
        let mut p = Pipeline::new(&cfg, None, Duration::from_secs(1)).unwrap();
        let names: Vec<String> = p.metrics().iter().map(|m| m.name().to_string()).collect();
        for n in [
            "ecu0:active_dtcs",
            "ecu0:mil_lamp",
            "ecu0:amber_warning_lamp",
            "ecu0:dtc",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
        }
        let now = Instant::now();
        let mut out = Vec::new();
        let mut send = |p: &mut Pipeline, t_ms: i64, id: u32, data: &[u8]| {
            p.handle(&Frame::new(t_ms * 1000, id, true, FrameKind::Data, data), now, &mut out);
        };
        // 1 s: MIL on (0b01 in bits 8-7), SPN 110 FMI 0, OC 1.
        send(
            &mut p,
            1_000,
            0x18FE_CA00,
            &[0x40, 0xFF, 0x6E, 0x00, 0x00, 0x01, 0xFF, 0xFF],
        );
        // A DM1 from 0x03, which is not read.
        send(
            &mut p,
            1_100,
            0x18FE_CA03,
            &[0x40, 0xFF, 0x64, 0x00, 0x01, 0x01, 0xFF, 0xFF],
        );
        // 2 s: a BAM of 14 bytes (2 packets): amber on (0b01 in bits 4-3), SPN 110 FMI 0 OC 2,
        // SPN 100 FMI 1 OC 1, SPN 520192 (0x7F000: 00 F0, top bits 0b111) FMI 2 OC 1.
        let dm1 = [
            0x04, 0xFF, 0x6E, 0x00, 0x00, 0x02, 0x64, 0x00, 0x01, 0x01, 0x00, 0xF0, 0xE2, 0x01,
        ];
        send(&mut p, 2_000, 0x1CEC_FF00, &[32, 14, 0, 2, 0xFF, 0xCA, 0xFE, 0x00]);
        send(
            &mut p,
            2_050,
            0x1CEB_FF00,
            &[1, dm1[0], dm1[1], dm1[2], dm1[3], dm1[4], dm1[5], dm1[6]],
        );
        send(
            &mut p,
            2_100,
            0x1CEB_FF00,
            &[2, dm1[7], dm1[8], dm1[9], dm1[10], dm1[11], dm1[12], dm1[13]],
        );
        let f = &p.faults()[&0];
        let active: Vec<(u32, u8, u8, f64, f64)> = f
            .active
            .iter()
            .map(|a| (a.dtc.spn, a.dtc.fmi, a.dtc.oc, a.first_seen, a.last_seen))
            .collect();
        assert_eq!(
            active,
            [(110, 0, 2, 1.0, 2.1), (100, 1, 1, 2.1, 2.1), (520_192, 2, 1, 2.1, 2.1)]
        );
        assert_eq!((f.lamps.mil, f.lamps.amber_warning), (Some(false), Some(true)));
        // 3 s: no DTC (all zeros), lamps off.
        send(&mut p, 3_000, 0x18FE_CA00, &[0x00, 0xFF, 0, 0, 0, 0, 0xFF, 0xFF]);
        assert!(p.faults()[&0].active.is_empty());

        let values: Vec<(f64, String, String)> = out
            .iter()
            .flat_map(|r| {
                r.values()
                    .iter()
                    .map(move |(n, v)| (r.time(), n.clone(), format!("{v:?}")))
            })
            .filter(|(_, n, _)| n == "ecu0:active_dtcs" || n == "ecu0:dtc" || n == "ecu0:mil_lamp")
            .collect();
        let want: Vec<(f64, &str, &str)> = vec![
            (1.0, "ecu0:active_dtcs", "Number(1.0)"),
            (1.0, "ecu0:mil_lamp", "Bool(true)"),
            (1.0, "ecu0:dtc", "String(\"active: SPN 110 FMI 0 (occurrences 1)\")"),
            (2.1, "ecu0:active_dtcs", "Number(3.0)"),
            (2.1, "ecu0:mil_lamp", "Bool(false)"),
            (2.1, "ecu0:dtc", "String(\"active: SPN 100 FMI 1 (occurrences 1)\")"),
            (2.1, "ecu0:dtc", "String(\"active: SPN 520192 FMI 2 (occurrences 1)\")"),
            (3.0, "ecu0:active_dtcs", "Number(0.0)"),
            (3.0, "ecu0:mil_lamp", "Bool(false)"),
            (3.0, "ecu0:dtc", "String(\"cleared: SPN 110 FMI 0\")"),
            (3.0, "ecu0:dtc", "String(\"cleared: SPN 100 FMI 1\")"),
            (3.0, "ecu0:dtc", "String(\"cleared: SPN 520192 FMI 2\")"),
        ];
        let want: Vec<(f64, String, String)> = want.into_iter().map(|(t, n, v)| (t, n.into(), v.into())).collect();
        assert_eq!(values, want);
        assert_eq!(p.counters.ignored, 1, "the DM1 of 0x03");
        assert_eq!(p.counters.tp.complete, 1);
    }
}
