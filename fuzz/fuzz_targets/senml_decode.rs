//! SenML decoding and resolution: any bytes claiming to be a pack.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tolomeo_proto::senml::{decode_pack, resolve};

fuzz_target!(|data: &[u8]| {
    if let Ok(pack) = decode_pack(data) {
        match resolve(&pack, 1_700_000_000.0) {
            Ok(records) => {
                assert_eq!(records.len(), pack.len());
                for r in &records {
                    assert!(tolomeo_proto::senml::is_valid_name(&r.name));
                    assert!(r.time.is_finite());
                }
            }
            Err(problems) => assert!(!problems.is_empty()),
        }
    }
});
