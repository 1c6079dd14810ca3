//! The checked form of the configuration: [`resolve`] turns `[modbus]` into [`Device`]s and
//! their request plans, or returns every problem found. [`crate::build`] calls it, once.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use tolomeo_core::config::{POLL_TIME_RANGE_MS, Problem};

use crate::codec::{ByteOrder, DataType};
use crate::config::{DeviceConfig, ModbusConfig, RegisterConfig};
use crate::plan::{Kind, Request, Span, plan};

/// How a device is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Modbus TCP.
    Tcp { host: String, port: u16 },
    /// Modbus RTU on a serial line.
    Rtu(Line),
}

/// A serial line and its settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Line {
    pub path: String,
    pub baud: u32,
    /// `none`, `even` or `odd`.
    pub parity: String,
    pub data_bits: u8,
    pub stop_bits: u8,
}

/// One register (or coil) to read, checked.
#[derive(Debug, Clone)]
pub struct Register {
    /// Name inside the device.
    pub name: String,
    /// `<device>:<name>`.
    pub metric: String,
    pub kind: Kind,
    pub address: u16,
    pub data_type: DataType,
    pub byte_order: ByteOrder,
    pub bit: Option<u8>,
    /// Registers taken (1 for a coil or a bit).
    pub width: u16,
    pub scale: f64,
    pub offset: f64,
    pub unit: Option<String>,
    pub incremental: bool,
    pub writable: bool,
}

/// One device, checked, with its request plan.
#[derive(Debug, Clone)]
pub struct Device {
    pub name: String,
    pub transport: Transport,
    pub unit_id: u8,
    /// None: follow the service's poll period.
    pub poll_time: Option<Duration>,
    pub timeout: Duration,
    pub retries: u32,
    pub pause_between_requests: Duration,
    pub pause_after_connect: Duration,
    pub registers: Vec<Register>,
    /// Reads; `items` index `registers`.
    pub plan: Vec<Request>,
}

impl Device {
    /// Where it is, for logs: `tcp://host:port unit 1` or `rtu:/dev/ttyUSB0 unit 3`.
    pub fn address(&self) -> String {
        match &self.transport {
            Transport::Tcp { host, port } => format!("tcp://{host}:{port} unit {}", self.unit_id),
            Transport::Rtu(l) => format!("rtu:{} unit {}", l.path, self.unit_id),
        }
    }
}

/// True for a name SenML accepts as part of `n`, without the `:` we use as separator.
fn valid_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '/' | '_'))
}

struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn bad(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem::new(key, message));
    }
    /// `v` if within `range`; otherwise reported, and `default` stands in for it so that the
    /// checks that depend on it can go on.
    fn ranged<T>(&mut self, key: &str, v: T, default: T, range: std::ops::RangeInclusive<T>) -> T
    where
        T: PartialOrd + std::fmt::Display,
    {
        if range.contains(&v) {
            v
        } else {
            self.bad(
                key,
                format!("{v} is out of range, expected {} to {}", range.start(), range.end()),
            );
            default
        }
    }
}

/// Check `[modbus]` and build the devices. Every problem is reported, with keys relative to
/// the section (`devices[1].registers[3].data_type`).
pub fn resolve(cfg: &ModbusConfig) -> Result<Vec<Device>, Vec<Problem>> {
    let mut ck = Checker { problems: Vec::new() };
    let mut devices = Vec::new();
    let mut names = HashSet::new();
    let mut lines: BTreeMap<String, (usize, Line)> = BTreeMap::new();
    for (d, dc) in cfg.devices.iter().enumerate() {
        let key = format!("devices[{d}]");
        if !valid_name(&dc.name) {
            ck.bad(
                format!("{key}.name"),
                format!(
                    "{:?} is not a valid device name: expected 1 to 64 letters, digits, `-`, `.`, `_` or `/`, starting with a letter or digit (it prefixes SenML metric names)",
                    dc.name
                ),
            );
        } else if !names.insert(dc.name.clone()) {
            ck.bad(
                format!("{key}.name"),
                format!("device name {:?} is used twice; metric names would collide", dc.name),
            );
        }
        if let Some(dev) = device(&mut ck, &key, dc) {
            if let Transport::Rtu(line) = &dev.transport {
                match lines.get(&line.path) {
                    Some((other, first)) if first != line => ck.bad(
                        format!("{key}.path"),
                        format!(
                            "devices[{other}] uses {} with {} baud, parity {}, {} data bits, {} stop bits; devices on one serial line must use the same settings",
                            line.path, first.baud, first.parity, first.data_bits, first.stop_bits
                        ),
                    ),
                    Some(_) => {}
                    None => {
                        lines.insert(line.path.clone(), (d, line.clone()));
                    }
                }
            }
            devices.push(dev);
        }
    }
    if ck.problems.is_empty() {
        Ok(devices)
    } else {
        Err(ck.problems)
    }
}

