//! `tolomeo-proto`: the ToloMEO wire contract (PROTOCOL.md), shared by the services'
//! framework (`tolomeo-core`) and by `tlm`, so that both read and write it the same way.
//!
//! - [`senml`]: SenML (RFC 8428) packs, JSON representation: encoding, decoding, resolving
//!   base fields, name rules.
//! - [`wire`]: the subjects and the names that build them ([`ServiceName`], [`DeviceSerial`]).
//! - [`command`]: command requests and error responses: the size limit, the error codes,
//!   request parsing.
//! - [`creds`]: NATS credentials files.
//! - `client` (feature `client`): the broker connection flags of the command-line tools.
//!
//! It has no runtime and does no I/O except reading a credentials file it is given.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::time::{SystemTime, UNIX_EPOCH};

#[cfg(feature = "client")]
pub mod client;
pub mod command;
pub mod creds;
pub mod senml;
pub mod wire;

pub use wire::{DeviceSerial, ServiceName};

/// The current Unix time in seconds, to the microsecond.
///
/// A double near 1.7e9 resolves about 0.24 µs, so nanoseconds would only add noise digits;
/// whole microseconds (one exact division of an integer below 2^53) make the time the double
/// nearest to a 6-decimal number, which the SenML encoder writes without a float formatter.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| (d.as_secs() * 1_000_000 + u64::from(d.subsec_micros())) as f64 / 1e6)
        .unwrap_or(0.0)
}
