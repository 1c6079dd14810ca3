//! The modbus-sensors configuration loader and device model: any text as its config file,
//! read, then checked and built as the service does.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tolomeo_core::{BuildContext, Config};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match Config::<modbus_sensors::config::ModbusConfig>::from_toml(text, "fuzz.toml") {
            Ok(config) => {
                // Every value read: the build resolves it into devices and request plans, or
                // says what is wrong.
                let ctx = BuildContext::new(Duration::from_secs(10));
                if let Err(e) = config.build("fuzz.toml", &ctx, modbus_sensors::build) {
                    assert!(!e.problems.is_empty());
                }
            }
            Err(e) => assert!(!e.problems.is_empty()),
        }
    }
});
