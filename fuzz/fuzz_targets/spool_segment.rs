//! The spool reader: any bytes found in a segment file after a power cut or bit rot.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tolomeo_spool::read_segment;

fuzz_target!(|data: &[u8]| {
    let (entries, corrupt, skipped) = read_segment(data);
    // What comes back is never more than what was there, and damage is always accounted for.
    let payload: usize = entries.iter().map(Vec::len).sum();
    assert!(payload <= data.len());
    assert!(skipped as usize <= data.len());
    if corrupt == 0 {
        assert_eq!(skipped, 0);
    }
});
