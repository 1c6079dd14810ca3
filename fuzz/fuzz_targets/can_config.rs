//! The can-engine configuration loader: any text as /etc/tolomeo/can-engine.toml.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tolomeo_core::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = Config::<can_engine::CanConfig>::from_toml(text, "fuzz.toml") {
            assert!(!e.problems.is_empty());
        }
    }
});
