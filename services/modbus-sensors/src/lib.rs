//! `modbus-sensors`: Modbus TCP and RTU devices published as ToloMEO metrics, from a
//! declarative `[modbus]` configuration.
//!
//! What it does: reads holding and input registers, coils and discrete inputs of any number
//! of devices; decodes them ([`codec`]: 16/32/64-bit integers, floats, bits, strings, four byte
//! orders, scale and offset); merges each device's registers into as few reads as the protocol
//! allows ([`plan::plan`]); polls devices concurrently, one task per TCP device and one per
//! serial line ([`bus`]); keeps going when a device fails (backoff up to 30 s) and stops the
//! heartbeat only when every device fails; answers `ReadRegister`, `WriteRegister` and
//! `GetDevices` ([`commands`]).
//!
//! What it is not: a Modbus server or gateway, nor a device scanner. It speaks to servers
//! that are configured, and writes only registers marked `writable`.
//!
//! Main types: [`config::ModbusConfig`] (the section as written), [`model::Device`] (checked,
//! with its plan), [`ModbusPlugin`] (the [`SensorPlugin`]), [`build`] (what `main` calls).

#![forbid(unsafe_code)]

pub mod bus;
pub mod codec;
pub mod commands;
pub mod config;
pub mod link;
pub mod model;
pub mod plan;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tolomeo_core::config::{BuildContext, ConfigError};
use tolomeo_core::{Command, CommandError, Health, Metric, PluginContext, SensorPlugin, async_trait, cli::ServiceSpec};

use crate::bus::{Bus, Op, Shared};
use crate::config::ModbusConfig;
use crate::model::{Device, Transport};

/// The service's name, version and default poll period (10 s).
pub const SPEC: ServiceSpec = ServiceSpec {
    name: "modbus-sensors",
    version: env!("CARGO_PKG_VERSION"),
    about: "ToloMEO service: Modbus TCP and RTU devices as metrics",
    default_poll_time: Duration::from_secs(10),
};

/// The plugin: every configured device, grouped into buses.
pub struct ModbusPlugin {
    /// Devices and their status.
    pub shared: Arc<Shared>,
    /// For each device, the queue of its bus task.
    senders: Vec<mpsc::Sender<Op>>,
    /// The buses, until `start` hands them to their tasks.
    buses: Mutex<Option<Vec<Bus>>>,
}

/// Check `[modbus]` and build the plugin, in one call: what `main` gives `cli::main`.
/// [`model::resolve`] checks every device and register and plans its reads; every problem is
/// returned at once, keys relative to the section (`devices[0].registers[3].bit`). Opens
/// nothing: connections and serial ports are opened by the bus tasks `start` spawns.
///
/// A device without its own `poll_time_ms` follows the service's poll period at run time, as
/// `SetPollTime` changes it; so nothing here depends on `ctx.poll_time`.
pub fn build(cfg: &ModbusConfig, _ctx: &BuildContext) -> Result<ModbusPlugin, ConfigError> {
    let devices = model::resolve(cfg).map_err(|problems| ConfigError {
        source: "[modbus]".into(),
        problems,
    })?;
    Ok(ModbusPlugin::new(devices))
}

impl ModbusPlugin {
    /// A plugin for checked devices. Devices on one serial path share a bus; every TCP
    /// device has its own.
    pub fn new(devices: Vec<Device>) -> Self {
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, d) in devices.iter().enumerate() {
            let key = match &d.transport {
                Transport::Tcp { .. } => format!("tcp#{i}"),
                Transport::Rtu(line) => format!("rtu:{}", line.path),
            };
            groups.entry(key).or_default().push(i);
        }
        let mut senders: Vec<Option<mpsc::Sender<Op>>> = vec![None; devices.len()];
        let mut buses = Vec::new();
        for members in groups.into_values() {
            let (tx, rx) = mpsc::channel(16);
            for &i in &members {
                if let Some(s) = senders.get_mut(i) {
                    *s = Some(tx.clone());
                }
            }
            buses.push(Bus {
                devices: members,
                ops: rx,
            });
        }
        ModbusPlugin {
            shared: Arc::new(Shared::new(devices)),
            senders: senders.into_iter().flatten().collect(),
            buses: Mutex::new(Some(buses)),
        }
    }

    /// Hand `op` to the task that owns device `d`'s connection.
    pub(crate) async fn send(&self, d: usize, op: Op) -> Result<(), CommandError> {
        let tx = self
            .senders
            .get(d)
            .ok_or_else(|| CommandError::failed("no such device"))?;
        tx.send(op)
            .await
            .map_err(|_| CommandError::failed("the device task is not running (service starting or stopping)"))
    }
}

#[async_trait]
impl SensorPlugin for ModbusPlugin {
    fn id(&self) -> &str {
        "modbus"
    }

    fn metrics(&self) -> Vec<Metric> {
        let mut out = Vec::new();
        for dev in &self.shared.devices {
            for reg in &dev.registers {
                let mut m = match reg.data_type {
                    codec::DataType::Bool => Metric::boolean(reg.metric.clone()),
                    codec::DataType::String => Metric::string(reg.metric.clone()),
                    _ => Metric::number(reg.metric.clone()),
                };
                if let Some(u) = &reg.unit {
                    m = m.unit(u.clone());
                }
                if reg.incremental {
                    m = m.incremental();
                }
                out.push(m);
            }
        }
        out
    }

    fn commands(&self) -> Vec<Box<dyn Command<Self>>> {
        let devices: Vec<String> = self.shared.devices.iter().map(|d| d.name.clone()).collect();
        vec![
            Box::new(commands::ReadRegister {
                devices: devices.clone(),
            }),
            Box::new(commands::WriteRegister { devices }),
            Box::new(commands::GetDevices),
        ]
    }

    fn health(&self) -> Health {
        let n = self.shared.devices.len();
        if n == 0 {
            return Health::unhealthy("no devices configured ([[modbus.devices]])");
        }
        let failing: Vec<String> = (0..n)
            .filter_map(|i| {
                let s = self.shared.status(i);
                let name = self.shared.devices.get(i).map_or("?", |d| d.name.as_str());
                (s.consecutive_failures > 0).then(|| format!("{name}: {}", s.last_error.unwrap_or_default()))
            })
            .collect();
        let detail = if failing.is_empty() {
            format!("{n} of {n} devices answering")
        } else {
            format!(
                "{} of {n} devices answering; failing: {}",
                n - failing.len(),
                failing.join("; ")
            )
        };
        if failing.len() == n {
            Health::unhealthy(detail)
        } else {
            Health::healthy(detail)
        }
    }

    fn start(self: &Arc<Self>, ctx: &PluginContext) {
        let buses = self
            .buses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default();
        for dev in &self.shared.devices {
            tracing::info!(
                device = %dev.name,
                "{}: {} registers in {} request(s) per poll",
                dev.address(),
                dev.registers.len(),
                dev.plan.len()
            );
            for (n, req) in dev.plan.iter().enumerate() {
                tracing::info!(device = %dev.name, "  request {}: {req}", n + 1);
            }
        }
        for bus in buses {
            let fut = bus.run(self.shared.clone(), ctx.readings.clone(), ctx.poll_time.clone());
            ctx.tasks.spawn("modbus-bus", fut);
        }
    }
}
