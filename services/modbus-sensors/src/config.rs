//! The `[modbus]` configuration section as written in the file.
//!
//! Reading it checks the types only: a value of the wrong type (`address = "40001"`) is
//! refused by the configuration loader, with the file, the key, the value and the type
//! expected. Everything else (ranges, names, the words of `kind`, `data_type`, `byte_order`,
//! `type` and `parity`, what goes together) is checked by [`crate::build`], which turns this
//! section into checked devices ([`crate::model::resolve`]) and reports every problem at once.

use serde::{Deserialize, Serialize};
use tolomeo_core::config::{PluginConfig, Problem};

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
    pub port: u16,
    /// RTU: the serial device, e.g. `/dev/ttyUSB0`. Devices sharing a path share the line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// RTU: baud rate.
    pub baud: u32,
    /// RTU: `none`, `even` or `odd`.
    pub parity: String,
    /// RTU: data bits, 7 or 8.
    pub data_bits: u8,
    /// RTU: stop bits, 1 or 2.
    pub stop_bits: u8,
    /// Modbus unit identifier (slave id): 1 to 247 on a serial line, 0 to 255 over TCP.
    pub unit_id: u8,
    /// Poll period of this device in ms (100 to 3600000); absent: the service's poll period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_time_ms: Option<u64>,
    /// How long to wait for one response, in ms (10 to 60000).
    pub timeout_ms: u64,
    /// How many times a request that timed out is sent again before the poll counts as failed.
    pub retries: u32,
    /// Pause between two requests to this device, in ms (slow serial devices need it).
    pub pause_between_requests_ms: u64,
    /// Pause after the connection (or serial port) is opened, before the first request, in ms.
    pub pause_after_connect_ms: u64,
    /// Largest gap, in registers (or bits for coils and discrete inputs), bridged when
    /// registers are merged into one read.
    pub max_gap: u16,
    /// Most registers in one read (1 to 125); lower it for devices with smaller buffers.
    pub max_registers_per_read: u16,
    /// The registers, as `[[modbus.devices.registers]]` tables.
    pub registers: Vec<RegisterConfig>,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            name: String::new(),
            host: None,
            port: 502,
            path: None,
            baud: 9600,
            parity: "none".into(),
            data_bits: 8,
            stop_bits: 1,
            unit_id: 1,
            poll_time_ms: None,
            timeout_ms: 1000,
            retries: 1,
            pause_between_requests_ms: 0,
            pause_after_connect_ms: 0,
            max_gap: 10,
            max_registers_per_read: 125,
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
    pub address: u16,
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
    pub bit: Option<u8>,
    /// For `string`: length in registers (two characters each).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<u16>,
    /// Published value = raw × scale + offset.
    pub scale: f64,
    /// Published value = raw × scale + offset.
    pub offset: f64,
    /// Unit sent with the value (`Cel`, `V`, `%`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// `temporal` (a sample, the default) or `incremental` (a counter).
    #[serde(rename = "type")]
    pub metric_type: String,
    /// May `WriteRegister` write it? Only holding registers and coils can be written.
    pub writable: bool,
}

impl Default for RegisterConfig {
    fn default() -> Self {
        RegisterConfig {
            name: String::new(),
            kind: "holding".into(),
            address: 0,
            data_type: None,
            byte_order: "ABCD".into(),
            bit: None,
            length: None,
            scale: 1.0,
            offset: 0.0,
            unit: None,
            metric_type: "temporal".into(),
            writable: false,
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
