//! `tlm-dashboard`: what Fleet Manager shows of a device, served by one process on the device or
//! a desk, from the NATS broker the services already use.
//!
//! - [`store`]: the embedded history (redb), bounded by age and size; [`downsample`] reduces a
//!   range to what a chart can show.
//! - (in progress) the ingest from `events.data`, the live state of devices and services, the
//!   web server and the page.

#![forbid(unsafe_code)]

pub mod assets;
pub mod downsample;
pub mod store;
