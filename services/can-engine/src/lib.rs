//! `can-engine`: engine telemetry from a CAN bus for ToloMEO devices (service `can-engine`,
//! binary `tlm-can-engine`).
//!
//! Frames come from a [`FrameSource`]: SocketCAN (`interface = "can0"`, Linux, with kernel
//! receive filters), a replayed `candump -L` log ([`replay::ReplaySource`]), or an in-process
//! bus ([`memory::bus`], for tests). One decoder path ([`pipeline::Pipeline`]) sits behind all
//! of them: J1939 EEC1 ([`j1939`]), OBD-II mode 01 request/response ([`obd2`]), and the signals
//! of a DBC file ([`dbc`]). Values are aggregated to one point per poll period
//! ([`aggregate`]) and published through tolomeo-core by the [`CanEngine`] plugin, which also
//! answers `GetEngineState` and `ReadPid`.
//!
//! What it is not: a J1939 transport-protocol (multi-packet) decoder, a CAN FD or multiplexed
//! DBC signal decoder, or a general OBD-II scanner (four PIDs).
//!
//! Main types: [`CanEngine`] (the plugin), [`CanConfig`] (`[can]`), [`Frame`], [`FrameSource`],
//! [`pipeline::Pipeline`].
//!
//! ```
//! use can_engine::{candump, j1939};
//! let f = candump::parse_line(b"(1700000000.000000) can0 0CF00400#FF7D7DE015FFF0FF").unwrap().unwrap();
//! assert_eq!(j1939::split_id(f.id).pgn, j1939::PGN_EEC1);
//! assert_eq!(j1939::decode_eec1(f.payload()).unwrap().rpm, j1939::Spn::Value(700.0));
//! ```

pub mod aggregate;
pub mod candump;
mod commands;
pub mod config;
pub mod dbc;
pub mod dm1;
mod engine;
pub mod filters;
pub mod frame;
pub mod j1939;
pub mod memory;
pub mod obd2;
pub mod pipeline;
pub mod replay;
#[cfg(target_os = "linux")]
pub mod socketcan_source;
pub mod tp;

pub use config::CanConfig;
pub use engine::CanEngine;
pub use frame::{Frame, FrameKind, FrameSource, SourceError};

use std::time::Duration;

/// The service's command-line description.
pub const SPEC: tolomeo_core::cli::ServiceSpec = tolomeo_core::cli::ServiceSpec {
    name: "can-engine",
    version: env!("CARGO_PKG_VERSION"),
    about: "Engine telemetry from the CAN bus (J1939 EEC1, OBD-II, DBC signals)",
    default_poll_time: Duration::from_secs(1),
};