fn device(ck: &mut Checker, key: &str, dc: &DeviceConfig) -> Option<Device> {
    let k = |f: &str| format!("{key}.{f}");
    let transport = match (&dc.host, &dc.path) {
        (Some(host), None) => {
            if host.trim().is_empty() {
                ck.bad(k("host"), "empty host; expected a host name or address");
            }
            let port = ck.ranged(&k("port"), dc.port, 502, 1..=65535);
            Some(Transport::Tcp {
                host: host.clone(),
                port,
            })
        }
        (None, Some(path)) => {
            if path.trim().is_empty() {
                ck.bad(k("path"), "empty path; expected a serial device such as /dev/ttyUSB0");
            }
            let parity = dc.parity.to_ascii_lowercase();
            if !matches!(parity.as_str(), "none" | "even" | "odd") {
                ck.bad(
                    k("parity"),
                    format!("{:?}: expected \"none\", \"even\" or \"odd\"", dc.parity),
                );
            }
            Some(Transport::Rtu(Line {
                path: path.clone(),
                baud: ck.ranged(&k("baud"), dc.baud, 9600, 50..=4_000_000),
                parity,
                data_bits: ck.ranged(&k("data_bits"), dc.data_bits, 8, 5..=8),
                stop_bits: ck.ranged(&k("stop_bits"), dc.stop_bits, 1, 1..=2),
            }))
        }
        (Some(_), Some(_)) => {
            ck.bad(key, "set either `host` (Modbus TCP) or `path` (Modbus RTU), not both");
            None
        }
        (None, None) => {
            ck.bad(
                key,
                "no transport: set `host` (Modbus TCP) or `path` (Modbus RTU serial line)",
            );
            None
        }
    };
    let unit_range = if matches!(transport, Some(Transport::Rtu(_))) {
        1..=247
    } else {
        0..=255
    };
    let unit_id = ck.ranged(&k("unit_id"), dc.unit_id, 1, unit_range);
    let poll_time = dc
        .poll_time_ms
        .map(|p| Duration::from_millis(ck.ranged(&k("poll_time_ms"), p, 1000, POLL_TIME_RANGE_MS)));
    let timeout = Duration::from_millis(ck.ranged(&k("timeout_ms"), dc.timeout_ms, 1000, 10..=60_000));
    let retries = ck.ranged(&k("retries"), dc.retries, 1, 0..=10);
    let pause_between = ck.ranged(
        &k("pause_between_requests_ms"),
        dc.pause_between_requests_ms,
        0,
        0..=10_000,
    );
    let pause_after = ck.ranged(&k("pause_after_connect_ms"), dc.pause_after_connect_ms, 0, 0..=60_000);
    let max_gap = ck.ranged(&k("max_gap"), dc.max_gap, 10, 0..=2000);
    let max_regs = ck.ranged(&k("max_registers_per_read"), dc.max_registers_per_read, 125, 1..=125);
    let mut registers = Vec::new();
    let mut seen = HashSet::new();
    for (r, rc) in dc.registers.iter().enumerate() {
        let rkey = format!("{key}.registers[{r}]");
        if let Some(reg) = register(ck, &rkey, &dc.name, rc, max_regs) {
            if !seen.insert(reg.name.clone()) {
                ck.bad(
                    format!("{rkey}.name"),
                    format!("duplicate metric name {:?} in device {:?}", reg.metric, dc.name),
                );
            }
            registers.push(reg);
        }
    }
    let spans: Vec<Span> = registers
        .iter()
        .map(|r| Span {
            kind: r.kind,
            address: r.address,
            width: r.width,
        })
        .collect();
    Some(Device {
        name: dc.name.clone(),
        transport: transport?,
        unit_id,
        poll_time,
        timeout,
        retries,
        pause_between_requests: Duration::from_millis(pause_between),
        pause_after_connect: Duration::from_millis(pause_after),
        plan: plan(&spans, max_gap, max_regs),
        registers,
    })
}

