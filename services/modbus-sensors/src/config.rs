//! The `[modbus]` configuration section as written in the file.
//!
//! Every key whose value the user types as a word (`kind`, `data_type`, `byte_order`, `type`,
//! `parity`) and every number is read leniently ([`Lenient`]), so that a wrong value or a
//! string where a number belongs does not stop parsing at the first mistake:
//! [`crate::build`] turns this section into checked devices ([`crate::model::resolve`]) and
//! reports every problem at once.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tolomeo_core::config::{PluginConfig, Problem};

/// A value that may be of the wrong type. Parsing never fails on it; the mistake is reported
/// with every other one when the section is checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Lenient<T> {
    /// The value, of the right type.
    Ok(T),
    /// What was written instead, and what serde said about it.
    Bad(String),
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = serde_json::Value::deserialize(d)?;
        Ok(match T::deserialize(&raw) {
            Ok(v) => Lenient::Ok(v),
            Err(e) => Lenient::Bad(format!("wrong type: {e}")),
        })
    }
}

impl<T: Serialize> Serialize for Lenient<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Lenient::Ok(v) => v.serialize(s),
            Lenient::Bad(text) => s.serialize_str(text),
        }
    }
}

impl<T> From<T> for Lenient<T> {
    fn from(v: T) -> Self {
        Lenient::Ok(v)
    }
}

/// `[modbus]`: the devices to poll.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModbusConfig {
    /// The devices, as `[[modbus.devices]]` tables. Each is polled independently.
    pub devices: Vec<DeviceConfig>,
}

/// `[[modbus.devices]]`: one Modbus server (slave), over TCP or a serial line (RTU).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceConfig {
    /// Device name: first part of every metric name (`<device>:<register>`). Letters, digits,
    /// `-`, `.`, `_`, `/`; starting with a letter or digit.
    pub name: String,
    /// TCP: host name or address of the Modbus TCP server (or gateway). Set `host` or `path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// TCP: port.
    pub port: Lenient<u16>,
    /// RTU: the serial device, e.g. `/dev/ttyUSB0`. Devices sharing a path share the line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// RTU: baud rate.
    pub baud: Lenient<u32>,
    /// RTU: `none`, `even` or `odd`.
    pub parity: String,
    /// RTU: data bits, 7 or 8.
    pub data_bits: Lenient<u8>,
    /// RTU: stop bits, 1 or 2.
    pub stop_bits: Lenient<u8>,
    /// Modbus unit identifier (slave id): 1 to 247 on a serial line, 0 to 255 over TCP.
    pub unit_id: Lenient<u8>,
    /// Poll period of this device in ms (100 to 3600000); absent: the service's poll period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_time_ms: Option<Lenient<u64>>,
    /// How long to wait for one response, in ms (10 to 60000).
    pub timeout_ms: Lenient<u64>,
    /// How many times a request that timed out is sent again before the poll counts as failed.
    pub retries: Lenient<u32>,
    /// Pause between two requests to this device, in ms (slow serial devices need it).
    pub pause_between_requests_ms: Lenient<u64>,
    /// Pause after the connection (or serial port) is opened, before the first request, in ms.
    pub pause_after_connect_ms: Lenient<u64>,
    /// Largest gap, in registers (or bits for coils and discrete inputs), bridged when
    /// registers are merged into one read.
    pub max_gap: Lenient<u16>,
    /// Most registers in one read (1 to 125); lower it for devices with smaller buffers.
    pub max_registers_per_read: Lenient<u16>,
    /// The registers, as `[[modbus.devices.registers]]` tables.
    pub registers: Vec<RegisterConfig>,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            name: String::new(),
            host: None,
            port: 502.into(),
            path: None,
            baud: 9600.into(),
            parity: "none".into(),
            data_bits: 8.into(),
            stop_bits: 1.into(),
            unit_id: 1.into(),
            poll_time_ms: None,
            timeout_ms: 1000.into(),
            retries: 1.into(),
            pause_between_requests_ms: 0.into(),
            pause_after_connect_ms: 0.into(),
            max_gap: 10.into(),
            max_registers_per_read: 125.into(),
            registers: Vec::new(),
        }
    }
}

/// `[[modbus.devices.registers]]`: one value read from the device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegisterConfig {
    /// Metric name inside the device: published as `<device>:<name>`.
    pub name: String,
    /// `holding`, `input`, `coil` or `discrete`.
    pub kind: String,
    /// 0-based address on the wire (register 40001 of the old notation is holding address 0).
    pub address: Lenient<u16>,
    /// `u16` `i16` `u32` `i32` `u64` `i64` `f32` `f64` `bool` `string` (Telegraf spellings
    /// such as `INT16`, `UINT32`, `FLOAT32-IEEE` are accepted too). Default: `bool` for coils
    /// and discrete inputs, `u16` for registers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
    /// `ABCD` (big endian, the default), `CDAB` (word swap), `BADC` (byte swap), `DCBA`
    /// (little endian). See the README for 16-, 32- and 64-bit layouts.
    pub byte_order: String,
    /// For `bool` on a holding or input register: the bit, 0 (least significant) to 15.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bit: Option<Lenient<u8>>,
    /// For `string`: length in registers (two characters each).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<Lenient<u16>>,
    /// Published value = raw × scale + offset.
    pub scale: Lenient<f64>,
    /// Published value = raw × scale + offset.
    pub offset: Lenient<f64>,
    /// Unit sent with the value (`Cel`, `V`, `%`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// `temporal` (a sample, the default) or `incremental` (a counter).
    #[serde(rename = "type")]
    pub metric_type: String,
    /// May `WriteRegister` write it? Only holding registers and coils can be written.
    pub writable: Lenient<bool>,
}

impl Default for RegisterConfig {
    fn default() -> Self {
        RegisterConfig {
            name: String::new(),
            kind: "holding".into(),
            address: 0.into(),
            data_type: None,
            byte_order: "ABCD".into(),
            bit: None,
            length: None,
            scale: 1.0.into(),
            offset: 0.0.into(),
            unit: None,
            metric_type: "temporal".into(),
            writable: false.into(),
        }
    }
}

impl PluginConfig for ModbusConfig {
    const SECTION: &'static str = "modbus";
    fn absent_now(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        for (i, d) in self.devices.iter().enumerate() {
            if let Some(path) = &d.path
                && !std::path::Path::new(path).exists()
            {
                out.push(Problem::new(
                    format!("devices[{i}].path"),
                    format!("{path} does not exist now"),
                ));
            }
        }
        out
    }
}
