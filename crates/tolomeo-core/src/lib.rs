//! `tolomeo-core`: the framework for ToloMEO telemetry services, the Rust counterpart of
//! py-tolomeo.
//!
//! A service author writes the part that reads the sensor, a [`SensorPlugin`], and gets
//! everything else: metric registration ([`Metric`]), SenML (RFC 8428) encoding
//! (with the `tolomeo-proto` crate, the wire contract in code), the poll loop, heartbeats, the `events.params` announcement, command
//! routing ([`Command`]), delivery through the device-local NATS broker with a bounded
//! buffer, configuration ([`config`]), and the shared command line ([`cli::main`]).
//! The wire contract is PROTOCOL.md; this crate cannot produce a message that breaks it:
//! names are checked when metrics are registered, values against their declared type,
//! NaN and infinities are dropped and counted.
//!
//! What it is not: it opens no CAN socket, serial port or Modbus connection (that is the
//! plugins' side), and it has no knowledge of any particular service.
//!
//! Main types: [`SensorPlugin`] (implement it), [`Metric`], [`Reading`], [`Command`],
//! [`Service`] with [`Settings`], [`cli::main`]. The crate's README lists the whole public
//! API; everything else is private.
//!
//! # Example
//!
//! A plugin that reads a (simulated) temperature once per poll period:
//!
//! ```no_run
//! use std::process::ExitCode;
//! use std::time::Duration;
//! use tolomeo_core::{async_trait, cli, config::NoConfig, BuildContext, Metric, PluginError, Reading, SensorPlugin};
//!
//! struct Thermo;
//!
//! #[async_trait]
//! impl SensorPlugin for Thermo {
//!     fn id(&self) -> &str { "temp" }
//!     fn metrics(&self) -> Vec<Metric> {
//!         vec![Metric::number("temperature").unit("Cel")] // published as temp:temperature
//!     }
//!     async fn sample(&self, reading: &mut Reading) -> Result<(), PluginError> {
//!         reading.push("temperature", 21.5);
//!         Ok(())
//!     }
//! }
//!
//! fn main() -> ExitCode {
//!     let spec = cli::ServiceSpec {
//!         name: "thermo",
//!         version: env!("CARGO_PKG_VERSION"),
//!         about: "A thermometer",
//!         default_poll_time: Duration::from_secs(30),
//!     };
//!     // The build function checks the plugin's section and constructs the plugin in one call.
//!     cli::main(spec, |_: &NoConfig, _: &BuildContext| Ok(Thermo))
//! }
//! ```
//!
//! `examples/temp_service.rs` is the full walkthrough, with a command and a config section.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod buffer;
mod check;
pub mod cli;
mod command;
pub mod config;
mod handle;
mod health;
mod metric;
mod outbox;
mod plugin;
mod reading;
mod service;
mod spooling;
mod tick;
#[cfg(feature = "bench-internals")]
#[doc(hidden)]
pub mod transport;
#[cfg(not(feature = "bench-internals"))]
mod transport;

// The wire contract lives in tolomeo-proto; inside this crate it reads as `crate::senml`.
use tolomeo_proto::{senml, wire};

pub use async_trait::async_trait;
pub use command::{ArgInfo, ArgKind, Command, CommandContext, CommandError, CommandOutput, CommandResult, ErrorCode};
pub use config::{BuildContext, Config, ConfigError, PluginConfig, Problem};
pub use handle::{ServiceHandle, Status};
pub use metric::{DataType, Metric, MetricKind};
pub use plugin::{Health, PluginContext, PluginError, SensorPlugin, TaskManager};
pub use reading::{Reading, Readings, Value, unix_now};
pub use service::{Service, ServiceError, Settings};
pub use tolomeo_proto::{DeviceSerial, ServiceName};

#[doc(hidden)]
pub use serde_json::Value as __Json;
#[doc(hidden)]
pub use serde_json::json as __json;
