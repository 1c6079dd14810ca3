//! `tlm-modbus-sensors`: the modbus-sensors service. See the crate README.

#![forbid(unsafe_code)]
use std::process::ExitCode;

fn main() -> ExitCode {
    tolomeo_core::cli::main(modbus_sensors::SPEC, modbus_sensors::build)
}