fn register(ck: &mut Checker, key: &str, device: &str, rc: &RegisterConfig, max_regs: u16) -> Option<Register> {
    let k = |f: &str| format!("{key}.{f}");
    let mut ok = true;
    if !valid_name(&rc.name) {
        ck.bad(
            k("name"),
            format!(
                "{:?} is not a valid register name: expected 1 to 64 letters, digits, `-`, `.`, `_` or `/`, starting with a letter or digit",
                rc.name
            ),
        );
        ok = false;
    }
    let kind = Kind::parse(&rc.kind);
    if kind.is_none() {
        ck.bad(
            k("kind"),
            format!("{:?}: expected holding, input, coil or discrete", rc.kind),
        );
    }
    let address = rc.address;
    let data_type = match &rc.data_type {
        None if kind.is_some_and(Kind::is_bits) => Some(DataType::Bool),
        None => Some(DataType::U16),
        Some(s) => {
            let dt = DataType::parse(s);
            if dt.is_none() {
                ck.bad(
                    k("data_type"),
                    format!("{s:?}: expected u16, i16, u32, i32, u64, i64, f32, f64, bool or string"),
                );
            }
            dt
        }
    };
    let byte_order = ByteOrder::parse(&rc.byte_order);
    if byte_order.is_none() {
        ck.bad(
            k("byte_order"),
            format!("{:?}: expected ABCD, CDAB, BADC or DCBA", rc.byte_order),
        );
    }
    let bit = rc.bit.map(|b| ck.ranged(&k("bit"), b, 0, 0..=15));
    let length = rc.length.map(|l| ck.ranged(&k("length"), l, 1, 1..=max_regs));
    let (scale, offset, writable) = (rc.scale, rc.offset, rc.writable);
    if !scale.is_finite() || scale == 0.0 {
        ck.bad(k("scale"), format!("{scale}: expected a finite number other than 0"));
    }
    if !offset.is_finite() {
        ck.bad(k("offset"), format!("{offset}: expected a finite number"));
    }
    let incremental = match rc.metric_type.to_ascii_lowercase().as_str() {
        "temporal" => false,
        "incremental" => true,
        _ => {
            ck.bad(
                k("type"),
                format!("{:?}: expected temporal or incremental", rc.metric_type),
            );
            false
        }
    };
    let (kind, data_type, byte_order) = (kind?, data_type?, byte_order?);
    let width = match (kind.is_bits(), data_type) {
        (true, DataType::Bool) => 1,
        (true, other) => {
            ck.bad(
                k("data_type"),
                format!(
                    "{} on a {}: coils and discrete inputs hold single bits, expected bool",
                    other.name(),
                    kind.name()
                ),
            );
            return None;
        }
        (false, DataType::String) => match length {
            Some(l) => l,
            None => {
                ck.bad(
                    k("length"),
                    "a string needs `length`, its size in registers (two characters each)",
                );
                return None;
            }
        },
        (false, dt) => dt.words(),
    };
    if data_type == DataType::Bool && !kind.is_bits() && bit.is_none() {
        ck.bad(
            k("bit"),
            format!("bool on a {} register needs `bit` (0 to 15)", kind.name()),
        );
    }
    if bit.is_some() && (kind.is_bits() || data_type != DataType::Bool) {
        ck.bad(
            k("bit"),
            "`bit` applies only to data_type = \"bool\" on a holding or input register",
        );
    }
    if length.is_some() && data_type != DataType::String {
        ck.bad(k("length"), "`length` applies only to data_type = \"string\"");
    }
    if matches!(data_type, DataType::String | DataType::Bool) && (scale != 1.0 || offset != 0.0) {
        ck.bad(
            k("scale"),
            format!("scale and offset apply to numbers, not to a {}", data_type.name()),
        );
    }
    if data_type == DataType::String && !matches!(byte_order, ByteOrder::Abcd | ByteOrder::Badc) {
        ck.bad(
            k("byte_order"),
            "a string is ABCD (first character in the high byte) or BADC (in the low byte)",
        );
    }
    if u32::from(address) + u32::from(width) - 1 > 65535 {
        ck.bad(
            k("address"),
            format!(
                "address {address} + {width} registers runs beyond 65535; the last address of this value would be {}",
                u32::from(address) + u32::from(width) - 1
            ),
        );
    }
    if writable && matches!(kind, Kind::Input | Kind::Discrete) {
        ck.bad(
            k("writable"),
            format!(
                "{} is read-only in Modbus; only holding registers and coils can be written",
                if kind == Kind::Input {
                    "an input register"
                } else {
                    "a discrete input"
                }
            ),
        );
    }
    if let Some(u) = &rc.unit
        && (u.is_empty() || u.chars().any(|c| c.is_control() || c == '"'))
    {
        ck.bad(
            k("unit"),
            format!("{u:?} is not a unit; expected e.g. \"Cel\", \"V\" or \"%\""),
        );
    }
    ok.then(|| Register {
        name: rc.name.clone(),
        metric: format!("{device}:{}", rc.name),
        kind,
        address,
        data_type,
        byte_order,
        bit,
        width,
        scale,
        offset,
        unit: rc.unit.clone(),
        incremental,
        writable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DeviceConfig, RegisterConfig};

    fn reg(name: &str, kind: &str, address: u16) -> RegisterConfig {
        RegisterConfig {
            name: name.into(),
            kind: kind.into(),
            address,
            ..RegisterConfig::default()
        }
    }

    #[test]
    fn defaults_are_applied_and_the_plan_is_built() {
        let cfg = ModbusConfig {
            devices: vec![DeviceConfig {
                name: "plc".into(),
                host: Some("10.0.0.5".into()),
                registers: vec![
                    reg("a", "holding", 0),
                    reg("b", "HOLDING_REGISTERS", 3),
                    reg("c", "coil", 7),
                ],
                ..DeviceConfig::default()
            }],
        };
        let d = resolve(&cfg).unwrap().remove(0);
        assert_eq!(
            d.transport,
            Transport::Tcp {
                host: "10.0.0.5".into(),
                port: 502
            }
        );
        assert_eq!(
            (d.unit_id, d.poll_time, d.timeout, d.retries),
            (1, None, Duration::from_millis(1000), 1)
        );
        assert_eq!(d.registers[0].metric, "plc:a");
        assert_eq!(d.registers[0].data_type, DataType::U16);
        assert_eq!(d.registers[2].data_type, DataType::Bool);
        assert_eq!(d.plan.len(), 2);
        assert_eq!((d.plan[0].start, d.plan[0].count), (0, 4));
    }

    #[test]
    fn rtu_rules() {
        let rtu = |name: &str, baud: u32, unit: u8| DeviceConfig {
            name: name.into(),
            path: Some("/dev/ttyS1".into()),
            baud,
            unit_id: unit,
            ..DeviceConfig::default()
        };
        let ok = ModbusConfig {
            devices: vec![rtu("a", 19200, 1), rtu("b", 19200, 2)],
        };
        assert_eq!(resolve(&ok).unwrap().len(), 2);
        let bad = ModbusConfig {
            devices: vec![rtu("a", 19200, 0), rtu("b", 9600, 2), rtu("b", 19200, 2)],
        };
        let keys: Vec<String> = resolve(&bad).unwrap_err().into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["devices[0].unit_id", "devices[1].path", "devices[2].name"]);
    }
}
