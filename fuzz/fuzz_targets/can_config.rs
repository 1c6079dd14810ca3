//! The can-engine configuration loader: any text as /etc/tolomeo/can-engine.toml, read, then
//! checked and built as the service does.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tolomeo_core::{BuildContext, Config};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match Config::<can_engine::CanConfig>::from_toml(text, "fuzz.toml") {
            Ok(mut config) => {
                // The build reads the DBC file it names: not files named by the fuzzer.
                config.plugin.dbc = None;
                let ctx = BuildContext::new(Duration::from_secs(1));
                if let Err(e) = config.build("fuzz.toml", &ctx, can_engine::CanEngine::new) {
                    assert!(!e.problems.is_empty());
                }
            }
            Err(e) => assert!(!e.problems.is_empty()),
        }
    }
});
