//! The candump -L line parser: any line of a log file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(frame)) = can_engine::candump::parse_line(data) {
        // A frame that parsed carries at most a CAN FD payload and an identifier of its width.
        assert!(frame.payload().len() <= 64);
        assert!(frame.id <= if frame.extended { 0x1FFF_FFFF } else { 0x7FF });
    }
});
