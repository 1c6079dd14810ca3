//! The modbus-sensors configuration loader and device model: any text as its config file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tolomeo_core::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match Config::<modbus_sensors::config::ModbusConfig>::from_toml(text, "fuzz.toml") {
            Ok(config) => {
                // What validated must also resolve into devices and request plans.
                assert!(modbus_sensors::model::resolve(&config.plugin).is_ok());
            }
            Err(e) => assert!(!e.problems.is_empty()),
        }
    }
});
