//! The command request parser: any bytes on `commands.<service>.req`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tolomeo_proto::command::{ErrorCode, parse_request};

fuzz_target!(|data: &[u8]| {
    let calls = parse_request(data);
    // Always at least one answer; a call without a name always carries an error.
    assert!(!calls.is_empty());
    for call in &calls {
        if call.name.is_empty() {
            assert!(call.args.is_err());
        }
        if let Err(e) = &call.args {
            assert!(!e.message.is_empty());
            // Parsing can only find a bad request or bad arguments; the other codes come from running.
            assert!(matches!(e.code, ErrorCode::InvalidRequest | ErrorCode::InvalidPayload), "{e}");
        }
    }
});
